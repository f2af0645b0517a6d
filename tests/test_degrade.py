"""glassbox.data.degrade: identities, statistics of each degradation, MSE matching, errors."""
import numpy as np
import pytest
from skimage import data as skdata
from skimage.transform import resize

from glassbox.data import degrade as gd


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return resize(skdata.camera().astype(np.float64) / 255.0, (96, 96), anti_aliasing=True)


def test_zero_strength_is_the_identity(image):
    assert np.array_equal(gd.degrade(image, gd.Degradation()), image)
    for kind in gd.KINDS:
        assert np.array_equal(gd.degrade(image, gd.single(kind, 0.0)), image)


def test_noise_statistics_and_seeds():
    flat = np.zeros((256, 256))
    noisy = gd.add_noise(flat, 0.2, seed=0)
    assert noisy.std() == pytest.approx(0.2, rel=0.02) and abs(noisy.mean()) < 0.005
    assert np.array_equal(noisy, gd.add_noise(flat, 0.2, seed=0))
    assert not np.array_equal(noisy, gd.add_noise(flat, 0.2, seed=1))


def test_blur_keeps_constants_and_shrinks_white_noise_variance_by_the_kernel_energy():
    assert np.allclose(gd.blur(np.full((32, 32), 3.0), 2.0), 3.0)
    white = np.random.default_rng(0).standard_normal((256, 256))
    sigma = 2.0
    ratio = gd.blur(white, sigma).var() / white.var()
    assert ratio == pytest.approx(1 / (4 * np.pi * sigma**2), rel=0.1)   # sum of squared Gaussian weights


def test_shift_is_a_translation(image):
    moved = gd.shift(image, 3, 2)
    np.testing.assert_allclose(moved[10:-10, 10:-10], np.roll(image, (2, 3), axis=(0, 1))[10:-10, 10:-10], atol=1e-9)
    smooth = gd.blur(image, 2.0)                                            # band-limited: splines interpolate well
    back = gd.shift(gd.shift(smooth, 0.5), -0.5)
    assert np.abs(back - smooth)[8:-8, 8:-8].max() < 0.01                # sub-pixel round trip


def test_contrast_keeps_the_mean_and_scales_the_spread(image):
    changed = gd.contrast(image, 0.5)
    assert changed.mean() == pytest.approx(image.mean())
    assert changed.std() == pytest.approx(0.5 * image.std())
    np.testing.assert_allclose(gd.contrast(image, 1.0, 0.1), image + 0.1)


def test_degrade_composes_in_the_documented_order(image):
    d = gd.Degradation(noise=0.05, blur=1.0, shift=1.5, gain=0.8, offset=0.02)
    manual = gd.add_noise(gd.shift(gd.blur(gd.contrast(image, 0.8, 0.02), 1.0), 1.5), 0.05, seed=3)
    np.testing.assert_array_equal(gd.degrade(image, d, seed=3), manual)


@pytest.mark.parametrize("kind", gd.KINDS)
def test_match_mse_reaches_the_target(image, kind):
    target = 2e-3
    chosen, degraded = gd.match_mse(image, kind, target, seed=1)
    assert np.mean((degraded - image) ** 2) == pytest.approx(target, rel=0.02)
    assert chosen != gd.Degradation()


def test_match_mse_reports_unreachable_targets(image):
    with pytest.raises(gd.DegradationError, match="cannot reach"):
        gd.match_mse(image, "contrast", 10.0)


@pytest.mark.parametrize("call", [
    lambda im: gd.add_noise(im, -1.0, 0),
    lambda im: gd.blur(im, float("nan")),
    lambda im: gd.blur(im[None], 1.0),
    lambda im: gd.blur(im * np.nan, 1.0),
    lambda im: gd.contrast(im, True),
    lambda im: gd.shift(im, "1"),
    lambda im: gd.single("rotate", 1.0),
    lambda im: gd.match_mse(im, "rotate", 1e-3),
])
def test_bad_inputs_raise(image, call):
    with pytest.raises(ValueError):
        call(image)


def test_impulse_noise_keeps_the_median_and_moves_the_mean(image):
    rng = np.random.default_rng(0)
    draws = np.stack([gd.impulse(image, 0.3, 2.0, rng) for _ in range(400)])
    hit = draws == 2.0
    assert hit.mean() == pytest.approx(0.3, abs=0.01)
    np.testing.assert_allclose(np.median(draws, axis=0), image)
    # the mean of 400 draws per pixel, in units of its binomial standard error: |z| < 5.5 at every one of the
    # 9216 pixels fails by chance with probability below 1e-3 (a fixed atol would be ~2 standard errors here)
    expected = image + 0.3 * (2.0 - image)
    standard_error = np.sqrt(0.3 * 0.7 / len(draws)) * (2.0 - image)
    assert np.abs((draws.mean(0) - expected) / standard_error).max() < 5.5
    assert np.array_equal(gd.impulse(image, 0.0, 2.0, 1), image)
    with pytest.raises(gd.DegradationError, match="fraction"):
        gd.impulse(image, 1.5, 2.0, 0)
