"""Tests of glassbox.data.phantoms: plausible HU per tissue, determinism, geometry, continuity along z."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.data import phantoms
from glassbox.data.phantoms import TISSUE_LABELS

# (low, high) bounds of the median HU of each tissue in a non-contrast phantom (research notes / the issue)
PLAUSIBLE_MEDIAN_HU = {
    "air": (-1000, -1000), "fat": (-120, -80), "muscle": (40, 60), "liver": (50, 70), "spleen": (40, 60),
    "kidney": (15, 40), "blood": (30, 50), "bone": (300, 1200), "bowel_gas": (-1000, -900), "csf": (0, 30),
}


@pytest.fixture(scope="module")
def volumes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [phantoms.patient_volume(128, seed, 6, with_labels=True) for seed in (0, 1, 2)]


def test_tissue_hu_values_are_plausible(volumes) -> None:
    hu = np.concatenate([v[0] for v in volumes])
    labels = np.concatenate([v[1] for v in volumes])
    assert hu.min() >= -1000.0 and hu.max() <= 1500.0
    for tissue, (low, high) in PLAUSIBLE_MEDIAN_HU.items():
        values = hu[labels == TISSUE_LABELS[tissue]]
        assert values.size > 0, f"no {tissue} in three patients"
        assert low <= np.median(values) <= high, (tissue, np.median(values))
    assert np.percentile(hu[labels == TISSUE_LABELS["bone"]], 99) > 700  # cortical bone


def test_lesions_are_low_contrast_relative_to_the_liver() -> None:
    seen = set()
    for seed in range(4):
        hu, labels = phantoms.patient_volume(128, seed, 8, with_labels=True)
        for k in range(hu.shape[0]):
            liver = hu[k][labels[k] == TISSUE_LABELS["liver"]]
            for kind, sign in (("lesion_hypo", -1), ("lesion_hyper", 1)):
                lesion = hu[k][labels[k] == TISSUE_LABELS[kind]]
                if lesion.size >= 5 and liver.size:
                    contrast = np.median(lesion) - np.median(liver)
                    assert 6.0 <= sign * contrast <= 34.0, (seed, k, kind, contrast)
                    seen.add(kind)
    assert seen == {"lesion_hypo", "lesion_hyper"}


def test_contrast_enhancement_brightens_blood() -> None:
    plain, labels = phantoms.abdominal_phantom_with_labels(128, 4, 2, 4)
    enhanced, labels_enhanced = phantoms.abdominal_phantom_with_labels(128, 4, 2, 4, contrast=True)
    blood = TISSUE_LABELS["blood"]
    assert 130 <= np.median(enhanced[labels_enhanced == blood]) <= 180
    assert np.median(enhanced[labels_enhanced == blood]) > np.median(plain[labels == blood]) + 80


def test_deterministic_per_seed_and_different_across_seeds() -> None:
    first = phantoms.abdominal_phantom(64, seed=5, slice_index=1, n_slices=3)
    assert first.dtype == np.float32 and first.shape == (64, 64)
    np.testing.assert_array_equal(first, phantoms.abdominal_phantom(64, seed=5, slice_index=1, n_slices=3))
    assert not np.array_equal(first, phantoms.abdominal_phantom(64, seed=6, slice_index=1, n_slices=3))
    volume = phantoms.patient_volume(64, 5, 3)
    np.testing.assert_array_equal(volume[1], first)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), z=st.integers(0, 3))
def test_body_fits_in_the_inscribed_circle_and_air_is_air(seed: int, z: int) -> None:
    n = 64
    hu = phantoms.abdominal_phantom(n, seed, z, 4)
    offsets = np.arange(n) - n // 2
    radius = np.hypot(offsets[:, None], offsets[None, :])
    assert np.all(hu[radius > n // 2 - 1] == -1000.0)  # nothing outside the scanner's circle
    body = hu > -500
    assert 0.25 < body.mean() < 0.75  # an abdomen, not a dot and not the whole field


def test_same_patient_at_every_resolution() -> None:
    coarse = phantoms.abdominal_phantom_with_labels(64, 9, 1, 3)[1]
    fine = phantoms.abdominal_phantom_with_labels(256, 9, 1, 3)[1]
    for tissue in ("fat", "muscle", "liver", "bone", "air"):
        fraction_coarse = np.mean(coarse == TISSUE_LABELS[tissue])
        fraction_fine = np.mean(fine == TISSUE_LABELS[tissue])
        assert fraction_coarse == pytest.approx(fraction_fine, abs=0.01), tissue


def test_anatomy_varies_smoothly_along_z() -> None:
    volume = phantoms.patient_volume(64, 3, 12)
    other = phantoms.patient_volume(64, 4, 12)
    body = (volume > -500) | (other > -500)
    neighbours = np.mean([np.mean(np.abs(volume[k + 1] - volume[k])[body[k]]) for k in range(11)])
    patients = np.mean([np.mean(np.abs(other[k] - volume[k])[body[k]]) for k in range(12)])
    assert neighbours < patients / 2
    # and the anatomy does change: top and bottom slices differ more than neighbours
    assert np.mean(np.abs(volume[-1] - volume[0])[body[0]]) > 2 * neighbours


def test_upper_slices_have_more_liver_lower_slices_have_kidneys() -> None:
    hu, labels = phantoms.patient_volume(64, 8, 6, with_labels=True)
    liver = [(s == TISSUE_LABELS["liver"]).sum() for s in labels]
    kidney = [(s == TISSUE_LABELS["kidney"]).sum() for s in labels]
    assert liver[0] > liver[-1]
    assert kidney[-2] > kidney[0]


def test_pixel_size_and_slice_positions() -> None:
    for n in (64, 128, 256, 512):
        assert phantoms.pixel_mm(n) * n == pytest.approx(phantoms.FOV_MM)
    positions = [phantoms.slice_position(k, 5) for k in range(5)]
    assert positions == sorted(positions) and 0 < positions[0] and positions[-1] < 1
    assert phantoms.slice_position(0, 1) == 0.5


@pytest.mark.parametrize("call, match", [
    (lambda: phantoms.abdominal_phantom(8, 0), ">= 16"),
    (lambda: phantoms.abdominal_phantom(64.0, 0), "integer"),
    (lambda: phantoms.abdominal_phantom(64, -1), "seed"),
    (lambda: phantoms.abdominal_phantom(64, 0, slice_index=3, n_slices=3), "slice_index"),
    (lambda: phantoms.patient_volume(64, 0, 0), "n_slices"),
])
def test_bad_input_raises_a_clear_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
