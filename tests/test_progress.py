"""Progress: bars only where a person watches; elsewhere few stdout lines and nothing on stderr."""
from __future__ import annotations

import io

import pytest
import torch

from glassbox.core import progress
from glassbox.core.progress import Progress, track
from glassbox.training.loop import fit


def _epochs(mode: str, monkeypatch, epochs: int = 4, batches: int = 3, interval: float = 0.0) -> str:
    monkeypatch.setenv(progress.ENV, mode)
    out = io.StringIO()
    with Progress(epochs * batches, "demo run", unit="batch", epochs=epochs, interval=interval, stream=out) as bar:
        for epoch in range(1, epochs + 1):
            bar.update(batches)
            bar.end_epoch(epoch, {"epoch": epoch, "train_loss": 1.0 / epoch, "seconds": 0.01})
    return out.getvalue()


def test_log_mode_prints_at_most_one_line_per_epoch_and_the_final_numbers_as_a_table(monkeypatch, capsys):
    text = _epochs("log", monkeypatch, epochs=4)
    lines = text.splitlines()
    epoch_lines = [line for line in lines if ": epoch " in line and "/4  " in line]
    assert len(epoch_lines) == 3, text  # epochs 1-3; the 4th is the final table
    header, row = lines[-2].split(), lines[-1].split()
    assert header == ["epoch", "train_loss", "seconds"] and row[:2] == ["4", "0.25"], text
    assert lines[-3].startswith("demo run: epoch 4/4 in "), text
    assert capsys.readouterr().err == ""


def test_log_mode_waits_interval_seconds_between_lines(monkeypatch):
    text = _epochs("log", monkeypatch, epochs=50, interval=3600.0)
    assert [line for line in text.splitlines() if "/50  " in line] == []  # no epoch line, only the end
    assert text.splitlines()[-1].split()[0] == "50"


def test_off_mode_and_disabled_print_nothing(monkeypatch, capsys):
    assert _epochs("off", monkeypatch) == ""
    monkeypatch.setenv(progress.ENV, "log")
    out = io.StringIO()
    with Progress(5, "silent", enabled=False, stream=out) as bar:
        bar.update(5)
    assert out.getvalue() == "" and capsys.readouterr() == ("", "")


def test_bar_mode_draws_a_bar_on_stderr(monkeypatch, capsys):
    _epochs("bar", monkeypatch, epochs=2, batches=2)
    err = capsys.readouterr().err
    assert "demo run" in err and "4/4" in err


def test_track_yields_every_item_and_reports_the_count(monkeypatch):
    monkeypatch.setenv(progress.ENV, "log")
    out = io.StringIO()
    seen = []
    with Progress(3, "items", unit="patient", stream=out) as bar:
        for item in "abc":
            seen.append(item)
            bar.update()
    assert seen == list("abc") and out.getvalue().startswith("items: 3 patients in ")
    assert list(track(range(5), "numbers")) == list(range(5))


def test_a_loop_without_epochs_logs_its_count_when_the_interval_allows(monkeypatch):
    monkeypatch.setenv(progress.ENV, "log")
    out = io.StringIO()
    with Progress(3, "models", unit="model", interval=0.0, stream=out) as bar:
        for _ in range(3):
            bar.update()
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines[:2]] == ["models: 1/3 models", "models: 2/3 models"], lines
    assert lines[2].startswith("models: 3 models in ") and len(lines) == 3, lines


def test_bad_mode_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv(progress.ENV, "loud")
    with pytest.raises(ValueError, match="GLASSBOX_PROGRESS must be one of bar, log, off; got 'loud'"):
        progress.mode()


def test_without_a_terminal_or_kernel_the_mode_is_log(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.mode() == "log"  # pytest captures stderr: not a terminal


def test_fit_reports_through_progress(monkeypatch, capsys):
    monkeypatch.setenv(progress.ENV, "log")
    model = torch.nn.Linear(2, 1)
    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 1))
    fit(model, data, lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]), epochs=2, batch_size=4,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1), data_seed=0, desc="tiny fit")
    out, err = capsys.readouterr()
    assert err == "" and "tiny fit: epoch 2/2 in " in out and "train_loss" in out


@pytest.mark.slow
@pytest.mark.parametrize("allow_stdin, expected", [(False, "log"), (True, "bar")])
def test_a_kernel_shows_bars_only_to_a_front_end_that_takes_input(allow_stdin, expected, monkeypatch):
    """papermill, nbclient and the book build execute with allow_stdin=False; JupyterLab, the classic
    notebook and VS Code with allow_stdin=True (a person at the keyboard)."""
    from jupyter_client.manager import start_new_kernel

    monkeypatch.delenv(progress.ENV, raising=False)
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        printed = []

        def keep(msg):
            if msg["msg_type"] == "stream":
                printed.append(msg["content"]["text"])

        reply = client.execute_interactive("from glassbox.core.progress import mode; print(mode())", allow_stdin=allow_stdin,
                                           output_hook=keep, timeout=120)
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(printed).strip() == expected
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
