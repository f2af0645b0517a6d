"""Tests of the two-vendor breast-MRI simulator (glassbox.data.mri)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.data.mri import (
    VENDOR_A,
    VENDOR_B,
    VENDOR_B_CONTRAST_ONLY,
    Acquisition,
    AnatomyConfig,
    Contrast,
    acquire,
    patient_split,
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
    # the control vendor shares A's acquisition: its shift is in the image domain
    control = simulate_vendor(40, VENDOR_B_CONTRAST_ONLY, 3, SMALL)
    assert VENDOR_B_CONTRAST_ONLY.acquisition == VENDOR_A.acquisition
    assert VENDOR_B_CONTRAST_ONLY.contrast == VENDOR_B.contrast
    assert vendor_separability(a.images, control.images, features="histogram") > 0.8


# ---------------------------------------------------------------- acquisition physics


def test_clean_acquisition_is_the_identity():
    rng = np.random.default_rng(0)
    signal = rng.uniform(0, 1, (3, 16, 16))
    clean = Acquisition(noise_sigma=0.0, k_keep=1.0, ghost_strength=(0.0, 0.0))
    assert np.allclose(acquire(signal, clean, rng), signal, atol=1e-12)


@pytest.mark.parametrize("period,strength", [(2, 0.3), (4, 0.5)])
def test_periodic_ghosts_follow_the_closed_form(period, strength):
    # scaling every n-th PE line by (1 - s) = image minus (s / n) times the sum of its n shifted copies
    rng = np.random.default_rng(1)
    signal = np.zeros((1, 16, 16))
    signal[0, 2:5, 6:9] = rng.uniform(0.5, 1, (3, 3))
    acq = Acquisition(noise_sigma=0.0, ghost_strength=(strength, strength), ghost_periods=(period,))
    expected = signal[0] - strength / period * sum(np.roll(signal[0], j * 16 // period, axis=0) for j in range(period))
    assert np.allclose(acquire(signal, acq, rng)[0], np.abs(expected), atol=1e-12)


def test_noise_is_rician_with_the_right_background_mean():
    rng = np.random.default_rng(2)
    sigma = 0.05
    out = acquire(np.zeros((40, 32, 32)), Acquisition(noise_sigma=sigma, ghost_strength=(0, 0)), rng)
    assert out.mean() == pytest.approx(sigma * np.sqrt(np.pi / 2), rel=0.02)


def test_matrix_truncation_keeps_only_central_kspace():
    rng = np.random.default_rng(3)
    signal = rng.uniform(0, 1, (1, 32, 32))
    out = acquire(signal, Acquisition(noise_sigma=0.0, k_keep=0.5, ghost_strength=(0, 0)), rng)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(signal[0]), norm="ortho"))
    k[:8], k[24:], k[:, :8], k[:, 24:] = 0, 0, 0, 0
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
    with pytest.raises(ValueError, match="k_keep"):
        Acquisition(k_keep=0.0)
    with pytest.raises(ValueError, match="gamma"):
        Contrast(gamma=0)
    with pytest.raises(ValueError, match="fractions"):
        patient_split(np.arange(10), (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="patients cannot fill"):
        patient_split(np.array([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="stacks of one size"):
        vendor_separability(np.zeros((10, 8, 8)), np.zeros((10, 16, 16)))
