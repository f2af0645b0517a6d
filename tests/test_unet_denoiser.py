"""Tests of glassbox.training.unet_denoiser: config checks, shared data, seeding, evaluation floor, store and resume."""
import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from glassbox.data import lowdose_ct
from glassbox.models.unet import UNet
from glassbox.training import unet_denoiser
from glassbox.training.loop import trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig, InitPerturbation

TINY = DenoiserConfig(depth=5, width=0.125, residual=True, patch_size=16, n_patches=16, epochs=1, batch_size=8,
                      lr=1e-3)


@pytest.fixture
def pairs(tiny_pairs):
    return tiny_pairs


def _weights(model):
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kwargs, match", [
    ({"depth": 6}, "depth"),
    ({"patch_size": 20, "n_patches": 4, "depth": 7}, "divisible by 8"),
    ({"n_patches": 4}, "needs a patch_size"),
    ({"patch_size": 16}, "n_patches"),
    ({"width": 0}, "width"),
    ({"lr": -1.0}, "lr"),
    ({"split_fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
    ({"zero_head": True}, "needs residual=True"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DenoiserConfig(**kwargs)


def test_prepare_data_is_pure_and_split_by_patient(pairs):
    a, b = unet_denoiser.prepare_data(TINY, pairs), unet_denoiser.prepare_data(TINY, pairs)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert a.n_train == TINY.n_patches
    assert a.train.tensors[0].shape[-2:] == (16, 16)
    groups = [set(ids) for ids in a.split.values()]
    assert set().union(*groups) == set(pairs) and sum(map(len, groups)) == len(pairs)
    other = unet_denoiser.prepare_data(DenoiserConfig(**(TINY.as_dict() | {"split_seed": 1})), pairs)
    assert not torch.equal(other.train.tensors[0], a.train.tensors[0])


def test_fingerprint_changes_with_one_pixel(pairs):
    changed = {k: (v[0].copy(), v[1]) for k, v in pairs.items()}
    first = sorted(changed)[0]
    changed[first][0][0, 0, 0] += 1.0
    assert unet_denoiser.pairs_fingerprint(pairs) == unet_denoiser.pairs_fingerprint(dict(pairs))
    assert unet_denoiser.pairs_fingerprint(changed) != unet_denoiser.pairs_fingerprint(pairs)


def test_same_seeds_same_weights_other_seeds_differ(pairs):
    data = unet_denoiser.prepare_data(TINY, pairs)
    fixed = trial_seeds("fixed", 0, 0)
    a, _ = unet_denoiser.train_denoiser(TINY, pairs, fixed, progress=False, data=data)
    b, _ = unet_denoiser.train_denoiser(TINY, pairs, fixed, progress=False, data=data)
    c, _ = unet_denoiser.train_denoiser(TINY, pairs, trial_seeds("random", 1, 0), progress=False, data=data)
    assert _equal(_weights(a), _weights(b))
    assert not _equal(_weights(a), _weights(c))


def test_init_perturbation_is_relative_and_zero_is_identity():
    base = _weights(unet_denoiser.build_model(TINY, 3))
    zero = _weights(unet_denoiser.build_model(TINY, 3, InitPerturbation(0.0, 1)))
    small = _weights(unet_denoiser.build_model(TINY, 3, InitPerturbation(1e-3, 1)))
    assert _equal(base, zero)
    name = "Down1.0.weight"
    relative = (small[name] - base[name]).pow(2).mean().sqrt() / base[name].pow(2).mean().sqrt()
    assert 0.5e-3 < relative.item() < 2e-3
    assert torch.equal(small["Down1.1.running_mean"], base["Down1.1.running_mean"])  # buffers untouched


def test_identity_model_scores_equal_the_floor(pairs):
    model = UNet(5, 0.125, residual=True)
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)          # residual + zero head = exact identity
    ids = sorted(pairs)[:2]
    scores = unet_denoiser.evaluate_denoiser(model, pairs, ids)
    assert scores["psnr"] == pytest.approx(scores["input_psnr"], abs=1e-4)
    assert scores["psnr_gain"] == pytest.approx(0.0, abs=1e-4)
    low = np.concatenate([pairs[i][0] for i in ids])
    full = np.concatenate([pairs[i][1] for i in ids])
    reference = np.mean([peak_signal_noise_ratio(f.astype(np.float64), l.astype(np.float64),
                                                 data_range=unet_denoiser.PSNR_RANGE_HU) for l, f in zip(low, full)])
    assert scores["input_psnr"] == pytest.approx(reference, abs=1e-3)
    assert scores["input_rmse_hu"] == pytest.approx(math.sqrt(np.mean((low.astype(float) - full) ** 2)), rel=1e-5)


def test_trained_denoiser_stores_and_trains_trials_separately(pairs, tmp_path):
    seeds = trial_seeds("fixed", 0, 0)
    a, history = unet_denoiser.trained_denoiser(TINY, pairs, seeds, trial=0, root=tmp_path, progress=False)
    again, _ = unet_denoiser.trained_denoiser(TINY, pairs, seeds, trial=0, root=tmp_path, progress=False)
    b, _ = unet_denoiser.trained_denoiser(TINY, pairs, seeds, trial=1, root=tmp_path, progress=False)
    assert len(history) == TINY.epochs and "val_psnr" in history.epochs[0]
    assert _equal(_weights(a), _weights(again))
    assert len(list((tmp_path / "denoiser").glob("*.pt"))) == 2          # trial 1 was trained, not loaded
    assert _equal(_weights(a), _weights(b))                                # ... and equals trial 0 on CPU


def test_checkpoint_resume_matches_uninterrupted(pairs, tmp_path):
    two = DenoiserConfig(**(TINY.as_dict() | {"epochs": 2}))
    seeds = trial_seeds("random", 0, 5)
    straight, _ = unet_denoiser.train_denoiser(two, pairs, seeds, progress=False)
    unet_denoiser.train_denoiser(TINY, pairs, seeds, progress=False, checkpoint_dir=tmp_path)   # stops after epoch 1
    resumed, history = unet_denoiser.train_denoiser(two, pairs, seeds, progress=False, checkpoint_dir=tmp_path)
    assert history.resumed_from == 1
    assert _equal(_weights(straight), _weights(resumed))


def test_resimulated_pairs_same_anatomy_new_noise():
    config = lowdose_ct.CTDataConfig(n=32, n_patients=2, slices_per_patient=1)
    original = lowdose_ct.simulate_patients(32, 2, 1, config.dose, seed=4)
    a = unet_denoiser.resimulated_pairs(config, 4, noise_seed=1)
    b = unet_denoiser.resimulated_pairs(config, 4, noise_seed=2)
    for pid in original:
        assert not np.array_equal(a[pid][0], b[pid][0])
        noise = np.std(original[pid][0] - original[pid][1])
        # same phantom: the full-dose images differ only by noise, far less than the anatomy's contrast
        assert np.std(a[pid][1] - b[pid][1]) < 3 * noise
        assert np.std(a[pid][1] - b[pid][1]) < 0.1 * np.std(original[pid][1])


def test_bad_inputs_raise(pairs):
    with pytest.raises(ValueError, match="TrialSeeds"):
        unet_denoiser.train_denoiser(TINY, pairs, (1, 2, 3), progress=False)
    with pytest.raises(ValueError, match="not in pairs"):
        unet_denoiser.evaluate_denoiser(UNet(5, 0.125), pairs, ["nobody"])
    with pytest.raises(ValueError, match="non-empty mapping"):
        unet_denoiser.prepare_data(TINY, {})


def test_trained_denoiser_resumes_a_killed_run_from_its_auto_checkpoints(pairs, tmp_path, monkeypatch):
    two = DenoiserConfig(**(TINY.as_dict() | {"epochs": 2}))
    seeds = trial_seeds("random", 0, 9)
    straight, _ = unet_denoiser.train_denoiser(two, pairs, seeds, progress=False)
    real_fit = unet_denoiser.fit

    def killed_after_one_epoch(*args, **kwargs):
        real_fit(*args, **(kwargs | {"epochs": 1}))
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(unet_denoiser, "fit", killed_after_one_epoch)
    with pytest.raises(KeyboardInterrupt):
        unet_denoiser.trained_denoiser(two, pairs, seeds, trial=0, root=tmp_path, progress=False)
    assert list((tmp_path / "_checkpoints" / "denoiser").rglob("epoch_0001.pt"))
    resumed_from = []

    def spy(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        resumed_from.append(result.resumed_from)
        return result

    monkeypatch.setattr(unet_denoiser, "fit", spy)
    resumed, history = unet_denoiser.trained_denoiser(two, pairs, seeds, trial=0, root=tmp_path, progress=False)
    assert resumed_from == [1] and len(history) == 2
    assert _equal(_weights(straight), _weights(resumed))
    assert not list((tmp_path / "_checkpoints" / "denoiser").rglob("*.pt"))   # cleaned up once stored


def test_zero_head_starts_as_the_identity(pairs):
    config = DenoiserConfig(**(TINY.as_dict() | {"zero_head": True}))
    model = unet_denoiser.build_model(config, init_seed=11)
    low = pairs[sorted(pairs)[0]][0]
    assert np.allclose(unet_denoiser.denoise(model, low), low, atol=1e-3)     # float32 round trip of the HU scaling
    other = _weights(unet_denoiser.build_model(TINY, init_seed=11))        # the rest of the init is unchanged
    assert all(torch.equal(v, other[k]) for k, v in _weights(model).items() if not k.startswith("head."))
