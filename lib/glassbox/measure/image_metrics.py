"""Image-comparison metrics for restoration and segmentation, on numpy arrays or torch tensors.

Restoration (ETH 227-0391-00, Section 6, "Basic cost functions"), with ``x`` the estimate
:math:`f(x;\\theta)` and ``ref`` the ground truth :math:`y`:

- :func:`mae`  mean absolute error, :math:`\\frac1D\\sum_r |y(r) - f(r)|`;
- :func:`mse`  mean squared error, :math:`\\frac1D\\sum_r (y(r) - f(r))^2`;
- :func:`nmse` normalised MSE, in the notes' two normalisations: by the reference's energy
  (``"energy"``: :math:`\\sum_r (y-f)^2 / \\sum_r y^2`) or by its range (``"range"``:
  :math:`\\mathrm{MSE} / (\\max y - \\min y)^2`);
- :func:`psnr` :math:`10\\log_{10}(R^2/\\mathrm{MSE})` with an explicit data range ``R``;
- :func:`ssim` the mean structural similarity over sliding windows (Wang et al. 2004).

The notes write MAE and MSE as sums over pixels; we divide by the pixel count D (the "mean" of
their names), so numbers do not depend on the image size and PSNR has its usual meaning. The
energy NMSE is the notes' formula with their *summed* MSE, sum (y - f)^2 / sum y^2 (scale-free);
the range NMSE uses the mean MSE, MSE / (max y - min y)^2 (the square of scikit-image's
``normalized_root_mse`` with ``"euclidean"`` and ``"min-max"`` normalisation respectively).

PSNR and SSIM need the data range ``R`` (e.g. the width of the HU window, or 1 for images in
[0, 1]). It is a required argument: guessing it from the data makes numbers incomparable across
images (the notes' max(y) changes from slice to slice, and a float image has no dtype range).

Conventions are those of scikit-image 0.26 (``mean_squared_error``, ``normalized_root_mse``,
``peak_signal_noise_ratio``, ``structural_similarity``), checked in ``tests/test_metrics.py``.
Every metric returns a Python float; arrays are compared in float64.

Segmentation: :func:`dice_score` (the hard Sorensen-Dice coefficient 2|A n B| / (|A| + |B|)),
:func:`dice_per_class` for label maps, and :func:`boundary_accuracy` (correct pixels near boundaries).
"""
from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from glassbox.core import checks

ArrayLike = np.ndarray | torch.Tensor
Normalisation = Literal["energy", "range"]
Window = Literal["uniform", "gaussian"]

SSIM_K1 = 0.01
SSIM_K2 = 0.03
GAUSSIAN_SIGMA = 1.5       # Wang et al. 2004
GAUSSIAN_TRUNCATE = 3.5    # scikit-image's truncation: an 11-tap window for sigma 1.5


class MetricInputError(ValueError):
    """An input to a metric has the wrong shape, type or value."""


# --- input handling ----------------------------------------------------------------------------

def as_float64_tensor(value: Any, name: str) -> torch.Tensor:
    """A detached CPU float64 copy of a numpy array or torch tensor, rejecting anything else."""
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
    elif isinstance(value, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(value))
    else:
        raise MetricInputError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    if tensor.is_complex():
        raise MetricInputError(f"{name} is complex; compare magnitudes (abs) or real parts explicitly")
    if tensor.numel() == 0:
        raise MetricInputError(f"{name} is empty (shape {tuple(tensor.shape)})")
    tensor = tensor.to(torch.float64)
    if not torch.isfinite(tensor).all():
        raise MetricInputError(f"{name} contains NaN or infinite values")
    return tensor


def _pair(x: Any, ref: Any) -> tuple[torch.Tensor, torch.Tensor]:
    a, b = as_float64_tensor(x, "x"), as_float64_tensor(ref, "ref")
    if a.shape != b.shape:
        raise MetricInputError(f"x and ref must have the same shape, got x {tuple(a.shape)} and ref {tuple(b.shape)}")
    return a, b


def _check_data_range(data_range: Any) -> float:
    if data_range is None:
        raise MetricInputError(
            "data_range is required: the width of the intensity range the images live in, e.g. 1.0 for "
            "images in [0, 1] or the window width in HU for windowed CT; it is not guessed from the data")
    return checks.positive_number(data_range, "data_range", error=MetricInputError)


# --- restoration metrics ------------------------------------------------------------------------

def mae(x: ArrayLike, ref: ArrayLike) -> float:
    """Mean absolute error between estimate ``x`` and reference ``ref`` (same shape)."""
    a, b = _pair(x, ref)
    return float((a - b).abs().mean())


def mse(x: ArrayLike, ref: ArrayLike) -> float:
    """Mean squared error between estimate ``x`` and reference ``ref`` (same shape)."""
    a, b = _pair(x, ref)
    return float(((a - b) ** 2).mean())


def nmse(x: ArrayLike, ref: ArrayLike, normalisation: Normalisation = "energy") -> float:
    """Normalised MSE in one of the notes' two forms.

    ``"energy"``: sum (ref - x)^2 / sum ref^2 (scale-free; 1.0 for x = 0).
    ``"range"``:  MSE / (max(ref) - min(ref))^2 (the squared min-max NRMSE).
    Both normalise by the *reference*, so ``nmse(x, ref) != nmse(ref, x)`` in general.
    """
    a, b = _pair(x, ref)
    squared_error = ((a - b) ** 2).sum()
    if normalisation == "energy":
        energy = (b**2).sum()
        if energy == 0:
            raise MetricInputError("nmse(normalisation='energy') needs a reference with nonzero energy; "
                                   "ref is all zeros")
        return float(squared_error / energy)
    if normalisation == "range":
        span = b.max() - b.min()
        if span == 0:
            raise MetricInputError("nmse(normalisation='range') needs a reference with max > min; ref is constant")
        return float(squared_error / b.numel() / span**2)
    raise MetricInputError(f"normalisation must be 'energy' or 'range', got {normalisation!r}")


def psnr(x: ArrayLike, ref: ArrayLike, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(data_range^2 / MSE); ``inf`` when x equals ref.

    The notes' form, max(y)^2 / MSE, is ``data_range=ref.max()`` for images whose minimum is 0.
    """
    value_range = _check_data_range(data_range)
    error = mse(x, ref)
    if error == 0:
        return math.inf
    return 10.0 * math.log10(value_range**2 / error)


def _window(window: Window, win_size: int | None) -> torch.Tensor:
    """The normalised 1-D SSIM window (float64)."""
    if window == "uniform":
        size = 7 if win_size is None else win_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 3 or size % 2 == 0:
            raise MetricInputError(f"win_size must be an odd integer >= 3, got {win_size!r}")
        return torch.full((int(size),), 1.0 / size, dtype=torch.float64)
    if window == "gaussian":
        radius = int(GAUSSIAN_TRUNCATE * GAUSSIAN_SIGMA + 0.5)
        if win_size is not None and win_size != 2 * radius + 1:
            raise MetricInputError(f"the gaussian window (sigma {GAUSSIAN_SIGMA}) has {2 * radius + 1} taps; "
                                   f"leave win_size=None, got {win_size!r}")
        taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
        weights = torch.exp(-0.5 * (taps / GAUSSIAN_SIGMA) ** 2)
        return weights / weights.sum()
    raise MetricInputError(f"window must be 'uniform' or 'gaussian', got {window!r}")


def _ssim_map_tensor(a: torch.Tensor, b: torch.Tensor, data_range: float, window: Window,
                     win_size: int | None) -> torch.Tensor:
    """Per-window SSIM of (..., H, W) inputs over the 'valid' positions: (..., H - w + 1, W - w + 1)."""
    if a.ndim < 2:
        raise MetricInputError(f"SSIM needs images of shape (..., H, W), got shape {tuple(a.shape)}")
    weights = _window(window, win_size)
    size = weights.numel()
    height, width = a.shape[-2:]
    if height < size or width < size:
        raise MetricInputError(f"images of {height}x{width} pixels are smaller than the {size}x{size} SSIM window")
    lead = a.shape[:-2]
    planes = torch.stack([a.reshape(-1, height, width), b.reshape(-1, height, width)], dim=1)  # (P, 2, H, W)
    products = torch.stack([planes[:, 0] ** 2, planes[:, 1] ** 2, planes[:, 0] * planes[:, 1]], dim=1)
    stack = torch.cat([planes, products], dim=1)                                            # (P, 5, H, W)
    kernel = (weights[:, None] * weights[None, :]).expand(5, 1, size, size)
    mu_a, mu_b, m_aa, m_bb, m_ab = F.conv2d(stack, kernel, groups=5).unbind(dim=1)
    # scikit-image: sample covariance (N / (N - 1)) for the uniform window, population for gaussian
    cov_norm = size * size / (size * size - 1) if window == "uniform" else 1.0
    var_a = cov_norm * (m_aa - mu_a**2)
    var_b = cov_norm * (m_bb - mu_b**2)
    cov_ab = cov_norm * (m_ab - mu_a * mu_b)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    value = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return value.reshape(*lead, *value.shape[-2:])


def ssim_map(x: ArrayLike, ref: ArrayLike, data_range: float, *, window: Window = "uniform",
             win_size: int | None = None) -> np.ndarray:
    """Local SSIM at every window position that fits inside the image: shape (..., H - w + 1, W - w + 1).

    Position (i, j) is the window centred on pixel (i + w // 2, j + w // 2).
    """
    a, b = _pair(x, ref)
    return _ssim_map_tensor(a, b, _check_data_range(data_range), window, win_size).numpy()


def ssim(x: ArrayLike, ref: ArrayLike, data_range: float, *, window: Window = "uniform",
         win_size: int | None = None) -> float:
    """Mean SSIM of 2-D images (Wang et al. 2004); leading dimensions are a stack of 2-D images.

    ``window="uniform"`` (``win_size`` 7, sample covariance) reproduces scikit-image's default
    ``structural_similarity``; ``window="gaussian"`` (sigma 1.5, 11 taps, population covariance) is
    Wang et al.'s original, i.e. scikit-image with ``gaussian_weights=True, use_sample_covariance=False``.
    Only windows that lie inside the image count, as in scikit-image. For a stack the result is the
    mean over all 2-D images (scikit-image's ``channel_axis`` average).
    """
    return float(ssim_map(x, ref, data_range, window=window, win_size=win_size).mean())


def restoration_metrics(x: ArrayLike, ref: ArrayLike, data_range: float) -> dict[str, float]:
    """All restoration metrics of this module at once (the widget's table)."""
    return {
        "MAE": mae(x, ref),
        "MSE": mse(x, ref),
        "NMSE (energy)": nmse(x, ref, "energy"),
        "NMSE (range)": nmse(x, ref, "range"),
        "PSNR [dB]": psnr(x, ref, data_range),
        "SSIM": ssim(x, ref, data_range),
    }


# --- segmentation ------------------------------------------------------------------------------

def _as_mask(value: Any, name: str) -> torch.Tensor:
    tensor = as_float64_tensor(value, name)
    if not torch.all((tensor == 0) | (tensor == 1)):
        raise MetricInputError(f"{name} must be a binary mask (values 0/1 or bool)")
    return tensor.to(torch.bool)


def dice_score(pred: ArrayLike, ref: ArrayLike, *, empty: float = 1.0) -> float:
    """Sorensen-Dice coefficient 2|A n B| / (|A| + |B|) of two binary masks of the same shape.

    When both masks are empty the ratio is 0/0; we return ``empty`` (default 1.0: both agree that
    the structure is absent). Pass ``empty=float('nan')`` to leave such cases out of an average.
    """
    a, b = _as_mask(pred, "pred"), _as_mask(ref, "ref")
    if a.shape != b.shape:
        raise MetricInputError(f"pred and ref must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return float(empty)
    return 2.0 * int((a & b).sum()) / total


def dice_per_class(pred_labels: ArrayLike, ref_labels: ArrayLike, n_classes: int, *,
                   empty: float = 1.0) -> np.ndarray:
    """Hard Dice of each class ``k`` in ``range(n_classes)`` between two integer label maps."""
    a, b = as_float64_tensor(pred_labels, "pred_labels"), as_float64_tensor(ref_labels, "ref_labels")
    if a.shape != b.shape:
        raise MetricInputError(f"pred_labels and ref_labels must have the same shape, "
                               f"got {tuple(a.shape)} and {tuple(b.shape)}")
    checks.integer(n_classes, "n_classes", error=MetricInputError)
    for name, labels in (("pred_labels", a), ("ref_labels", b)):
        if not torch.all((labels == labels.round()) & (labels >= 0) & (labels < n_classes)):
            raise MetricInputError(f"{name} must hold integer labels in [0, {n_classes - 1}]")
    return np.array([dice_score(a == k, b == k, empty=empty) for k in range(n_classes)])


def boundary_band(labels: ArrayLike, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` pixels (chessboard distance) of a label change in a (..., H, W) label map."""
    values = as_float64_tensor(labels, "labels").numpy()
    if values.ndim < 2:
        raise MetricInputError(f"labels must have shape (..., H, W), got {values.shape}")
    checks.integer(width, "width (pixels)", error=MetricInputError)
    planes = values.reshape(-1, *values.shape[-2:])
    band = np.zeros(planes.shape, dtype=bool)
    structure = np.ones((3, 3), dtype=bool)
    for i, plane in enumerate(planes):
        edge = np.zeros(plane.shape, dtype=bool)
        edge[:, 1:] |= plane[:, 1:] != plane[:, :-1]
        edge[:, :-1] |= plane[:, 1:] != plane[:, :-1]
        edge[1:, :] |= plane[1:, :] != plane[:-1, :]
        edge[:-1, :] |= plane[1:, :] != plane[:-1, :]
        band[i] = ndimage.binary_dilation(edge, structure, iterations=int(width) - 1) if width > 1 else edge
    return band.reshape(values.shape)


def boundary_accuracy(pred_labels: ArrayLike, ref_labels: ArrayLike, width: int = 2) -> float:
    """Fraction of correctly labelled pixels among those within ``width`` px of a boundary of ``ref_labels``.

    A measure of output *detail*: a network that blurs or blocks its output loses pixels here first,
    while the class interiors stay right. NaN when ``ref_labels`` has no boundary.
    """
    a, b = as_float64_tensor(pred_labels, "pred_labels"), as_float64_tensor(ref_labels, "ref_labels")
    if a.shape != b.shape:
        raise MetricInputError(f"pred_labels and ref_labels must have the same shape, "
                               f"got {tuple(a.shape)} and {tuple(b.shape)}")
    band = boundary_band(b, width)
    if not band.any():
        return float("nan")
    return float((a.numpy() == b.numpy())[band].mean())


# --- calibration of pixel-wise probabilities -----------------------------------------------------

def _calibration_inputs(probs: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    p = as_float64_tensor(probs, "probs")
    t = as_float64_tensor(target, "target")
    if p.ndim < 2:
        raise MetricInputError(f"probs must be (N, K, ...) class probabilities, got shape {tuple(p.shape)}")
    if t.shape == p.shape[:1] + p.shape[2:]:                       # integer labels -> one-hot
        if not torch.all((t == t.round()) & (t >= 0) & (t < p.shape[1])):
            raise MetricInputError(f"target labels must be integers in [0, {p.shape[1] - 1}]")
        t = F.one_hot(t.long(), p.shape[1]).movedim(-1, 1).to(torch.float64)
    if t.shape != p.shape:
        raise MetricInputError(f"target must be labels of shape {tuple(p.shape[:1] + p.shape[2:])} or "
                               f"probabilities of shape {tuple(p.shape)}, got {tuple(t.shape)}")
    for name, value in (("probs", p), ("target", t)):
        if value.min() < 0 or value.max() > 1 or not torch.allclose(value.sum(1), torch.ones((), dtype=torch.float64),
                                                                      atol=1e-4):
            raise MetricInputError(f"{name} must hold class probabilities in [0, 1] that sum to 1 over dim 1")
    return p, t


def reliability_bins(probs: ArrayLike, target: ArrayLike, n_bins: int = 10,
                     mask: ArrayLike | None = None) -> dict[str, np.ndarray]:
    """Top-label reliability of pixel-wise class probabilities, in ``n_bins`` equal-width confidence bins.

    For every pixel the confidence is the largest predicted probability and the outcome is the
    target's probability of that class (1 or 0 for hard labels; the raters' share for soft labels).
    ``mask`` (N, ...) restricts the pixels (e.g. to where raters disagree).
    Returns per bin: ``confidence`` (mean), ``outcome`` (mean) and ``count`` (pixels); empty bins hold NaN.
    """
    p, t = _calibration_inputs(probs, target)
    checks.integer(n_bins, "n_bins", error=MetricInputError)
    confidence, predicted = p.max(dim=1)
    outcome = t.gather(1, predicted[:, None]).squeeze(1)
    if mask is not None:
        chosen = _as_mask(mask, "mask")
        if chosen.shape != confidence.shape:
            raise MetricInputError(f"mask must have shape {tuple(confidence.shape)}, got {tuple(chosen.shape)}")
        if not chosen.any():
            raise MetricInputError("mask selects no pixel")
        confidence, outcome = confidence[chosen], outcome[chosen]
    confidence, outcome = confidence.reshape(-1).numpy(), outcome.reshape(-1).numpy()
    index = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, confidence, n_bins) / count
        mean_out = np.bincount(index, outcome, n_bins) / count
    return {"confidence": mean_conf, "outcome": mean_out, "count": count}


def calibration_error(probs: ArrayLike, target: ArrayLike, n_bins: int = 10, mask: ArrayLike | None = None) -> float:
    """Expected calibration error: sum over bins of (pixel share) x |mean outcome - mean confidence|.

    0 for a perfectly calibrated prediction (among pixels predicted with confidence c, a share c is
    right, or for soft targets, the raters give the predicted class probability c on average). See
    :func:`reliability_bins` for the bins; Guo et al. 2017's top-label ECE, applied per pixel.
    """
    bins = reliability_bins(probs, target, n_bins, mask)
    filled = bins["count"] > 0
    weights = bins["count"][filled] / bins["count"].sum()
    return float((weights * np.abs(bins["outcome"][filled] - bins["confidence"][filled])).sum())
