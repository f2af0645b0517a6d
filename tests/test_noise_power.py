"""Noise power spectrum: Parseval, white noise is flat at sigma^2 dx^2, blur lowers the mean frequency, the
difference of two scans removes the anatomy, regions stay inside the body."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from glassbox.measure import noise_power as nps


def test_nps_integrates_to_the_variance_and_white_noise_is_flat():
    rng = np.random.default_rng(0)
    sigma, dx, r = 20.0, 0.8, 32
    rois = sigma * rng.standard_normal((400, r, r))
    spectrum = nps.nps_2d(rois, dx)
    # Parseval, region by region (the mean is removed: ddof-free variance of the centred region)
    assert np.allclose(nps.noise_sd(spectrum, dx), rois.std(axis=(1, 2)), rtol=1e-10)
    # white noise: every non-zero frequency holds sigma^2 dx^2 on average (400 regions: a few per cent)
    mean = spectrum.mean(0)
    mean[r // 2, r // 2] = np.nan
    assert np.nanmean(mean) == pytest.approx(sigma**2 * dx**2, rel=0.02)
    assert np.nanstd(mean) / np.nanmean(mean) < 0.1
    # its mean radial frequency is that of the uniform weight over the non-DC bins
    _, radial = nps.frequencies(r, dx)
    expected = radial.sum() / (radial.size - 1)
    assert float(nps.mean_frequency(spectrum.mean(0), dx)) == pytest.approx(expected, rel=0.02)


def test_blurred_noise_has_lower_mean_frequency_and_the_radial_profile_falls():
    rng = np.random.default_rng(1)
    white = rng.standard_normal((200, 32, 32))
    blurred = ndimage.gaussian_filter(white, sigma=(0, 1.5, 1.5), mode="wrap")
    f_white = nps.mean_frequency(nps.nps_2d(white, 1.0), 1.0)
    f_blur = nps.mean_frequency(nps.nps_2d(blurred, 1.0), 1.0)
    assert f_blur.mean() < 0.6 * f_white.mean()
    centres, profile = nps.radial_profile(nps.nps_2d(blurred, 1.0).mean(0), 1.0)
    assert centres[0] > 0 and centres[-1] < 0.5 and profile.shape == (16,)
    assert profile[1] > 10 * profile[-1]


def test_difference_of_two_scans_removes_the_anatomy():
    rng = np.random.default_rng(2)
    anatomy = 300.0 * ndimage.gaussian_filter(rng.standard_normal((4, 64, 64)), 4)
    a = anatomy + 10.0 * rng.standard_normal(anatomy.shape)
    b = anatomy + 10.0 * rng.standard_normal(anatomy.shape)
    noise = nps.difference_noise(a, b)
    assert noise.std() == pytest.approx(10.0, rel=0.03)
    with pytest.raises(nps.NoisePowerError, match="same shape"):
        nps.difference_noise(a, b[:2])


def test_body_rois_stay_inside_the_body():
    reference = np.full((2, 48, 48), -1000.0)
    reference[0, 8:40, 8:40] = 40.0          # a 32 x 32 body in slice 0, none in slice 1
    corners = nps.body_rois(reference, 16, stride=8, margin=2)
    assert corners and all(s == 0 for s, _, _ in corners)
    for _, r, c in corners:
        assert (reference[0, r - 2:r + 18, c - 2:c + 18] > -500).all()
    assert nps.cut_rois(reference, corners, 16).shape == (len(corners), 16, 16)
    with pytest.raises(nps.NoisePowerError, match="no regions"):
        nps.cut_rois(reference, [], 16)
    with pytest.raises(nps.NoisePowerError, match="square"):
        nps.nps_2d(np.zeros((3, 8, 6)), 1.0)
    with pytest.raises(nps.NoisePowerError, match="pixel_mm"):
        nps.nps_2d(np.zeros((3, 8, 8)), 0.0)
