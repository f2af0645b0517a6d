"""The training loop: determinism, exact resume, atomic/corrupt checkpoints, seeding modes, Qu's recipe."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from glassbox.models.common import init_model
from glassbox.models.unet import UNet
from glassbox.training.loop import (
    ALL_SEEDINGS,
    CONTROL_SEEDING,
    SEEDING_MODES,
    SHARED_SEEDS,
    CheckpointMismatchError,
    CheckpointWarning,
    History,
    TrainConfig,
    checkpoint_files,
    epoch_order,
    fit,
    l1_l2_loss,
    paired_loss,
    read_checkpoint,
    rmsprop,
    trial_seeds,
)

SIZE = 16  # samples of 1x16x16


def _dataset(seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    clean = torch.rand(SIZE, 1, 16, 16, generator=gen)
    return TensorDataset(clean + 0.1 * torch.randn(clean.shape, generator=gen), clean)


def _model(init_seed: int = 0) -> UNet:
    return init_model(lambda: UNet(5, 0.125), init_seed)


def _fit(model=None, *, epochs=2, data_seed=0, dataset=None, **kwargs) -> tuple[UNet, History]:
    model = _model() if model is None else model
    config = TrainConfig(epochs=epochs, batch_size=4, lr=1e-3)
    kwargs = {"batch_size": config.batch_size, "optimizer": config.optimizer(), "progress": False} | kwargs
    history = fit(model, dataset if dataset is not None else _dataset(), config.loss_fn(), epochs=epochs,
                  data_seed=data_seed, **kwargs)
    return model, history


def _equal_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------- recipe


def test_l1_l2_loss_closed_form():
    p = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    t = torch.tensor([[0.0, 0.0], [5.0, -1.0]])
    # differences 1, 2, -2, 0: mean |d| = 5/4, mean d^2 = 9/4
    assert l1_l2_loss(p, t).item() == pytest.approx(5 / 4 + 9 / 4)
    assert l1_l2_loss(p, t, l1_weight=0.5, l2_weight=2.0).item() == pytest.approx(0.5 * 5 / 4 + 2 * 9 / 4)
    torch.testing.assert_close(l1_l2_loss(p, t), torch.nn.functional.l1_loss(p, t) + torch.nn.functional.mse_loss(p, t))
    with pytest.raises(ValueError, match="same shape"):
        l1_l2_loss(p, t[0])


def test_train_config_defaults_are_the_papers():
    config = TrainConfig(epochs=200)
    assert (config.batch_size, config.lr, config.l1_weight, config.l2_weight) == (8, 0.01, 1.0, 1.0)
    opt = config.optimizer()([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.RMSprop) and opt.param_groups[0]["lr"] == 0.01
    assert rmsprop()([torch.nn.Parameter(torch.zeros(1))]).param_groups[0]["lr"] == 0.01
    model = torch.nn.Identity()
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(config.loss_fn()(model, (x, y)), l1_l2_loss(x, y))
    for bad in ({"epochs": 0}, {"epochs": 1, "batch_size": 0}, {"epochs": 1, "lr": -1.0},
                {"epochs": 1, "l1_weight": 0.0, "l2_weight": 0.0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="lr"):
        rmsprop(0)
    with pytest.raises(ValueError, match=r"\(input, target\)"):
        paired_loss()(model, x)


# ---------------------------------------------------------------------------------------------- seeding


def test_trial_seeds_share_exactly_the_seeds_of_their_mode():
    """The seeding modes' contract: random shares nothing, the paper's fixed shares the initial weights only,
    fully fixed shares every seed; trial 0 is the same in every mode."""
    fields = ("init_seed", "data_seed", "noise_seed")
    for mode in ALL_SEEDINGS:
        trials = [trial_seeds(mode, t, 7) for t in range(4)]
        for name in fields:
            values = {getattr(s, name) for s in trials}
            if name in SHARED_SEEDS[mode]:
                assert len(values) == 1, (mode, name)
            else:
                assert len(values) == 4, (mode, name)            # every trial its own
        assert trials[0] == trial_seeds("random", 0, 7)          # trial 0 is one run for all modes
    assert SHARED_SEEDS["random"] == frozenset() and SHARED_SEEDS["fixed"] == {"init_seed"}
    assert SHARED_SEEDS["fully_fixed"] == set(fields) and CONTROL_SEEDING == "fully_fixed"
    assert SEEDING_MODES == ("random", "fixed")                  # the paper's two modes
    fixed, random = trial_seeds("fixed", 1, 7), trial_seeds("random", 1, 7)
    assert fixed.data_seed == random.data_seed and fixed.init_seed != random.init_seed
    assert trial_seeds("random", 1, 7) == trial_seeds("random", 1, 7)  # a pure function of its arguments
    assert trial_seeds("fixed", 0, 7) != trial_seeds("fixed", 0, 8)
    assert len({getattr(trial_seeds("random", 3, 7), f) for f in fields}) == 3  # decorrelated streams
    assert all(isinstance(v, int) for v in vars(fixed).values())
    with pytest.raises(ValueError, match="random.*fixed"):
        trial_seeds("same", 0, 0)
    with pytest.raises(ValueError, match="trial"):
        trial_seeds("random", -1, 0)


def test_init_model_reproducible_and_leaves_global_rng_alone():
    before = torch.get_rng_state()
    a, b, c = _model(1), _model(1), _model(2)
    assert torch.equal(torch.get_rng_state(), before)
    assert _equal_weights(a, b)
    assert not _equal_weights(a, c)
    with pytest.raises(ValueError, match="init_seed"):
        init_model(lambda: UNet(5, 0.125), -3)


def test_epoch_order_is_a_pure_permutation():
    order = epoch_order(50, 3, 1)
    assert sorted(order.tolist()) == list(range(50))
    assert torch.equal(order, epoch_order(50, 3, 1))
    assert not torch.equal(order, epoch_order(50, 3, 2))
    assert not torch.equal(order, epoch_order(50, 4, 1))


class _IndexedDataset(Dataset):
    """Yields (index, image) so a loss_fn can record the order in which fit visits samples."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        return torch.tensor(i), torch.full((1, 8, 8), float(i))


def test_fit_visits_samples_in_epoch_order():
    seen: list[int] = []

    def loss_fn(model, batch):
        index, image = batch
        seen.extend(index.tolist())
        return (model(image) ** 2).mean()

    fit(_model(), _IndexedDataset(), loss_fn, epochs=2, batch_size=3, optimizer=rmsprop(1e-4), data_seed=5,
        progress=False)
    expected = epoch_order(10, 5, 1).tolist() + epoch_order(10, 5, 2).tolist()
    assert seen == expected


# ---------------------------------------------------------------------------------------------- determinism


def test_fit_same_seeds_identical_weights_and_data_seed_matters():
    a, history_a = _fit(data_seed=0)
    b, history_b = _fit(data_seed=0)
    c, _ = _fit(data_seed=1)
    assert _equal_weights(a, b)
    assert [e["train_loss"] for e in history_a.epochs] == [e["train_loss"] for e in history_b.epochs]
    assert not _equal_weights(a, c)
    assert not _equal_weights(a, _model())  # it did train


def test_history_and_val_fn():
    calls = []

    def val_fn(model):
        calls.append((model.training, torch.is_grad_enabled()))
        return {"val_l1": 0.5}

    _, history = _fit(epochs=2, val_fn=val_fn)
    assert calls == [(False, False), (False, False)]  # eval mode, no gradients
    frame = history.to_frame()
    assert list(frame["epoch"]) == [1, 2] and len(history) == 2
    assert {"epoch", "train_loss", "val_l1", "seconds"} <= set(frame.columns)
    assert (frame["train_loss"] > 0).all()
    with pytest.raises(ValueError, match="train_loss"):
        _fit(epochs=1, val_fn=lambda m: {"train_loss": 1.0})


def test_nonfinite_loss_raises():
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(_model(), _dataset(), lambda m, b: m(b[0]).mean() * float("nan"), epochs=1, batch_size=4,
            optimizer=rmsprop(), data_seed=0, progress=False)


def test_bad_arguments():
    for kwargs, word in (({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"data_seed": -1}, "data_seed")):
        with pytest.raises(ValueError, match=word):
            _fit(**kwargs)


# ---------------------------------------------------------------------------------------------- checkpoints


def test_resume_equals_uninterrupted(tmp_path):
    reference, reference_history = _fit(epochs=3)
    _, first = _fit(epochs=2, checkpoint_dir=tmp_path)
    assert [e for e, _ in checkpoint_files(tmp_path)] == [2, 1]
    resumed, history = _fit(epochs=3, checkpoint_dir=tmp_path)  # a fresh model with the same init seed
    assert history.resumed_from == 2 and len(history) == 3
    assert _equal_weights(resumed, reference)
    assert [e["train_loss"] for e in history.epochs] == [e["train_loss"] for e in reference_history.epochs]
    assert [e for e, _ in checkpoint_files(tmp_path)] == [3, 2]  # keep_checkpoints=2
    again, history = _fit(epochs=3, checkpoint_dir=tmp_path)  # already done: loads, trains nothing
    assert history.resumed_from == 3 and _equal_weights(again, reference)


def test_resume_after_a_crash_inside_val_fn(tmp_path):
    reference, _ = _fit(epochs=3)

    def crash_in_epoch_2(model, _calls=[]):
        _calls.append(1)
        if len(_calls) == 2:
            raise KeyboardInterrupt("simulated kill")
        return {}

    with pytest.raises(KeyboardInterrupt):
        _fit(epochs=3, checkpoint_dir=tmp_path, val_fn=crash_in_epoch_2)
    assert [e for e, _ in checkpoint_files(tmp_path)] == [1]
    assert not list(tmp_path.glob(".*.tmp"))
    resumed, history = _fit(epochs=3, checkpoint_dir=tmp_path, val_fn=lambda m: {})
    assert history.resumed_from == 1 and len(history) == 3
    assert _equal_weights(resumed, reference)


def test_killed_while_writing_leaves_no_valid_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def save_half_then_die(obj, fh, *args, **kwargs):
        real_save(obj, fh, *args, **kwargs)
        fh.truncate(fh.tell() // 2)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        _fit(epochs=1, checkpoint_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_truncated_checkpoint_is_detected_and_skipped(tmp_path):
    reference, _ = _fit(epochs=2)
    _fit(epochs=2, checkpoint_dir=tmp_path)
    newest = tmp_path / "epoch_0002.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(Exception):
        read_checkpoint(newest)
    with pytest.warns(CheckpointWarning, match="epoch_0002.pt"):
        resumed, history = _fit(epochs=2, checkpoint_dir=tmp_path)
    assert history.resumed_from == 1  # the last good one
    assert _equal_weights(resumed, reference)
    assert (tmp_path / "epoch_0002.pt.corrupt").exists()
    assert read_checkpoint(tmp_path / "epoch_0002.pt")["epoch"] == 2  # rewritten, valid again


def test_all_checkpoints_corrupt_restarts_from_scratch(tmp_path):
    reference, _ = _fit(epochs=1)
    (tmp_path / "epoch_0001.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(CheckpointWarning):
        resumed, history = _fit(epochs=1, checkpoint_dir=tmp_path)
    assert history.resumed_from == 0 and _equal_weights(resumed, reference)


@pytest.mark.parametrize("change,word", [
    ({"batch_size": 2}, "batch_size"),
    ({"data_seed": 9}, "data_seed"),
    ({"optimizer": rmsprop(0.5)}, "optimizer"),
    ({"model": "other_init"}, "initial_weights"),
    ({"fingerprint": {"dose": 0.25}}, "extra"),
])
def test_resume_with_a_different_config_is_refused(tmp_path, change, word):
    _fit(epochs=1, checkpoint_dir=tmp_path)
    if change.get("model") == "other_init":
        change = {"model": _model(init_seed=1)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        with pytest.raises(CheckpointMismatchError, match=word):
            _fit(epochs=2, checkpoint_dir=tmp_path, **change)


def test_config_fingerprint_ignores_epochs(tmp_path):
    """Passing the whole TrainConfig as fingerprint still lets fit(epochs=2) continue to epochs=3."""
    reference, _ = _fit(epochs=3)
    _fit(epochs=2, checkpoint_dir=tmp_path, fingerprint=TrainConfig(epochs=2))
    resumed, history = _fit(epochs=3, checkpoint_dir=tmp_path, fingerprint=TrainConfig(epochs=3))
    assert history.resumed_from == 2 and _equal_weights(resumed, reference)
    with pytest.raises(CheckpointMismatchError, match="extra"):
        _fit(epochs=3, checkpoint_dir=tmp_path, fingerprint=TrainConfig(epochs=3, lr=0.5))


def test_checkpoint_beyond_requested_epochs_is_refused(tmp_path):
    _fit(epochs=2, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="epoch 2.*epochs=1"):
        _fit(epochs=1, checkpoint_dir=Path(tmp_path))


def test_cosine_adam_falls_from_peak_to_floor_and_resumes_its_schedule():
    from glassbox.training.loop import CosineAdam, cosine_adam

    weight = torch.nn.Parameter(torch.zeros(3))
    opt = cosine_adam(0.01, total_steps=10, final_fraction=0.1)([weight])
    assert isinstance(opt, CosineAdam)
    rates = []
    for _ in range(12):
        weight.grad = torch.ones(3)
        opt.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(0.01) and rates[-1] == pytest.approx(0.001)
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    # the step count travels with the state dict: a restored optimizer continues the schedule
    fresh = cosine_adam(0.01, total_steps=10, final_fraction=0.1)([torch.nn.Parameter(torch.zeros(3))])
    fresh.load_state_dict(opt.state_dict())
    assert fresh.param_groups[0]["steps_done"] == 12
    with pytest.raises(ValueError):
        cosine_adam(0.0, 10)
