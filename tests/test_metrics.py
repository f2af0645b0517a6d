"""glassbox.measure.image_metrics against scikit-image / scikit-learn, closed forms, and clear errors."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage import data as skdata
from skimage import metrics as skm
from skimage.transform import resize
from sklearn.metrics import f1_score, mean_absolute_error

from glassbox.measure import image_metrics as gm

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False, width=64)
image_pairs = st.tuples(st.integers(8, 24), st.integers(8, 24)).flatmap(
    lambda shape: st.tuples(arrays(np.float64, shape, elements=finite), arrays(np.float64, shape, elements=finite)))


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    """A natural image in [0, 1], 64x64 (bundled with scikit-image, no download)."""
    return resize(skdata.camera().astype(np.float64) / 255.0, (64, 64), anti_aliasing=True)


@settings(max_examples=40, deadline=None)
@given(image_pairs)
def test_mse_mae_match_references(pair):
    x, ref = pair
    assert gm.mse(x, ref) == pytest.approx(skm.mean_squared_error(ref, x), rel=1e-12, abs=1e-12)
    assert gm.mae(x, ref) == pytest.approx(mean_absolute_error(ref.ravel(), x.ravel()), rel=1e-12, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(image_pairs)
def test_nmse_is_squared_skimage_nrmse_in_both_normalisations(pair):
    x, ref = pair
    if np.sum(ref**2) > 1e-6:
        assert gm.nmse(x, ref, "energy") == pytest.approx(skm.normalized_root_mse(ref, x) ** 2, rel=1e-9, abs=1e-12)
    if np.ptp(ref) > 1e-3:
        expected = skm.normalized_root_mse(ref, x, normalization="min-max") ** 2
        assert gm.nmse(x, ref, "range") == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_nmse_closed_forms():
    ref = np.arange(1.0, 17.0).reshape(4, 4)
    assert gm.nmse(np.zeros_like(ref), ref, "energy") == pytest.approx(1.0)        # predicting 0: all energy lost
    assert gm.nmse(2 * ref, ref, "energy") == pytest.approx(1.0)                   # error equals the reference
    assert gm.nmse(ref + 1.5, ref, "range") == pytest.approx(1.5**2 / 15.0**2)     # offset / range, squared
    assert gm.nmse(3 * ref, 3 * ref + 0.3, "energy") != gm.nmse(3 * ref + 0.3, 3 * ref, "energy")  # asymmetric


@settings(max_examples=40, deadline=None)
@given(image_pairs, st.floats(0.5, 500.0))
def test_psnr_matches_skimage(pair, data_range):
    x, ref = pair
    if np.array_equal(x, ref):
        assert gm.psnr(x, ref, data_range) == math.inf
    else:
        assert gm.psnr(x, ref, data_range) == pytest.approx(
            skm.peak_signal_noise_ratio(ref, x, data_range=data_range), rel=1e-9)


def test_psnr_physics_doubling_the_error_costs_6_db(camera):
    noise = np.random.default_rng(0).standard_normal(camera.shape) * 0.05
    drop = gm.psnr(camera + noise, camera, 1.0) - gm.psnr(camera + 2 * noise, camera, 1.0)
    assert drop == pytest.approx(20 * math.log10(2), rel=1e-9)
    assert gm.psnr(camera, camera, 1.0) == math.inf


@pytest.mark.parametrize("win_size", [3, 7, 11])
def test_ssim_uniform_matches_skimage(camera, win_size):
    noisy = camera + 0.1 * np.random.default_rng(1).standard_normal(camera.shape)
    ours = gm.ssim(noisy, camera, 1.0, win_size=win_size)
    assert ours == pytest.approx(skm.structural_similarity(camera, noisy, data_range=1.0, win_size=win_size), abs=1e-12)


def test_ssim_gaussian_matches_wang_et_al_settings_in_skimage(camera):
    blurred = np.clip(camera + 0.05, 0, 1)
    expected = skm.structural_similarity(camera, blurred, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False)
    assert gm.ssim(blurred, camera, 1.0, window="gaussian") == pytest.approx(expected, abs=1e-12)


def test_ssim_map_is_skimage_full_map_without_its_border(camera):
    other = camera[::-1].copy()
    _, full = skm.structural_similarity(camera, other, data_range=1.0, full=True)
    ours = gm.ssim_map(other, camera, 1.0)
    assert ours.shape == (58, 58)
    np.testing.assert_allclose(ours, full[3:-3, 3:-3], atol=1e-12)


def test_ssim_of_a_stack_is_skimage_channel_average(camera):
    rng = np.random.default_rng(2)
    stack = np.stack([camera, camera.T, camera[::-1]])
    noisy = stack + 0.05 * rng.standard_normal(stack.shape)
    expected = skm.structural_similarity(stack, noisy, data_range=1.0, channel_axis=0)
    assert gm.ssim(noisy, stack, 1.0) == pytest.approx(expected, abs=1e-12)


def test_ssim_properties(camera):
    shifted = np.roll(camera, 3, axis=1)
    assert gm.ssim(camera, camera, 1.0) == pytest.approx(1.0)
    assert gm.ssim(shifted, camera, 1.0) == pytest.approx(gm.ssim(camera, shifted, 1.0))   # symmetric
    assert gm.ssim(shifted, camera, 1.0) < 1.0
    assert gm.ssim(1 - camera, camera, 1.0) < 0       # inverted contrast: negative local correlation


def test_torch_inputs_give_the_numpy_values(camera):
    other = np.sqrt(camera)
    tx, tref = torch.from_numpy(other).float(), torch.from_numpy(camera).float()
    for name, fn in [("mae", gm.mae), ("mse", gm.mse), ("nmse", gm.nmse)]:
        assert fn(tx, tref) == pytest.approx(fn(other.astype(np.float32), camera.astype(np.float32)), rel=1e-12), name
    assert gm.psnr(tx, tref, 1.0) == pytest.approx(gm.psnr(other.astype(np.float32), camera.astype(np.float32), 1.0))
    assert gm.ssim(tx.requires_grad_(True), tref, 1.0) == pytest.approx(
        skm.structural_similarity(camera.astype(np.float32), other.astype(np.float32), data_range=1.0), abs=1e-6)


def test_restoration_metrics_bundle(camera):
    table = gm.restoration_metrics(camera * 0.9, camera, 1.0)
    assert set(table) == {"MAE", "MSE", "NMSE (energy)", "NMSE (range)", "PSNR [dB]", "SSIM"}
    assert table["MSE"] == pytest.approx(gm.mse(camera * 0.9, camera))


@pytest.mark.parametrize("call", [
    lambda a, b: gm.mse(a, b[:-1]),
    lambda a, b: gm.psnr(a, b, None),
    lambda a, b: gm.psnr(a, b, -1.0),
    lambda a, b: gm.psnr(a, b, True),
    lambda a, b: gm.ssim(a, b, None),
    lambda a, b: gm.ssim(a, b, 1.0, win_size=4),
    lambda a, b: gm.ssim(a[:5, :5], b[:5, :5], 1.0),
    lambda a, b: gm.ssim(a[0], b[0], 1.0),
    lambda a, b: gm.ssim(a, b, 1.0, window="box"),
    lambda a, b: gm.ssim(a, b, 1.0, window="gaussian", win_size=7),
    lambda a, b: gm.mae(a.tolist(), b),
    lambda a, b: gm.mae(a * np.nan, b),
    lambda a, b: gm.mae(a + 1j, b),
    lambda a, b: gm.nmse(a, np.zeros_like(b)),
    lambda a, b: gm.nmse(a, np.ones_like(b), "range"),
    lambda a, b: gm.nmse(a, b, "l2"),
])
def test_bad_inputs_raise_clear_errors(call):
    a, b = np.ones((16, 16)), np.full((16, 16), 0.5)
    with pytest.raises(ValueError):
        call(a, b)


def test_error_messages_name_the_problem():
    with pytest.raises(gm.MetricInputError, match="same shape.*\\(4, 4\\).*\\(4, 5\\)"):
        gm.mse(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(gm.MetricInputError, match="data_range is required"):
        gm.psnr(np.zeros((4, 4)), np.ones((4, 4)), None)


@settings(max_examples=40, deadline=None)
@given(arrays(np.bool_, (6, 7)), arrays(np.bool_, (6, 7)))
def test_dice_is_binary_f1(a, b):
    if not a.any() and not b.any():
        assert gm.dice_score(a, b) == 1.0
        assert math.isnan(gm.dice_score(a, b, empty=float("nan")))
    else:
        assert gm.dice_score(a, b) == pytest.approx(f1_score(b.ravel(), a.ravel()))


def test_dice_closed_forms_and_per_class():
    a = np.zeros((10, 10), bool)
    a[:4] = True                        # 40 pixels
    b = np.zeros((10, 10), bool)
    b[:2] = True                        # 20 pixels, inside a
    assert gm.dice_score(a, a) == 1.0
    assert gm.dice_score(a, ~a) == 0.0
    assert gm.dice_score(b, a) == pytest.approx(2 * 20 / 60)
    labels = np.random.default_rng(3).integers(0, 3, (12, 12))
    pred = np.where(np.random.default_rng(4).random((12, 12)) < 0.3, 0, labels)
    expected = f1_score(labels.ravel(), pred.ravel(), average=None, labels=[0, 1, 2])
    np.testing.assert_allclose(gm.dice_per_class(torch.from_numpy(pred), labels, 3), expected)
    with pytest.raises(gm.MetricInputError, match="binary"):
        gm.dice_score(labels, labels)
    with pytest.raises(gm.MetricInputError, match="integer labels"):
        gm.dice_per_class(labels, labels, 2)


def test_boundary_accuracy():
    ref = np.zeros((20, 20), int)
    ref[5:15, 5:15] = 1
    band = gm.boundary_band(ref, width=1)
    assert band.sum() == 36 + 40   # the square's own 36-pixel rim plus the 40 outside pixels 4-adjacent to it
    assert gm.boundary_accuracy(ref, ref) == 1.0
    all_background = gm.boundary_accuracy(np.zeros_like(ref), ref, width=1)
    inside = band & (ref == 1)
    assert all_background == pytest.approx(1 - inside.sum() / band.sum())
    assert math.isnan(gm.boundary_accuracy(np.zeros_like(ref), np.zeros_like(ref)))
    assert gm.boundary_band(ref, 2).sum() > band.sum()


def test_calibration_error_is_zero_for_the_target_itself_and_known_for_a_constant_guess():
    probs = torch.softmax(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    assert gm.calibration_error(probs, probs) == pytest.approx(0.0, abs=1e-12)
    # always 0.95 confident in class 0, right on 60 % of the pixels: |0.6 - 0.95| = 0.35
    confident = torch.tensor([0.95, 0.03, 0.02])[None, :, None].expand(1, 3, 10).clone()
    labels = torch.tensor([[0] * 6 + [1] * 4])
    assert gm.calibration_error(confident, labels) == pytest.approx(0.35)
    bins = gm.reliability_bins(confident, labels, n_bins=10)
    assert bins["count"].sum() == 10 and bins["count"][9] == 10
    assert bins["outcome"][9] == pytest.approx(0.6) and np.isnan(bins["confidence"][0])


def test_calibration_error_takes_soft_targets_and_rejects_non_distributions():
    probs = torch.tensor([0.7, 0.3])[None, :, None]
    assert gm.calibration_error(probs, torch.tensor([0.5, 0.5])[None, :, None]) == pytest.approx(0.2)
    with pytest.raises(gm.MetricInputError, match="sum to 1"):
        gm.calibration_error(probs, torch.tensor([0.5, 0.6])[None, :, None])
    with pytest.raises(gm.MetricInputError, match="labels"):
        gm.calibration_error(probs, torch.tensor([[2]]))


def test_calibration_error_on_a_mask_of_pixels():
    probs = torch.tensor([[0.9, 0.6], [0.1, 0.4]])[None]                # (1, 2 classes, 2 pixels)
    target = torch.tensor([[1.0, 0.5], [0.0, 0.5]])[None]
    assert gm.calibration_error(probs, target, mask=torch.tensor([[True, False]])) == pytest.approx(0.1)
    assert gm.calibration_error(probs, target, mask=torch.tensor([[False, True]])) == pytest.approx(0.1)
    with pytest.raises(gm.MetricInputError, match="no pixel"):
        gm.calibration_error(probs, target, mask=torch.tensor([[False, False]]))
