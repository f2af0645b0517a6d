"""Tests of glassbox.data.ct_physics: projector against scikit-image, adjointness, FBP, physics of the noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.transform import iradon, radon

from glassbox.data import ct_physics
from glassbox.data.phantoms import abdominal_phantom


def _central_roi(n: int, radius_mm: float = 75.0) -> np.ndarray:
    offsets = np.arange(n) - n // 2
    return np.hypot(offsets[:, None], offsets[None, :]) * ct_physics.pixel_mm(n) < radius_mm


def _noise_sd(images: np.ndarray, clean: np.ndarray, roi: np.ndarray) -> float:
    """Pooled SD over realisations of (noisy - noiseless) inside the ROI."""
    return float(np.sqrt(np.mean([np.var((image - clean)[roi]) for image in images])))


# --- the projector ------------------------------------------------------------------------------

@settings(max_examples=8, deadline=None)
@given(n=st.sampled_from([16, 17, 24, 33]), n_angles=st.integers(1, 40), seed=st.integers(0, 2**31))
def test_projector_is_an_exact_adjoint_pair(n: int, n_angles: int, seed: int) -> None:
    proj = ct_physics.projector(n, n_angles)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n))
    y = rng.standard_normal(proj.sinogram_shape)
    w = proj.matrix.astype(np.float64)  # exactness of the pair, free of float32 rounding
    lhs = float(np.dot(w @ x.ravel(), y.ravel()))
    rhs = float(np.dot(x.ravel(), w.T @ y.ravel()))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-10)
    # and the float32 operators agree with the matrix
    np.testing.assert_allclose(proj.adjoint(y.astype(np.float32)).ravel(), w.T @ y.ravel(), rtol=1e-4, atol=1e-4)


def test_batched_operators_equal_the_scipy_matrix_products(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ct_physics, "_CHUNK", 2)  # several chunks, one of them partial
    proj = ct_physics.projector(32, 20)
    rng = np.random.default_rng(0)
    images = np.zeros((5, 32, 32), dtype=np.float32)
    images[:, 10:20, 12:18] = rng.random((5, 10, 6))
    sinograms = rng.standard_normal((5, *proj.sinogram_shape)).astype(np.float32)
    w = proj.matrix.astype(np.float64)
    expected = (w @ images.reshape(5, -1).T).T.reshape(5, *proj.sinogram_shape)
    np.testing.assert_allclose(proj.forward(images), expected, rtol=1e-5, atol=1e-5)
    expected = (w.T @ sinograms.reshape(5, -1).T).T.reshape(5, 32, 32)
    np.testing.assert_allclose(proj.adjoint(sinograms), expected, rtol=1e-5, atol=1e-4)


def test_detector_covers_the_whole_square() -> None:
    for n in (16, 64, 127, 128):
        # the corner pixels at 45 degrees sit n/sqrt(2) pixels off centre; each side needs that plus the footprint
        assert ct_physics.n_detectors(n) // 2 >= n / np.sqrt(2) + 1
        # every pixel's total weight (its area, 1 pixel^2) reaches the detector at every angle
        column_sums = np.asarray(ct_physics.projector(n, 7).matrix.sum(axis=0)).ravel()
        np.testing.assert_allclose(column_sums, 7.0, rtol=1e-5)


@pytest.fixture(scope="module")
def phantom128() -> np.ndarray:
    return abdominal_phantom(128, seed=7)


def test_forward_projection_matches_skimage_radon(phantom128: np.ndarray) -> None:
    n, n_angles = 128, 360
    mu = ct_physics.hu_to_mu(phantom128).astype(np.float32)
    ours = ct_physics.forward_project(mu, n_angles)  # (angles, n_det), pixel units
    reference = radon(mu, theta=ct_physics.projector(n, n_angles).angles_deg, circle=True)  # (n, angles)
    start = ct_physics.n_detectors(n) // 2 - n // 2  # both use the rotation centre n // 2 and bin n_det // 2
    ours_cropped = ours[:, start:start + n].T
    assert np.abs(ours).sum() == pytest.approx(np.abs(ours_cropped).sum(), rel=1e-6)  # nothing outside the crop
    relative_error = np.linalg.norm(ours_cropped - reference) / np.linalg.norm(reference)
    assert relative_error < 0.01


def test_fbp_rmse_matches_skimage_iradon(phantom128: np.ndarray) -> None:
    n, n_angles = 128, 360
    theta = ct_physics.projector(n, n_angles).angles_deg
    ours = ct_physics.reconstruct(phantom128, n_angles)
    size = ct_physics.pixel_mm(n)
    mu = ct_physics.hu_to_mu(phantom128) * size
    skimage_hu = ct_physics.mu_to_hu(iradon(radon(mu, theta=theta, circle=True), theta=theta, filter_name="ramp") / size)
    truth = np.maximum(phantom128, -1000)
    rmse_ours = np.sqrt(np.mean((ours - truth) ** 2))
    rmse_skimage = np.sqrt(np.mean((skimage_hu - truth) ** 2))
    assert abs(rmse_ours - rmse_skimage) < 2.0, (rmse_ours, rmse_skimage)


def test_fbp_inverts_forward_projection_on_a_smooth_image() -> None:
    n = 64
    offsets = (np.arange(n) - n // 2) / n
    blob = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 0.12**2)).astype(np.float32)
    proj = ct_physics.projector(n, 180)
    recon = proj.fbp(proj.forward(blob))
    assert np.abs(recon - blob).max() < 0.02 * blob.max()
    # batched = one by one
    batch = np.stack([blob, 2 * blob.T])
    np.testing.assert_allclose(proj.fbp(proj.forward(batch))[1], proj.fbp(proj.forward(2 * blob.T)), atol=1e-5)


def test_water_cylinder_line_integral_and_reconstruction() -> None:
    for n in (64, 128):
        n_angles = ct_physics.default_n_angles(n)
        water = ct_physics.water_cylinder(n)
        assert water[n // 2, n // 2] == 0.0 and water[0, 0] == -1000.0
        p = ct_physics.sinogram(water, n_angles)
        centre_ray = p[:, ct_physics.n_detectors(n) // 2]  # through the centre at every angle: mu_water * diameter
        np.testing.assert_allclose(centre_ray, ct_physics.MU_WATER_PER_MM * ct_physics.WATER_CYLINDER_DIAMETER_MM, rtol=0.01)
        clean = ct_physics.reconstruct(water, n_angles)
        roi = _central_roi(n)
        assert abs(clean[roi].mean()) < 5.0
        assert clean[roi].std() < 2.0  # uniform stays uniform: no moire from the projector


# --- HU and attenuation ------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.floats(-1000.0, 3071.0))
def test_hu_mu_round_trip(hu: float) -> None:
    assert ct_physics.mu_to_hu(ct_physics.hu_to_mu(hu)) == pytest.approx(hu, abs=1e-9)


def test_hu_to_mu_reference_values_and_clamp() -> None:
    assert ct_physics.hu_to_mu(0.0) == pytest.approx(ct_physics.MU_WATER_PER_MM)
    assert ct_physics.hu_to_mu(-1000.0) == 0.0
    assert ct_physics.hu_to_mu(-2000.0) == 0.0  # padding outside the scan field clamps to air
    assert ct_physics.hu_to_mu(1000.0) == pytest.approx(2 * ct_physics.MU_WATER_PER_MM)
    tensor = ct_physics.hu_to_mu(torch.tensor([-3000.0, 0.0, 500.0]))
    np.testing.assert_allclose(tensor.numpy(), ct_physics.hu_to_mu(np.array([-3000.0, 0.0, 500.0])), rtol=1e-6)


# --- noise ------------------------------------------------------------------------------------------------

def test_quarter_dose_doubles_the_noise_sd() -> None:
    n = 64
    water, roi = ct_physics.water_cylinder(n), _central_roi(n, 100.0)
    clean = ct_physics.reconstruct(water)
    stack = np.stack([water] * 12)
    full = _noise_sd(ct_physics.simulate_batch(stack, 1.0, seed=1), clean, roi)
    quarter = _noise_sd(ct_physics.simulate_batch(stack, 0.25, seed=2), clean, roi)
    assert quarter / full == pytest.approx(2.0, abs=0.2)
    # the documented full-dose level: clinically plausible, 10-15 HU in water
    assert 9.0 < full < 15.0


def test_equal_noise_rule_across_grids() -> None:
    sds = []
    for n in (64, 128):
        water, roi = ct_physics.water_cylinder(n), _central_roi(n, 100.0)
        sds.append(_noise_sd(ct_physics.simulate_batch(np.stack([water] * 6), 1.0, seed=3), ct_physics.reconstruct(water), roi))
    assert sds[1] == pytest.approx(sds[0], rel=0.15)


def test_paired_low_dose_is_full_dose_plus_independent_noise() -> None:
    n = 64
    water, roi = ct_physics.water_cylinder(n), _central_roi(n, 100.0)
    clean = ct_physics.reconstruct(water)
    low, full = ct_physics.simulate_paired(np.stack([water] * 12), 0.25, seed=5)
    full_noise, extra = (full - clean)[:, roi], (low - full)[:, roi]
    # binomial thinning: the extra noise is uncorrelated with the full-dose noise ...
    assert abs(np.corrcoef(full_noise.ravel(), extra.ravel())[0, 1]) < 0.1
    # ... so the low-dose variance is the sum, 4x the full-dose one at a quarter dose
    assert _noise_sd(low, clean, roi) / _noise_sd(full, clean, roi) == pytest.approx(2.0, abs=0.2)
    assert np.std(extra) / np.std(full_noise) == pytest.approx(np.sqrt(3.0), rel=0.1)


def test_electronic_noise_adds_variance() -> None:
    n = 64
    water, roi = ct_physics.water_cylinder(n), _central_roi(n, 100.0)
    clean, stack = ct_physics.reconstruct(water), np.stack([water] * 4)
    i0 = 2e4  # few counts behind the water, so 30 counts of electronic noise matter
    quiet = _noise_sd(ct_physics.simulate_batch(stack, 1.0, seed=4, i0=i0), clean, roi)
    noisy = _noise_sd(ct_physics.simulate_batch(stack, 1.0, seed=4, i0=i0, sigma_e=30.0), clean, roi)
    assert noisy > 1.1 * quiet


def test_same_seed_same_output_different_seed_different(monkeypatch: pytest.MonkeyPatch) -> None:
    phantom = abdominal_phantom(32, seed=1)
    first = ct_physics.simulate_slice(phantom, 0.25, seed=11)
    np.testing.assert_array_equal(first, ct_physics.simulate_slice(phantom, 0.25, seed=11))
    assert not np.array_equal(first, ct_physics.simulate_slice(phantom, 0.25, seed=12))
    np.testing.assert_array_equal(first, ct_physics.simulate_batch(phantom[None], 0.25, seed=11)[0])
    generated = ct_physics.simulate_slice(phantom, 0.25, seed=np.random.default_rng(3))
    np.testing.assert_array_equal(generated, ct_physics.simulate_slice(phantom, 0.25, seed=np.random.default_rng(3)))
    # the noise realisation does not depend on how the batch is chunked: the sparse kernel's float32
    # rounding follows the chunk width, which can flip a rare Poisson draw by a count (~0.02 HU), but
    # nothing near the noise level (SD ~ 20 HU) may change
    batch = np.stack([phantom, phantom.T, phantom[::-1]])
    reference = ct_physics.simulate_batch(batch, 0.5, seed=9, sigma_e=2.0)
    low_ref, full_ref = ct_physics.simulate_paired(batch, 0.5, seed=9)
    monkeypatch.setattr(ct_physics, "_CHUNK", 2)
    np.testing.assert_allclose(reference, ct_physics.simulate_batch(batch, 0.5, seed=9, sigma_e=2.0), atol=0.5)
    low, full = ct_physics.simulate_paired(batch, 0.5, seed=9)
    np.testing.assert_allclose(low_ref, low, atol=0.5)
    np.testing.assert_allclose(full_ref, full, atol=0.5)


def test_full_dose_is_closer_to_the_truth_than_low_dose() -> None:
    phantom = abdominal_phantom(64, seed=2)
    clean = ct_physics.reconstruct(phantom)
    errors = [np.std(ct_physics.simulate_slice(phantom, dose, seed=0) - clean) for dose in (1.0, 0.25, 0.05)]
    assert errors[0] < errors[1] < errors[2]


# --- torch --------------------------------------------------------------------------------------------------

def test_torch_projector_matches_scipy_and_has_the_adjoint_gradient() -> None:
    proj = ct_physics.projector(32, 30)
    tp = proj.to_torch("cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 32)).astype(np.float32)
    y = rng.standard_normal((2, *proj.sinogram_shape)).astype(np.float32)
    np.testing.assert_allclose(tp.forward(torch.from_numpy(x)).numpy(), proj.forward(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tp.adjoint(torch.from_numpy(y)).numpy(), proj.adjoint(y), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tp.fbp(torch.from_numpy(y)).numpy(), proj.fbp(y), rtol=1e-4, atol=1e-4)
    xt = torch.from_numpy(x).requires_grad_(True)
    (tp.forward(xt) * torch.from_numpy(y)).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), proj.adjoint(y), rtol=1e-4, atol=1e-4)


# --- errors ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: ct_physics.simulate_slice(np.zeros((32, 31))), "square"),
    (lambda: ct_physics.simulate_slice(np.zeros(32)), r"\(n, n\)"),
    (lambda: ct_physics.simulate_slice(np.zeros((2, 32, 32))), r"\(n, n\)"),
    (lambda: ct_physics.simulate_batch(np.zeros((32, 32))), r"\(B, n, n\)"),
    (lambda: ct_physics.simulate_slice(np.zeros((8, 8))), "at least 16"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), dose=0.0), r"dose must be in \(0, 1\]"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), dose=1.5), r"dose must be in \(0, 1\]"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), dose=float("nan")), "dose must be a number"),
    (lambda: ct_physics.simulate_slice(np.full((32, 32), np.nan)), "NaN"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), n_angles=0), "n_angles"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), i0=-5.0), "i0"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), sigma_e=-1.0), "sigma_e"),
    (lambda: ct_physics.simulate_slice(np.zeros((32, 32)), seed=-1), "seed"),
    (lambda: ct_physics.projector(8), ">= 16"),
    (lambda: ct_physics.projector(32, 0), "n_angles"),
    (lambda: ct_physics.water_cylinder(32, diameter_mm=500.0), "field of view"),
    (lambda: ct_physics.projector(32, 10).forward(np.zeros((31, 31))), "shape"),
])
def test_bad_input_raises_a_clear_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_noise_follows_inverse_square_root_of_dose():
    """Photon statistics: SD ~ dose**-0.5, so the log-log slope is -0.5 and quarter dose doubles the SD."""
    result = ct_physics.noise_vs_dose(64, [1.0, 0.5, 0.25, 0.125], seeds=range(3))
    mean_sd = result["sd"].mean(axis=1)
    slope = np.polyfit(np.log(result["dose"]), np.log(mean_sd), 1)[0]
    assert abs(slope + 0.5) < 0.05
    assert 1.8 <= mean_sd[2] / mean_sd[0] <= 2.2


def test_noise_vs_dose_rejects_empty_input():
    with pytest.raises(ValueError, match="at least one dose"):
        ct_physics.noise_vs_dose(64, [], seeds=[0])
