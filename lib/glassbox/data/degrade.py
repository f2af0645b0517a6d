"""Image degradations for exploring restoration metrics: noise, blur, shift and contrast (and impulse noise).

Each function takes a 2-D float image and returns a new float64 image of the same shape; zero
strength returns the input unchanged (bit for bit). :func:`degrade` applies all four in a fixed
order (contrast, blur, shift, noise) from one :class:`Degradation`. :func:`match_mse` finds, for one
kind, the strength that produces a given MSE: with it, images of *equal PSNR* can be built that
look very different and have very different SSIM (Wang & Bovik 2009, "Mean squared error: love it
or leave it?").
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

Kind = Literal["noise", "blur", "shift", "contrast", "offset"]
KINDS: tuple[str, ...] = ("noise", "blur", "shift", "contrast", "offset")


class DegradationError(ValueError):
    """A degradation got an image or strength it cannot use."""


def _image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2 or array.size == 0:
        raise DegradationError(f"image must be a non-empty 2-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise DegradationError(f"image must be real-valued, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise DegradationError("image contains NaN or infinite values")
    return array


def _non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise DegradationError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def add_noise(image: np.ndarray, sigma: float, seed: int | np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise of standard deviation ``sigma`` (in image units)."""
    array, sigma = _image(image), _non_negative(sigma, "sigma")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return array + sigma * rng.standard_normal(array.shape) if sigma > 0 else array


def impulse(image: np.ndarray, fraction: float, value: float, seed: int | np.random.Generator) -> np.ndarray:
    """Impulse ("salt") noise: each pixel independently replaced by ``value`` with probability ``fraction``.

    A pixel's value is then ``value`` with probability ``fraction`` and its own value otherwise: for
    ``fraction < 1/2`` the *median* of that distribution is the clean value, while its *mean* moves
    towards ``value`` by ``fraction * (value - clean)`` (what separates L1 from L2 training).
    """
    array = _image(image)
    fraction = _non_negative(fraction, "fraction")
    if fraction > 1:
        raise DegradationError(f"fraction must be in [0, 1], got {fraction!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise DegradationError(f"value must be a finite number, got {value!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return np.where(rng.random(array.shape) < fraction, float(value), array)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (mirror boundary: the mean is kept)."""
    array, sigma = _image(image), _non_negative(sigma, "sigma")
    return ndimage.gaussian_filter(array, sigma, mode="mirror") if sigma > 0 else array


def shift(image: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    """Translate by (dx, dy) pixels (right, down), cubic-spline interpolation, edge pixels repeated."""
    array = _image(image)
    for name, value in (("dx", dx), ("dy", dy)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise DegradationError(f"{name} must be a finite number of pixels, got {value!r}")
    if dx == 0 and dy == 0:
        return array
    return ndimage.shift(array, (float(dy), float(dx)), order=3, mode="nearest")


def contrast(image: np.ndarray, gain: float, offset: float = 0.0) -> np.ndarray:
    """Linear intensity change about the image mean: ``mean + gain * (image - mean) + offset``."""
    array = _image(image)
    gain = _non_negative(gain, "gain")
    if isinstance(offset, bool) or not isinstance(offset, (int, float, np.integer, np.floating)) \
            or not math.isfinite(offset):
        raise DegradationError(f"offset must be a finite number, got {offset!r}")
    if gain == 1 and offset == 0:
        return array
    mean = array.mean()
    return mean + gain * (array - mean) + offset


@dataclass(frozen=True)
class Degradation:
    """Strengths of the four degradations (all zero / gain 1: the identity)."""

    noise: float = 0.0     # Gaussian noise sigma, image units
    blur: float = 0.0      # Gaussian blur sigma, pixels
    shift: float = 0.0     # horizontal shift, pixels
    gain: float = 1.0      # contrast gain about the mean
    offset: float = 0.0    # brightness offset, image units


def degrade(image: np.ndarray, degradation: Degradation, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Apply contrast, then blur, then shift, then noise (the order of an acquisition chain)."""
    out = contrast(image, degradation.gain, degradation.offset)
    out = blur(out, degradation.blur)
    out = shift(out, degradation.shift)
    return add_noise(out, degradation.noise, seed)


def single(kind: Kind, strength: float) -> Degradation:
    """A :class:`Degradation` of one kind; for ``contrast`` the strength is the gain *loss* (gain = 1 - s)."""
    if kind == "noise":
        return Degradation(noise=strength)
    if kind == "blur":
        return Degradation(blur=strength)
    if kind == "shift":
        return Degradation(shift=strength)
    if kind == "contrast":
        return Degradation(gain=1.0 - strength)
    if kind == "offset":
        return Degradation(offset=strength)
    raise DegradationError(f"kind must be one of {KINDS}, got {kind!r}")


def match_mse(image: np.ndarray, kind: Kind, target_mse: float, seed: int = 0, *, max_strength: float | None = None,
              rtol: float = 1e-3) -> tuple[Degradation, np.ndarray]:
    """The degradation of ``kind`` whose MSE against ``image`` is ``target_mse``, and the degraded image.

    Noise and offset are solved in closed form for the drawn noise (MSE = s^2 * mean(z^2), s^2);
    blur, shift and contrast by bisection on the strength (their MSE grows with it). Raises
    :class:`DegradationError` when ``target_mse`` is out of reach of ``kind`` within ``max_strength``.
    """
    array = _image(image)
    target = _non_negative(target_mse, "target_mse")
    if kind not in KINDS:
        raise DegradationError(f"kind must be one of {KINDS}, got {kind!r}")

    def error(strength: float) -> float:
        return float(np.mean((degrade(array, single(kind, strength), seed) - array) ** 2))

    if kind == "noise":
        unit = error(1.0)
        strength = math.sqrt(target / unit)
    elif kind == "offset":
        strength = math.sqrt(target)
    else:
        high = max_strength if max_strength is not None else {"blur": 20.0, "shift": 20.0, "contrast": 1.0}[kind]
        if error(high) < target:
            raise DegradationError(f"{kind} cannot reach MSE {target:.4g} with strength <= {high} "
                                   f"(reaches {error(high):.4g}); lower target_mse or raise max_strength")
        low = 0.0
        for _ in range(60):
            middle = 0.5 * (low + high)
            if error(middle) < target:
                low = middle
            else:
                high = middle
            if high - low <= rtol * max(high, 1e-12):
                break
        strength = 0.5 * (low + high)
        reached = error(strength)
        if abs(reached - target) > 0.05 * max(target, 1e-12):
            raise DegradationError(f"{kind}: MSE is not monotone in the strength here (reached {reached:.4g} "
                                   f"for target {target:.4g}); lower max_strength")
    chosen = single(kind, strength)
    return chosen, degrade(array, chosen, seed)

