"""Tests of glassbox.data.lowdose_ct: the paired-data format, splits, normalisation, patches, Dataset, store."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from glassbox.data import lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig


@pytest.fixture(scope="module")
def pairs() -> lowdose_ct.Pairs:
    return lowdose_ct.simulate_patients(32, n_patients=4, slices_per_patient=3, dose=0.25, seed=0)


# --- simulation ---------------------------------------------------------------------------------------

def test_simulated_pairs_have_the_shared_format(pairs: lowdose_ct.Pairs) -> None:
    assert list(pairs) == ["S000", "S001", "S002", "S003"]
    for low, full in pairs.values():
        assert low.shape == full.shape == (3, 32, 32)
        assert low.dtype == full.dtype == np.float32
        body = full > -500
        # same anatomy, unbiased noise: the mean over the body agrees; the images are not identical
        assert abs(low[body].mean() - full[body].mean()) < 10.0
        assert np.std((low - full)[body]) > 5.0


def test_pairs_are_deterministic_and_patients_independent_of_the_count(pairs: lowdose_ct.Pairs) -> None:
    again = lowdose_ct.simulate_patients(32, n_patients=2, slices_per_patient=3, dose=0.25, seed=0)
    for pid in again:
        np.testing.assert_array_equal(again[pid][0], pairs[pid][0])
        np.testing.assert_array_equal(again[pid][1], pairs[pid][1])
    other = lowdose_ct.simulate_patients(32, n_patients=1, slices_per_patient=3, dose=0.25, seed=1)
    assert not np.array_equal(other["S000"][1], pairs["S000"][1])


def test_lower_dose_is_noisier() -> None:
    low_025, full = lowdose_ct.simulate_patients(32, 1, 4, dose=0.25, seed=2)["S000"]
    low_010, _ = lowdose_ct.simulate_patients(32, 1, 4, dose=0.10, seed=2)["S000"]
    body = full > -500
    assert np.std((low_010 - full)[body]) > np.std((low_025 - full)[body])


# --- splits --------------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(count=st.integers(3, 80), seed=st.integers(0, 10_000))
def test_splits_are_disjoint_complete_and_deterministic(count: int, seed: int) -> None:
    ids = lowdose_ct.patient_ids(count)
    splits = lowdose_ct.split_patients(ids, (0.7, 0.15, 0.15), seed)
    assert set(splits) == {"train", "val", "test"}
    members = [pid for name in lowdose_ct.SPLITS for pid in splits[name]]
    assert sorted(members) == sorted(ids)  # complete, and no patient twice
    assert all(len(splits[name]) >= 1 for name in lowdose_ct.SPLITS)
    if count >= 7:  # below that, 0.15 * count rounds to 0 and the at-least-one rule takes over
        for name, fraction in zip(lowdose_ct.SPLITS, (0.7, 0.15, 0.15)):
            assert abs(len(splits[name]) - fraction * count) < 1.0  # largest-remainder rounding
    shuffled = list(np.random.default_rng(seed).permutation(ids))
    assert lowdose_ct.split_patients(shuffled, (0.7, 0.15, 0.15), seed) == splits


def test_split_seed_matters_and_zero_fraction_is_empty() -> None:
    ids = lowdose_ct.patient_ids(20)
    assert lowdose_ct.split_patients(ids, seed=0) != lowdose_ct.split_patients(ids, seed=1)
    no_val = lowdose_ct.split_patients(ids, (0.8, 0.0, 0.2), seed=0)
    assert no_val["val"] == [] and len(no_val["train"]) == 16 and len(no_val["test"]) == 4


@pytest.mark.parametrize("ids, fractions, match", [
    (["a", "b"], (0.7, 0.15, 0.15), "at least 3 patients"),
    (["a", "b", "c"], (0.5, 0.5), "three non-negative"),
    (["a", "b", "c"], (0.5, 0.3, 0.3), "sum to 1"),
    (["a", "b", "c"], (1.2, -0.1, -0.1), "three non-negative"),
    (["a", "a", "b", "c"], (0.5, 0.25, 0.25), "unique"),
])
def test_bad_splits_raise_clear_errors(ids, fractions, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lowdose_ct.split_patients(ids, fractions, seed=0)


# --- normalisation ---------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, (3, 4), elements=st.floats(-3000, 4000)))
def test_normalize_denormalize_round_trip(hu: np.ndarray) -> None:
    np.testing.assert_allclose(lowdose_ct.denormalize(lowdose_ct.normalize(hu)), hu, atol=1e-9)


def test_normalisation_is_attenuation_relative_to_water() -> None:
    assert lowdose_ct.normalize(0.0) == 1.0 and lowdose_ct.normalize(-1000.0) == 0.0
    tensor = torch.tensor([-1000.0, 0.0, 1000.0])
    torch.testing.assert_close(lowdose_ct.normalize(tensor), torch.tensor([0.0, 1.0, 2.0]))
    torch.testing.assert_close(lowdose_ct.denormalize(lowdose_ct.normalize(tensor)), tensor)


# --- patches and the Dataset ------------------------------------------------------------------------------------

def test_patches_are_co_located_and_reproducible() -> None:
    full = np.random.default_rng(0).normal(size=(3, 40, 40)).astype(np.float32)
    low = full + 7.0
    low_p, full_p = lowdose_ct.random_patches(low, full, 16, 10, np.random.default_rng(1))
    assert low_p.shape == full_p.shape == (10, 16, 16)
    np.testing.assert_allclose(low_p - full_p, 7.0)
    again = lowdose_ct.random_patches(low, full, 16, 10, np.random.default_rng(1))
    np.testing.assert_array_equal(again[0], low_p)
    # every patch is a genuine sub-window of some slice
    windows = np.lib.stride_tricks.sliding_window_view(full, (16, 16), axis=(1, 2))
    for patch in full_p:
        assert np.any(np.all(windows == patch, axis=(-1, -2)))


def test_patches_respect_min_foreground() -> None:
    full = np.full((2, 64, 64), -1000.0, dtype=np.float32)
    full[:, 40:, 40:] = 40.0  # body only in one corner
    _, patches = lowdose_ct.random_patches(full, full, 16, 20, np.random.default_rng(0), min_foreground=0.5)
    assert np.all(np.mean(patches > lowdose_ct.FOREGROUND_HU, axis=(1, 2)) >= 0.5)
    with pytest.raises(ValueError, match="could not find"):
        lowdose_ct.random_patches(full, full, 32, 5, np.random.default_rng(0), min_foreground=1.0)


def test_patch_positions_follow_the_reference_not_the_noise() -> None:
    """Acceptance on a noise-free reference: two noise draws of the same anatomy get the same patches."""
    clean = np.full((3, 48, 48), -1000.0, dtype=np.float32)
    clean[:, 8:40, 8:40] = 40.0
    noisy = [clean + np.random.default_rng(k).normal(0, 600, clean.shape).astype(np.float32) for k in (1, 2)]
    first, second = (lowdose_ct.random_patches(x, x, 16, 12, np.random.default_rng(5), min_foreground=0.5,
                                               reference=clean) for x in noisy)
    positions = lowdose_ct.patch_positions(clean, 16, 12, np.random.default_rng(5), min_foreground=0.5)
    np.testing.assert_array_equal(first[1], lowdose_ct.crop(noisy[0], positions, 16))
    np.testing.assert_array_equal(second[1], lowdose_ct.crop(noisy[1], positions, 16))
    moved = [lowdose_ct.patch_positions(x, 16, 12, np.random.default_rng(5), min_foreground=0.5) for x in noisy]
    assert not np.array_equal(moved[0], moved[1])      # deciding on the noisy image would move them


def test_grid_tiles_do_not_overlap_and_respect_the_foreground() -> None:
    ref = np.full((2, 64, 64), -1000.0, dtype=np.float32)
    ref[:, :32, :] = 40.0                                   # body in the top half of each slice
    tiles = lowdose_ct.grid_tiles(ref, 16, min_foreground=0.5)
    assert len(tiles) == 2 * 2 * 4 and set(tiles[:, 1]) == {0, 16}
    covered = np.zeros(ref.shape, dtype=int)
    for s, r, c in tiles:
        covered[s, r:r + 16, c:c + 16] += 1
    assert covered.max() == 1                                 # no pixel in two tiles
    some = lowdose_ct.grid_tiles(ref, 16, min_foreground=0.5, max_tiles=5, rng=np.random.default_rng(0))
    assert len(some) == 5 and {tuple(t) for t in some} <= {tuple(t) for t in tiles}
    with pytest.raises(ValueError, match="rng"):
        lowdose_ct.grid_tiles(ref, 16, max_tiles=5)


def test_noise_free_volumes_are_the_phantoms_behind_the_data() -> None:
    config = lowdose_ct.CTDataConfig(n=32, n_patients=2, slices_per_patient=2)
    clean = lowdose_ct.noise_free_volumes(config, seed=3)
    pairs = lowdose_ct.simulate_patients(32, 2, 2, config.dose, 3)
    assert sorted(clean) == sorted(pairs)
    for pid, volume in clean.items():
        assert volume.shape == pairs[pid][1].shape
        body = volume > lowdose_ct.FOREGROUND_HU
        assert np.mean(np.abs(pairs[pid][1][body] - volume[body])) < 100   # the same anatomy, plus noise


@pytest.mark.parametrize("kwargs, match", [
    (dict(patch_size=50), "larger than the slices"),
    (dict(patch_size=1), "patch_size"),
    (dict(n_patches=0), "n_patches"),
    (dict(rng=0), "Generator"),
])
def test_bad_patch_requests_raise(kwargs, match: str) -> None:
    full = np.zeros((2, 40, 40), dtype=np.float32)
    args = dict(patch_size=8, n_patches=3, rng=np.random.default_rng(0)) | kwargs
    with pytest.raises(ValueError, match=match):
        lowdose_ct.random_patches(full, full, args["patch_size"], args["n_patches"], args["rng"])


def test_dataset_of_whole_slices_and_of_patches(pairs: lowdose_ct.Pairs) -> None:
    slices = lowdose_ct.PairedCTDataset(pairs, ["S001", "S003"])
    assert len(slices) == 6
    low, full = slices[4]
    assert low.shape == full.shape == (1, 32, 32) and low.dtype == torch.float32
    np.testing.assert_allclose(lowdose_ct.denormalize(full.numpy()[0]), pairs["S003"][1][1], atol=1e-3)
    patches = lowdose_ct.PairedCTDataset(pairs, ["S001"], patch_size=16, patches_per_slice=5, seed=3, min_foreground=0.0)
    assert len(patches) == 15 and patches[0][0].shape == (1, 16, 16)
    same = lowdose_ct.PairedCTDataset(pairs, ["S001"], patch_size=16, patches_per_slice=5, seed=3, min_foreground=0.0)
    torch.testing.assert_close(same.low, patches.low)
    with pytest.raises(ValueError, match="not in pairs"):
        lowdose_ct.PairedCTDataset(pairs, ["S999"])


def test_make_datasets_splits_by_patient(pairs: lowdose_ct.Pairs) -> None:
    config = CTDataConfig(n=32, n_patients=4, slices_per_patient=3, patch_size=16, patches_per_slice=2)
    datasets = lowdose_ct.make_datasets(pairs, config, seed=0)
    assert set(datasets) == {"train", "val", "test"}
    assert datasets["train"][0][0].shape == (1, 16, 16) and datasets["test"][0][0].shape == (1, 32, 32)
    ids = [set(d.ids) for d in datasets.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


# --- configuration and the store -----------------------------------------------------------------------------------

def test_profiles_are_valid_configs() -> None:
    assert set(DATA_PROFILES) == {"smoke", "quick", "paper"}
    sizes = [DATA_PROFILES[p].n * DATA_PROFILES[p].n_patients for p in ("smoke", "quick", "paper")]
    assert sizes == sorted(sizes)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=8), ">= 16"),
    (dict(dose=0.0), "dose"),
    (dict(n_patients=0), "n_patients"),
    (dict(patch_size=100), "at most n"),
    (dict(split_fractions=(0.5, 0.5, 0.5)), "sum to 1"),
])
def test_bad_config_raises(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CTDataConfig(**kwargs)


def test_build_dataset_computes_once_then_loads(tmp_path) -> None:
    config = CTDataConfig(n=16, n_patients=3, slices_per_patient=1)
    first = lowdose_ct.build_dataset(config, seed=0, root=tmp_path, progress=False)
    direct = lowdose_ct.simulate_patients(16, 3, 1, config.dose, 0)
    assert list(first) == list(direct)
    for pid in direct:
        np.testing.assert_array_equal(first[pid][0], direct[pid][0])
    entries = sorted(p.name for p in tmp_path.rglob("*.pt"))
    second = lowdose_ct.build_dataset(config, seed=0, root=tmp_path, progress=False)
    np.testing.assert_array_equal(second["S002"][1], first["S002"][1])
    assert sorted(p.name for p in tmp_path.rglob("*.pt")) == entries  # loaded, not recomputed
    lowdose_ct.build_dataset(dataclasses.replace(config, dose=0.5), seed=0, root=tmp_path, progress=False)
    assert len(list(tmp_path.rglob("*.pt"))) == len(entries) + 1


def test_get_pairs_reads_a_real_dicom_tree_like_the_simulation(tmp_path):
    """One downstream path: a Mayo tree written from simulated pairs loads back to the same mapping."""
    from glassbox.data.dicom import write_mayo_tree
    from glassbox.data.lowdose_ct import get_pairs

    pairs = lowdose_ct.simulate_patients(32, 2, 2, seed=1)
    rounded = {pid: (np.round(low), np.round(full)) for pid, (low, full) in pairs.items()}
    write_mayo_tree(tmp_path, rounded, pixel_mm=12.5)
    loaded = get_pairs(CTDataConfig(n=32), data_dir=tmp_path, progress=False)
    assert sorted(loaded) == sorted(pairs)
    for pid, (low, full) in rounded.items():
        np.testing.assert_array_equal(loaded[pid][0], np.clip(low, -1024, None))
        np.testing.assert_array_equal(loaded[pid][1], np.clip(full, -1024, None))
