"""Tests of the two-vendor breast-MRI simulator (glassbox.data.mri)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.core import dryrun
from glassbox.data.mri import (
    FACTORS,
    IMAGE_FACTORS,
    LINE_FACTORS,
    VENDOR_A,
    VENDOR_B,
    VENDOR_B_CALIBRATED,
    AnatomyConfig,
    Contrast,
    Vendor,
    acquire,
    coil_profile,
    factor_differences,
    mix,
    patient_split,
    simulate_stages,
    simulate_vendor,
    vendor_separability,
)

SMALL = AnatomyConfig(size=32, slices_per_patient=4)


@pytest.fixture(scope="module")
def pair():
    return simulate_vendor(40, "A", 3, SMALL), simulate_vendor(40, "B", 3, SMALL)


def test_same_seed_same_data_other_seed_other_data():
    a1, a2 = simulate_vendor(5, "A", 11, SMALL), simulate_vendor(5, "A", 11, SMALL)
    assert np.array_equal(a1.images, a2.images) and np.array_equal(a1.tumour_masks, a2.tumour_masks)
    assert not np.array_equal(a1.images, simulate_vendor(5, "A", 12, SMALL).images)


def test_chunking_does_not_change_patients():
    # 70 patients span two vectorised chunks; the first 5 must not depend on how many follow
    small, large = simulate_vendor(5, "A", 4, SMALL), simulate_vendor(70, "A", 4, SMALL)
    assert small.images.shape == (20, 32, 32) and large.images.shape == (280, 32, 32)
    assert np.isfinite(large.images).all() and large.images.dtype == np.float32


def test_a_dry_run_simulates_one_chunk_and_copies_it_to_the_full_shapes():
    full = simulate_vendor(70, "B", 4, SMALL)  # two chunks
    with dryrun.dry_run() as log:
        dry = simulate_vendor(70, "B", 4, SMALL)
    assert dry.images.shape == full.images.shape and dry.images.dtype == full.images.dtype
    assert np.array_equal(dry.labels, full.labels) and np.array_equal(dry.patients, full.patients)
    first = 64 * 4
    assert np.array_equal(dry.images[:first], full.images[:first])          # the first chunk is simulated
    assert np.array_equal(dry.images[first:], full.images[:280 - first])    # the rest copies it
    assert not np.array_equal(full.images[first:], full.images[:280 - first])
    assert log.cut == {"simulate_vendor": 1}
    with dryrun.dry_run() as log:
        simulate_vendor(5, "A", 4, SMALL)
    assert log.cut == {}  # one chunk: nothing to cut


def test_calibrated_b_differs_from_b_in_contrast_and_coil_only():
    assert factor_differences(VENDOR_B, VENDOR_B_CALIBRATED) == ["contrast", "coil"]


def test_classes_are_balanced_within_every_patient(pair):
    a, _ = pair
    assert len(a) == 40 * 4
    for pid in np.unique(a.patients):
        labels = a.labels[a.patients == pid]
        assert labels.sum() == 2 and len(labels) == 4
    # positives carry a tumour mask, negatives none
    assert all(a.tumour_masks[i].any() for i in np.flatnonzero(a.labels == 1))
    assert not a.tumour_masks[a.labels == 0].any()


def test_same_seed_gives_the_same_patients_on_every_vendor(pair):
    a, b = pair
    assert np.array_equal(a.tumour_masks, b.tumour_masks)
    assert not np.allclose(a.images, b.images)


def test_tumour_slices_are_brighter_inside_the_tumour_than_around_it(pair):
    a, _ = pair
    inside, ring = [], []
    for i in np.flatnonzero(a.labels == 1):
        m = a.tumour_masks[i]
        inside.append(a.images[i][m].mean())
        ring.append(a.images[i][~m].mean())
    assert np.mean(inside) > np.mean(ring)


def test_vendor_shift_is_detectable_and_absent_between_two_draws_of_one_vendor(pair):
    a, b = pair
    a_again = simulate_vendor(40, "A", 99, SMALL)
    assert vendor_separability(a.images, b.images) > 0.9
    assert vendor_separability(a.images, a_again.images) < 0.75
    # B's image-domain factors alone (A's k-space physics) still show in the intensity histogram
    image_only = simulate_vendor(40, mix(VENDOR_A, VENDOR_B, IMAGE_FACTORS), 3, SMALL)
    assert vendor_separability(a.images, image_only.images, features="histogram") > 0.8


# ---------------------------------------------------------------- the vendor's factors, one at a time

# which stage of simulate_stages each factor is allowed to change
STAGE_OF = {"contrast": {"signal"}, "bias": {"bias"}, "coil": {"coil"}, "noise": {"noise"},
            "readout": {"keep"}, "phase_res": {"keep"}, "ghosts": {"ghosts"}}
STAGES = ("signal", "bias", "coil", "ghosts", "noise", "keep")


def test_factor_table_covers_every_setting_and_splits_line_from_image_factors():
    assert set(STAGE_OF) == set(FACTORS)
    assert set(LINE_FACTORS) | set(IMAGE_FACTORS) == set(FACTORS) and not set(LINE_FACTORS) & set(IMAGE_FACTORS)
    assert factor_differences(VENDOR_A, VENDOR_B) == list(FACTORS)  # the presets differ in every factor
    assert factor_differences(VENDOR_A, mix(VENDOR_A, VENDOR_B, ["noise"])) == ["noise"]


@pytest.fixture(scope="module")
def stages_a():
    return simulate_stages(3, VENDOR_A, 5, SMALL)


@pytest.mark.parametrize("factor", list(FACTORS))
def test_each_factor_switched_alone_changes_only_its_own_stage(stages_a, factor):
    data_a, a = stages_a
    data_f, f = simulate_stages(3, mix(VENDOR_A, VENDOR_B, [factor]), 5, SMALL)
    assert np.array_equal(data_f.labels, data_a.labels) and np.array_equal(data_f.tumour_masks, data_a.tumour_masks)
    changed = {name for name in STAGES if not np.array_equal(f[name], a[name])}
    assert changed == STAGE_OF[factor], f"{factor} changed {changed}"
    assert not np.array_equal(data_f.images, data_a.images)
    if factor == "readout":   # fewer columns, every row
        assert np.array_equal(f["keep"].any(axis=1), a["keep"].any(axis=1)) and f["keep"].any(axis=0).sum() < 32
    if factor == "phase_res":  # fewer rows, every column
        assert np.array_equal(f["keep"].any(axis=0), a["keep"].any(axis=0)) and f["keep"].any(axis=1).sum() < 32
    if factor == "coil":       # one fixed profile for every patient
        assert np.allclose(f["coil"], coil_profile(32, VENDOR_B.coil)[None])
    if factor == "bias":       # a different field per patient, the same shape coefficients
        ratio = np.log(f["bias"]) / np.where(np.log(a["bias"]) == 0, np.nan, np.log(a["bias"]))
        assert np.nanstd(ratio) < 1e-9 and np.nanmean(ratio) == pytest.approx(VENDOR_B.bias / VENDOR_A.bias)
    if factor == "noise":      # the same draws, scaled
        assert np.allclose(f["noise"], a["noise"] * VENDOR_B.noise_sigma / VENDOR_A.noise_sigma)


def test_the_image_is_composed_from_its_stages(stages_a):
    data, st = stages_a
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(st["signal"] * st["bias"] * st["coil"], axes=(-2, -1)),
                                         norm="ortho"), axes=(-2, -1))
    kspace = (kspace * st["ghosts"][:, :, None] + st["noise"]) * st["keep"]
    raw = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(kspace, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)))
    assert np.allclose(raw, st["raw"], atol=1e-12)
    assert np.allclose(data.images, raw / st["scale"][:, None, None], atol=1e-6)


def test_no_factor_is_vendor_a_and_every_factor_is_vendor_b():
    a = simulate_vendor(3, VENDOR_A, 8, SMALL)
    assert np.array_equal(simulate_vendor(3, mix(VENDOR_A, VENDOR_B, []), 8, SMALL).images, a.images)
    assert np.array_equal(simulate_vendor(3, mix(VENDOR_A, VENDOR_B, list(FACTORS)), 8, SMALL).images,
                          simulate_vendor(3, VENDOR_B, 8, SMALL).images)


# ---------------------------------------------------------------- acquisition physics

CLEAN = Vendor("clean", noise_sigma=0.0, ghost_strength=(0.0, 0.0))


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    return np.random.default_rng(seed), np.random.default_rng(seed + 1)


def test_clean_acquisition_is_the_identity():
    signal = np.random.default_rng(0).uniform(0, 1, (3, 16, 16))
    assert np.allclose(acquire(signal, CLEAN, *_rngs(0)), signal, atol=1e-12)


@pytest.mark.parametrize("period,strength", [(2, 0.3), (4, 0.5)])
def test_periodic_ghosts_follow_the_closed_form(period, strength):
    # scaling every n-th PE line by (1 - s) = image minus (s / n) times the sum of its n shifted copies
    signal = np.zeros((1, 16, 16))
    signal[0, 2:5, 6:9] = np.random.default_rng(1).uniform(0.5, 1, (3, 3))
    vendor = Vendor("ghosts", noise_sigma=0.0, ghost_strength=(strength, strength), ghost_periods=(period,))
    expected = signal[0] - strength / period * sum(np.roll(signal[0], j * 16 // period, axis=0) for j in range(period))
    assert np.allclose(acquire(signal, vendor, *_rngs(1))[0], np.abs(expected), atol=1e-12)


def test_noise_is_rician_with_the_right_background_mean():
    sigma = 0.05
    out = acquire(np.zeros((40, 32, 32)), Vendor("noisy", noise_sigma=sigma, ghost_strength=(0, 0)), *_rngs(2))
    assert out.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)


@pytest.mark.parametrize("phase_keep,readout_keep", [(0.5, 0.5), (0.5, 1.0), (1.0, 0.5)])
def test_matrix_truncation_keeps_only_central_kspace(phase_keep, readout_keep):
    signal = np.random.default_rng(3).uniform(0, 1, (1, 32, 32))
    vendor = Vendor("low-res", noise_sigma=0.0, ghost_strength=(0, 0), phase_keep=phase_keep, readout_keep=readout_keep)
    out = acquire(signal, vendor, *_rngs(3))
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(signal[0]), norm="ortho"))
    if phase_keep < 1:
        k[:8], k[24:] = 0, 0
    if readout_keep < 1:
        k[:, :8], k[:, 24:] = 0, 0
    assert np.allclose(out[0], np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k), norm="ortho"))), atol=1e-12)


# ---------------------------------------------------------------- splits


@settings(max_examples=30, deadline=None)
@given(n_patients=st.integers(3, 60), seed=st.integers(0, 1000))
def test_patient_split_is_disjoint_complete_and_balanced(n_patients, seed):
    patients = np.repeat(np.arange(n_patients), 4)
    labels = np.tile([1, 1, 0, 0], n_patients)
    parts = patient_split(patients, (0.6, 0.2, 0.2), seed=seed)
    groups = [set(patients[idx]) for idx in parts.values()]
    assert all(groups) and sum(len(g) for g in groups) == n_patients
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(patients)))
    for idx in parts.values():
        assert labels[idx].mean() == 0.5
    assert all(np.array_equal(a, b) for a, b in zip(parts.values(), patient_split(patients, seed=seed).values()))


# ---------------------------------------------------------------- errors


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="unknown vendor"):
        simulate_vendor(2, "C", 0)
    with pytest.raises(ValueError, match="n_patients"):
        simulate_vendor(0, "A", 0)
    with pytest.raises(ValueError, match="seed"):
        simulate_vendor(2, "A", -1)
    with pytest.raises(ValueError, match="slices_per_patient"):
        AnatomyConfig(slices_per_patient=3)
    with pytest.raises(ValueError, match="readout_keep"):
        Vendor("x", readout_keep=0.0)
    with pytest.raises(ValueError, match="unknown factor"):
        mix(VENDOR_A, VENDOR_B, ["colour"])
    with pytest.raises(ValueError, match="sequence of factor names"):
        mix(VENDOR_A, VENDOR_B, "noise")
    with pytest.raises(ValueError, match="gamma"):
        Contrast(gamma=0)
    with pytest.raises(ValueError, match="fractions"):
        patient_split(np.arange(10), (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="patients cannot fill"):
        patient_split(np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="stacks of one size"):
        vendor_separability(np.zeros((10, 8, 8)), np.zeros((10, 16, 16)))
