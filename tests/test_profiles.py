"""Profiles and run set-up: bad parameters fail at once, naming the parameter and the choices."""
import numpy as np
import pytest
import torch

from glassbox import chapters
from glassbox.chapters import setup_run
from glassbox.data import dicom
from glassbox.report.profiles import PROFILE_NAMES, default_profile, resolve_profile


def test_default_profile_is_quick_when_unset(monkeypatch):
    monkeypatch.delenv("GLASSBOX_PROFILE", raising=False)
    assert default_profile() == "quick"
    assert resolve_profile(None) == "quick"


def test_default_profile_follows_environment(monkeypatch):
    monkeypatch.setenv("GLASSBOX_PROFILE", "smoke")
    assert resolve_profile(None) == "smoke"
    assert resolve_profile("paper") == "paper"  # an explicit parameter wins over the environment


def test_bad_environment_profile_names_the_variable(monkeypatch):
    monkeypatch.setenv("GLASSBOX_PROFILE", "fast")
    with pytest.raises(ValueError, match=r"GLASSBOX_PROFILE='fast'.*smoke"):
        default_profile()


@pytest.mark.parametrize("bad", ["Quick", "full", ""])
def test_unknown_profile_lists_choices(bad):
    with pytest.raises(ValueError, match=r"profile must be one of \('smoke', 'quick', 'paper'\)"):
        resolve_profile(bad)


def test_cuda_without_cuda_fails_clearly():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match=r"device='cuda'.*not available"):
        setup_run("data", profile="smoke", device="cuda")


def test_unknown_device_lists_choices():
    with pytest.raises(ValueError, match=r"device must be one of \('auto', 'cpu', 'cuda'\)"):
        setup_run("data", profile="smoke", device="gpu")


def test_missing_data_dir_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*nowhere.*does not exist"):
        setup_run("data", profile="smoke", data_dir=missing)


def test_unknown_chapter_lists_known_ones():
    with pytest.raises(ValueError, match=r"unknown chapter 'nope'; known chapters: \[.*'data'"):
        setup_run("nope", profile="smoke")


@pytest.mark.parametrize("chapter", sorted(chapters.CHAPTERS))
def test_every_chapter_has_every_profile(chapter):
    table = chapters.profile_table(chapter)
    assert set(PROFILE_NAMES) <= set(table)
    configs = [table[p] for p in PROFILE_NAMES]
    assert len({repr(c) for c in configs}) == 3, "smoke, quick and paper should differ"
    for config in configs:  # frozen dataclasses: a run cannot change its own configuration
        with pytest.raises(Exception):
            setattr(config, next(iter(vars(config))), None)


def test_setup_run_records_parameters_and_seeds(tmp_path):
    dicom.write_series(tmp_path / "P1", np.zeros((1, 4, 4)), "P1", "FD", 1.0, 1.0)  # a data_dir must hold DICOM
    run = setup_run("data", profile="smoke", device="cpu", seed=7, data_dir=tmp_path)
    assert run.profile == "smoke" and run.device == torch.device("cpu") and run.seed == 7
    assert run.data_dir == tmp_path and not run.simulated
    a = torch.rand(3)
    setup_run("data", profile="smoke", device="cpu", seed=7)
    assert torch.equal(a, torch.rand(3)), "setup_run must seed torch's global generator"
    record = run.record()
    assert record["seed"] == 7 and record["parameters"]["profile"] == "smoke"
    assert record["versions"]["torch"] == torch.__version__.split("+")[0] or record["versions"]["torch"]
    assert torch.are_deterministic_algorithms_enabled()
