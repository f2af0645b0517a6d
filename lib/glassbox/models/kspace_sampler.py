"""A learnable k-space sampling layer (Lu, seed 003) and the fixed masks it is compared with.

Pipeline of one forward pass: image -> centred orthonormal FFT -> multiply by a 0/1 mask ->
inverse FFT -> **magnitude** (as LOUPE's ``ComplexAbs`` and fastMRI's ``complex_abs``; the real
part would silently symmetrise the mask, see ``research/kspace.md`` section 4.6).

**Parameterisation (the paper's eq. 1, with the right column).** Every sampling unit (a
phase-encode line by default, one k-space point with ``unit="point"``) has a 1x2 logit
``[log(r / (1 - r)), 0]``. ``softmax`` of it is ``[r, 1 - r]``, so **column 0** is the one sampled
with probability ``r``. The paper says it "selected the second column", which samples with
probability ``1 - r``; we use column 0 (:data:`SAMPLE_COLUMN`) so that the expected sampling rate
at initialisation equals ``rate``.

**Sampling (training).** Hard Gumbel-softmax (Jang et al. 2016): Gumbel noise ``G`` is added to
the logits, ``y_soft = softmax((logits + G) / temperature)``, the forward pass uses the one-hot
``y_hard`` and gradients flow through ``y_soft`` (straight-through: ``y_hard - y_soft.detach() +
y_soft``). The noise comes from the layer's own ``torch.Generator`` (seeded by ``seed``), never from
the global RNG; ``torch.nn.functional.gumbel_softmax`` has no generator argument, hence our own.
With ``per_sample=True`` every image in a batch gets its own mask.

**Always-on centre.** ``n_center`` units closest to the k-space centre are always sampled (no
logit is learnt for them); the other units start at ``r' = (rate * U - n_center) / (U - n_center)``
so the expected rate over all ``U`` units is still ``rate``.

**Evaluation (``model.eval()``).** A deterministic mask: the ``k`` units with the largest log-odds
``logits[:, 0] - logits[:, 1]`` (ties, as at initialisation, go to the units closest to the
centre), where ``k = round(expected_rate * U)``. Thresholding ``p > 0.5`` would instead give all or
nothing at initialisation, since all units share one logit.

**Rates (always reported, :meth:`KSpaceSampler.rates`).** ``nominal`` (what it was built with),
``expected`` (mean sampling probability now; it drifts during training because nothing constrains
the logits, which is what the paper's Table 1 rates look like), ``last_draw`` (realised fraction of
the last training mask) and ``eval`` (fraction of the evaluation mask). :meth:`rate_penalty` gives
``(expected - nominal)**2`` for callers who want to hold the rate.

Fixed baselines at equal rate: :func:`centre_mask` (low-pass along phase encoding) and
:func:`random_mask` (fastMRI's ``RandomMaskFunc``: a fully sampled centre of
``round(center_fraction * N)`` lines plus the other lines with the probability that makes
``E[#lines] = rate * N``).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = [
    "SAMPLE_COLUMN", "fft2c", "ifft2c", "apply_mask", "check_rate", "init_logit",
    "centre_order", "centre_mask", "random_mask", "fastmri_center_fraction",
    "KSpaceSampler", "FixedMaskSampler",
]

SAMPLE_COLUMN = 0  # softmax([log(r/(1-r)), 0]) = [r, 1-r]: column 0 is sampled with probability r
Unit = Literal["line", "point"]
_TINY = 1e-30


def check_rate(rate: float, name: str = "rate") -> float:
    """``rate`` as a float in (0, 1], or a ValueError naming it."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1], got {rate!r}")
    rate = float(rate)
    if not (0.0 < rate <= 1.0) or math.isnan(rate):
        raise ValueError(f"{name} must be in (0, 1] (a fraction of k-space), got {rate!r}")
    return rate


def init_logit(rate: float) -> float:
    """The paper's eq. 1, ``log(rate / (1 - rate))``, for ``0 < rate < 1``."""
    rate = check_rate(rate)
    if rate >= 1.0:
        raise ValueError("init_logit needs rate < 1: rate 1 means 'sample everything' and has an infinite logit")
    return math.log(rate / (1.0 - rate))


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two axes (fastMRI's ``fft2c``): DC at ``(H//2, W//2)``."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c`."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=(-2, -1)), norm="ortho"), dim=(-2, -1))


def apply_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``|IFFT(FFT(x) * mask)|``: the under-sampled magnitude image; ``mask`` broadcasts over ``x``."""
    return ifft2c(fft2c(x) * mask).abs()


def _check_shape(shape: tuple[int, int] | int) -> tuple[int, int]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (int(shape), int(shape))
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2 for s in shape)):
        raise ValueError(f"shape must be (H, W) with integers >= 2 (or one integer), got {shape!r}")
    return int(shape[0]), int(shape[1])


def centre_order(shape: tuple[int, int] | int, unit: Unit = "line") -> torch.Tensor:
    """Unit indices sorted by distance from the k-space centre (stable: ties go to the lower index).

    ``unit="line"``: rows of the centred k-space (``H`` units); ``"point"``: all ``H * W`` points, row-major.
    """
    h, w = _check_shape(shape)
    rows = torch.arange(h, dtype=torch.float64) - h // 2
    if unit == "line":
        distance = rows.abs()
    elif unit == "point":
        cols = torch.arange(w, dtype=torch.float64) - w // 2
        distance = (rows[:, None] ** 2 + cols[None, :] ** 2).sqrt().reshape(-1)
    else:
        raise ValueError(f"unit must be 'line' or 'point', got {unit!r}")
    return torch.sort(distance, stable=True).indices


def centre_mask(size: int, rate: float) -> torch.Tensor:
    """Low-pass line mask: the ``round(rate * size)`` (at least 1) phase-encode lines closest to DC.

    Returns a float 0/1 vector of length ``size`` (index ``size // 2`` is DC).
    """
    rate = check_rate(rate)
    count = max(1, int(round(rate * size)))
    mask = torch.zeros(size)
    mask[centre_order((size, 2), "line")[:count]] = 1.0
    return mask


def fastmri_center_fraction(rate: float) -> float:
    """fastMRI's usual centre fraction for a sampling rate: 0.08 at 4x, 0.04 at 8x, i.e. ``0.32 * rate``."""
    return 0.32 * check_rate(rate)


def random_mask(size: int, rate: float, *, seed: int, center_fraction: float | None = None) -> torch.Tensor:
    """fastMRI ``RandomMaskFunc``-style line mask with expected rate ``rate``.

    ``round(center_fraction * size)`` central lines are always on; each other line is on with
    probability ``(rate * size - n_low) / (size - n_low)``, drawn from ``torch.Generator`` seeded
    with ``seed``. ``center_fraction`` defaults to :func:`fastmri_center_fraction`.
    """
    rate = check_rate(rate)
    if center_fraction is None:
        center_fraction = fastmri_center_fraction(rate)
    if not 0 <= center_fraction <= rate:
        raise ValueError(f"center_fraction must be in [0, rate={rate}], got {center_fraction!r}")
    n_low = int(round(center_fraction * size))
    order = centre_order((size, 2), "line")
    mask = torch.zeros(size)
    mask[order[:n_low]] = 1.0
    rest = order[n_low:]
    if len(rest):
        prob = (rate * size - n_low) / (size - n_low)
        generator = torch.Generator().manual_seed(int(seed))
        draw = torch.rand(len(rest), generator=generator) < prob
        mask[rest[draw]] = 1.0
    return mask


class KSpaceSampler(nn.Module):
    """FFT -> learnable hard-Gumbel-softmax mask -> IFFT -> magnitude (see the module docstring).

    Input and output are real images ``(B, C, H, W)`` with ``(H, W) == shape``; phase encoding runs
    along ``H`` (rows), so a line mask selects rows of the centred k-space.
    """

    def __init__(self, shape: tuple[int, int] | int, rate: float, *, unit: Unit = "line",
                 temperature: float = 1.0, n_center: int = 0, per_sample: bool = True, seed: int = 0):
        super().__init__()
        self.shape = _check_shape(shape)
        self.nominal_rate = check_rate(rate)
        if unit not in ("line", "point"):
            raise ValueError(f"unit must be 'line' or 'point', got {unit!r}")
        self.unit: Unit = unit
        self.n_units = self.shape[0] if unit == "line" else self.shape[0] * self.shape[1]
        if isinstance(n_center, bool) or not isinstance(n_center, (int, np.integer)) or not 0 <= n_center <= self.n_units:
            raise ValueError(f"n_center must be an integer in [0, {self.n_units}], got {n_center!r}")
        self.n_center = int(n_center)
        self.temperature = temperature
        self.per_sample = bool(per_sample)

        order = centre_order(self.shape, unit)
        fixed = torch.zeros(self.n_units, dtype=torch.bool)
        fixed[order[:self.n_center]] = True
        self.register_buffer("fixed", fixed)
        self.register_buffer("order", order)  # tie-break of the evaluation mask: nearest the centre first

        free = self.n_units - self.n_center
        self.full_sampling = self.nominal_rate >= 1.0
        if self.full_sampling:
            free_rate = 1.0
        else:
            free_rate = (self.nominal_rate * self.n_units - self.n_center) / free if free else 0.0
            if not 0 < free_rate < 1:
                raise ValueError(f"rate={self.nominal_rate} cannot be reached with n_center={self.n_center} "
                                 f"always-on units out of {self.n_units}: need n_center < rate * {self.n_units}")
        self.initial_free_rate = free_rate
        logits = torch.zeros(self.n_units, 2)
        if not self.full_sampling:
            logits[:, SAMPLE_COLUMN] = init_logit(free_rate)
        self.logits = nn.Parameter(logits)
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.last_draw_rate = float("nan")

    # -- configuration ------------------------------------------------------------------------

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise ValueError(f"temperature must be a positive finite number, got {value!r}")
        self._temperature = float(value)

    def reseed(self, seed: int) -> None:
        """Restart the Gumbel noise stream from ``seed``."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, rate={self.nominal_rate}, unit={self.unit!r}, "
                f"temperature={self.temperature}, n_center={self.n_center}, per_sample={self.per_sample}")

    # -- probabilities and masks --------------------------------------------------------------

    def log_odds(self) -> torch.Tensor:
        """``logits[:, 0] - logits[:, 1]`` per unit (+inf for always-on units)."""
        odds = self.logits[:, SAMPLE_COLUMN] - self.logits[:, 1 - SAMPLE_COLUMN]
        if self.full_sampling:
            return torch.full_like(odds, math.inf)
        return odds.masked_fill(self.fixed, math.inf)

    def probabilities(self) -> torch.Tensor:
        """Sampling probability of each unit (``softmax(logits)[:, 0]``, 1 for always-on units)."""
        return torch.sigmoid(self.log_odds())

    def expected_rate(self) -> float:
        """Mean sampling probability over all units: the rate a training draw has on average."""
        return float(self.probabilities().detach().mean())

    def rate_penalty(self) -> torch.Tensor:
        """``(mean probability - nominal rate)**2``: add ``lambda * rate_penalty()`` to hold the rate."""
        return (self.probabilities().mean() - self.nominal_rate) ** 2

    def _to_image_shape(self, units: torch.Tensor) -> torch.Tensor:
        """(..., U) unit values -> (..., H, 1) for lines or (..., H, W) for points."""
        h, w = self.shape
        return units.reshape(*units.shape[:-1], h, 1 if self.unit == "line" else w)

    def sample_units(self, count: int = 1) -> torch.Tensor:
        """``count`` hard Gumbel-softmax draws, (count, U), values exactly 0/1, straight-through gradients."""
        if self.full_sampling:
            return torch.ones(count, self.n_units, device=self.logits.device)
        uniform = torch.rand((count, self.n_units, 2), generator=self.generator).to(self.logits.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_min(_TINY)))  # torch.rand < 1, so both logs are finite
        y_soft = torch.softmax((self.logits + gumbel) / self.temperature, dim=-1)
        y_hard = nn.functional.one_hot(y_soft.argmax(dim=-1), 2).to(y_soft.dtype)
        y = y_hard - y_soft.detach() + y_soft
        units = y[..., SAMPLE_COLUMN]
        return torch.where(self.fixed, torch.ones_like(units), units)

    def eval_units(self, rate: float | None = None) -> torch.Tensor:
        """Deterministic 0/1 mask over units: the top ``round(rate * U)`` by log-odds (always-on first,
        ties nearest the centre). ``rate`` defaults to the current :meth:`expected_rate`."""
        rate = self.expected_rate() if rate is None else check_rate(rate)
        count = min(self.n_units, max(1, int(round(rate * self.n_units)), self.n_center))
        order = self.order.cpu()
        odds = self.log_odds().detach().cpu()[order]
        ranked = order[torch.sort(-odds, stable=True).indices]
        mask = torch.zeros(self.n_units, device=self.logits.device)
        mask[ranked[:count]] = 1.0
        return mask

    def mask(self) -> torch.Tensor:
        """The evaluation mask in image layout, (H, 1) or (H, W)."""
        return self._to_image_shape(self.eval_units())

    def rates(self) -> dict[str, float]:
        """``nominal``, ``expected``, ``last_draw`` (nan before any training draw) and ``eval`` rates."""
        return {"nominal": self.nominal_rate, "expected": self.expected_rate(),
                "last_draw": self.last_draw_rate, "eval": float(self.eval_units().mean())}

    # -- forward ------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"KSpaceSampler expects a (B, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"KSpaceSampler was built for images of size {self.shape}, got {tuple(x.shape[-2:])}")
        if x.is_complex():
            raise ValueError("KSpaceSampler expects real (magnitude) images, got a complex tensor")
        if self.training:
            units = self.sample_units(x.shape[0] if self.per_sample else 1)
            self.last_draw_rate = float(units.detach().mean())
            mask = self._to_image_shape(units)[:, None]          # (B or 1, 1, H, 1 or W)
        else:
            mask = self.mask()
        return apply_mask(x, mask.to(x.dtype))


class FixedMaskSampler(nn.Module):
    """FFT -> a fixed 0/1 mask -> IFFT -> magnitude: the baselines (centre, random) in the same pipeline.

    ``mask``: a line mask of length ``H`` or a point mask ``(H, W)``.
    """

    def __init__(self, shape: tuple[int, int] | int, mask: torch.Tensor, name: str = "fixed",
                 nominal_rate: float | None = None):
        super().__init__()
        self.shape = _check_shape(shape)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.ndim == 1 and mask.shape[0] == self.shape[0]:
            mask = mask[:, None]
        elif mask.shape != self.shape:
            raise ValueError(f"mask must have length H={self.shape[0]} or shape {self.shape}, got {tuple(mask.shape)}")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError("mask must hold only 0 and 1")
        self.register_buffer("fixed_mask", mask)
        self.name = name
        self.nominal_rate = float(mask.mean()) if nominal_rate is None else check_rate(nominal_rate, "nominal_rate")

    def mask(self) -> torch.Tensor:
        return self.fixed_mask

    def rates(self) -> dict[str, float]:
        rate = float(self.fixed_mask.mean())
        return {"nominal": self.nominal_rate, "expected": rate, "last_draw": rate, "eval": rate}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"FixedMaskSampler expects (B, C, {self.shape[0]}, {self.shape[1]}) images, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        return apply_mask(x, self.fixed_mask.to(x.dtype))
