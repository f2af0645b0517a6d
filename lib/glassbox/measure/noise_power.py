"""Noise power spectrum (NPS) of CT images: how much noise an image carries and at which spatial frequencies.

The NPS is the standard description of CT noise *texture* (ICRU Report 87; Boedeker et al. 2007): two images
with the same noise SD look different when one has its noise power at low frequencies (blotchy, "plastic") and
the other at high frequencies (fine grain). For square noise-only regions ``n_k`` of ``r x r`` pixels of side
``dx`` mm,

    NPS(u, v) = dx^2 / r^2 * mean_k |DFT(n_k - mean(n_k))|^2        [HU^2 mm^2]

so that its integral over the frequency plane equals the noise variance (Parseval; checked in the tests).
Noise-only regions come from the *difference* of two scans of the same object with independent noise,
``(a - b) / sqrt(2)``, which removes the anatomy exactly (:func:`difference_noise`), and are cut where the
whole region lies inside the body (:func:`body_rois`).

- :func:`nps_2d` -- the 2-D NPS of each region (centred, DC in the middle) and the frequency grid;
- :func:`radial_profile` -- its average over rings of equal radial frequency;
- :func:`mean_frequency` -- the NPS-weighted mean radial frequency ``f_avg`` of each region, the usual
  one-number summary of texture (lower = smoother, coarser noise);
- :func:`noise_sd` -- the noise SD of each region from its NPS integral.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from glassbox.core import checks


class NoisePowerError(ValueError):
    """Bad noise regions, pixel size or masks for the noise power spectrum."""


def _check_rois(rois: np.ndarray) -> np.ndarray:
    rois = np.asarray(rois, dtype=np.float64)
    if rois.ndim != 3 or rois.shape[1] != rois.shape[2] or rois.shape[0] < 1 or rois.shape[1] < 4:
        raise NoisePowerError(f"rois must be a (K >= 1, r, r) stack of square regions with r >= 4, got {rois.shape}")
    if not np.isfinite(rois).all():
        raise NoisePowerError("rois contain non-finite values")
    return rois


def _check_pixel(pixel_mm: float) -> float:
    return checks.positive_number(pixel_mm, "pixel_mm (millimetres)", error=NoisePowerError)


def frequencies(size: int, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Centred frequency axes (cycles/mm) of an ``size x size`` DFT and the radial frequency of each bin."""
    f = np.fft.fftshift(np.fft.fftfreq(int(size), d=_check_pixel(pixel_mm)))
    fy, fx = np.meshgrid(f, f, indexing="ij")
    return f, np.hypot(fx, fy)


def nps_2d(rois: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The 2-D NPS (HU^2 mm^2) of each noise region, centred (zero frequency at index ``r // 2``); (K, r, r).

    Each region's own mean is subtracted first, so the zero-frequency bin is 0.
    """
    rois = _check_rois(rois)
    dx = _check_pixel(pixel_mm)
    r = rois.shape[1]
    centred = rois - rois.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(centred)) ** 2 * dx * dx / (r * r)
    return np.fft.fftshift(power, axes=(1, 2))


def noise_sd(nps: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Noise SD (HU) of each region: the square root of the NPS integrated over the frequency plane."""
    nps = np.asarray(nps, dtype=np.float64)
    r = nps.shape[-1]
    df = 1.0 / (r * _check_pixel(pixel_mm))
    return np.sqrt(nps.sum(axis=(-2, -1)) * df * df)


def mean_frequency(nps: np.ndarray, pixel_mm: float) -> np.ndarray:
    """NPS-weighted mean radial frequency (cycles/mm) of each region's NPS (or of one (r, r) NPS)."""
    nps = np.asarray(nps, dtype=np.float64)
    _, radial = frequencies(nps.shape[-1], pixel_mm)
    total = nps.sum(axis=(-2, -1))
    if np.any(total <= 0):
        raise NoisePowerError("an NPS with no power has no mean frequency (a constant region?)")
    return (nps * radial).sum(axis=(-2, -1)) / total


def radial_profile(nps: np.ndarray, pixel_mm: float, n_bins: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(bin centres in cycles/mm, the NPS averaged over rings) up to the Nyquist frequency ``1 / (2 dx)``.

    ``nps`` is (r, r) or (K, r, r); the profile has the same leading shape. ``n_bins`` defaults to ``r // 2``.
    """
    nps = np.asarray(nps, dtype=np.float64)
    r = nps.shape[-1]
    dx = _check_pixel(pixel_mm)
    _, radial = frequencies(r, dx)
    n_bins = r // 2 if n_bins is None else int(n_bins)
    if n_bins < 1:
        raise NoisePowerError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.linspace(0.0, 0.5 / dx, n_bins + 1)
    which = np.digitize(radial.ravel(), edges[1:-1])
    inside = radial.ravel() <= edges[-1] + 1e-12
    flat = nps.reshape(*nps.shape[:-2], -1)
    profile = np.stack([flat[..., inside & (which == b)].mean(axis=-1) for b in range(n_bins)], axis=-1)
    return 0.5 * (edges[1:] + edges[:-1]), profile


def difference_noise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(a - b) / sqrt(2)``: the noise of one scan, from two scans of the same object with independent noise."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise NoisePowerError(f"the two scans must have the same shape, got {a.shape} and {b.shape}")
    return (a - b) / math.sqrt(2.0)


def body_rois(reference: np.ndarray, size: int, *, stride: int | None = None, min_hu: float = -500.0,
              margin: int = 2) -> list[tuple[int, int, int]]:
    """Corners ``(slice, row, col)`` of ``size x size`` regions lying wholly inside the body of ``reference``.

    ``reference`` is an (S, n, n) stack in HU; the body is the region above ``min_hu`` with its holes (bowel
    gas) filled; a region is kept when every pixel of it, grown by ``margin`` pixels on each side, is body (no
    edge of the body inside). Corners step by ``stride`` (default ``size // 2``).
    """
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 3:
        raise NoisePowerError(f"reference must be an (S, n, n) stack, got shape {reference.shape}")
    size = int(size)
    stride = size // 2 if stride is None else int(stride)
    if size < 4 or stride < 1 or size + 2 * margin > min(reference.shape[1:]):
        raise NoisePowerError(f"size {size} (+ margin {margin}) does not fit slices of {reference.shape[1:]}")
    body = np.stack([ndimage.binary_fill_holes(s > min_hu) for s in reference])
    corners = []
    for s in range(reference.shape[0]):
        for r in range(margin, reference.shape[1] - size - margin + 1, stride):
            for c in range(margin, reference.shape[2] - size - margin + 1, stride):
                if body[s, r - margin:r + size + margin, c - margin:c + size + margin].all():
                    corners.append((s, r, c))
    return corners


def cut_rois(images: np.ndarray, corners: list[tuple[int, int, int]], size: int) -> np.ndarray:
    """The ``size x size`` regions of an (S, n, n) stack at ``corners`` (from :func:`body_rois`): (K, size, size)."""
    images = np.asarray(images)
    if not corners:
        raise NoisePowerError("no regions: the body is smaller than one region (use a smaller size)")
    return np.stack([images[s, r:r + size, c:c + size] for s, r, c in corners])
