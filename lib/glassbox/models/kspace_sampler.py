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

**Exactly k lines (``mode="topk"``).** The paper's per-line Bernoulli draws keep a different number
of lines in every draw and let the rate drift, and the evaluation mask (top-k) is then a mask the
classifier may never have seen in training. With ``mode="topk"`` every draw keeps exactly
``k = round(rate * U)`` units: Gumbel top-k (sampling k units without replacement from
``softmax(log_odds)``, Kool et al. 2019) in the forward pass, and the continuous relaxation of Xie &
Ermon (2019) -- k successive softmaxes at ``temperature``, each with the mass already taken removed --
for the gradient (straight-through, as Huijben et al.'s DPS). The rate never drifts and the
deterministic evaluation mask is the top-k of the log-odds. :meth:`KSpaceSampler.freeze` fixes the
mask to that top-k for training too (fine-tuning the classifier on the very mask it is evaluated
with), and the sampler records every distinct mask it used in training
(:meth:`KSpaceSampler.seen_in_training`) and the fewest and most units any training draw kept.

:class:`KSpaceClassifier` puts a sampler in front of a classifier network.

Fixed baselines at equal rate: :func:`centre_mask` (low-pass along phase encoding),
:func:`random_mask` (fastMRI's ``RandomMaskFunc``: a fully sampled centre of
``round(center_fraction * N)`` lines plus the other lines with the probability that makes
``E[#lines] = rate * N``) and :func:`random_k_mask` (the same layout with *exactly* ``k`` lines).
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from glassbox.core import checks

__all__ = [
    "SAMPLE_COLUMN", "MODES", "fft2c", "ifft2c", "apply_mask", "check_rate", "init_logit", "unit_count",
    "centre_order", "centre_mask", "random_mask", "random_k_mask", "fastmri_center_fraction",
    "relaxed_top_k", "KSpaceSampler", "FixedMaskSampler", "KSpaceClassifier",
]

SAMPLE_COLUMN = 0  # softmax([log(r/(1-r)), 0]) = [r, 1-r]: column 0 is sampled with probability r
Unit = Literal["line", "point"]
Mode = Literal["bernoulli", "topk"]
MODES: tuple[str, ...] = ("bernoulli", "topk")
_TINY = 1e-30


def check_rate(rate: float, name: str = "rate") -> float:
    """``rate`` as a float in (0, 1], or a ValueError naming it."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in (0, 1], got {rate!r}")
    rate = float(rate)
    if not (0.0 < rate <= 1.0) or math.isnan(rate):
        raise ValueError(f"{name} must be in (0, 1] (a fraction of k-space), got {rate!r}")
    return rate


def unit_count(rate: float, n_units: int) -> int:
    """``k = round(rate * n_units)``, at least 1: the number of units a mask of ``rate`` keeps."""
    rate = check_rate(rate)
    return min(int(n_units), max(1, int(round(rate * n_units))))


def init_logit(rate: float) -> float:
    """The paper's eq. 1, ``log(rate / (1 - rate))``, for ``0 < rate < 1``."""
    rate = check_rate(rate)
    if rate >= 1.0:
        raise ValueError("init_logit needs rate < 1: rate 1 means 'sample everything' and has an infinite logit")
    return math.log(rate / (1.0 - rate))


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2-D FFT over the last two axes (fastMRI's ``fft2c``): DC at ``(H//2, W//2)``.

    A real input is cast to complex first: torch's real-input path gives the same numbers but takes about
    twice as long on the CPU (measured at 64-256 px, one thread).
    """
    if not x.is_complex():
        x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
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
    count = unit_count(rate, size)
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


def random_k_mask(size: int, k: int, *, seed: int, center_fraction: float | None = None) -> torch.Tensor:
    """A random line mask with **exactly** ``k`` lines: ``round(center_fraction * size)`` central lines
    (fastMRI's layout; default :func:`fastmri_center_fraction` of ``k / size``, at most ``k``) plus
    ``k - n_low`` of the other lines drawn uniformly without replacement from a generator seeded with ``seed``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= size:
        raise ValueError(f"k must be an integer in [1, size={size}], got {k!r}")
    if center_fraction is None:
        center_fraction = fastmri_center_fraction(k / size)
    if not 0 <= center_fraction <= k / size:
        raise ValueError(f"center_fraction must be in [0, k/size={k / size:g}], got {center_fraction!r}")
    n_low = min(int(k), int(round(center_fraction * size)))
    order = centre_order((size, 2), "line")
    mask = torch.zeros(size)
    mask[order[:n_low]] = 1.0
    rest = order[n_low:]
    generator = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(len(rest), generator=generator)[: int(k) - n_low]
    mask[rest[pick]] = 1.0
    return mask


def relaxed_top_k(scores: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Xie & Ermon's (2019) continuous relaxation of the top-``k`` indicator of ``scores`` (..., U).

    ``k`` rounds of ``softmax(s / temperature)``, each after adding ``log(1 - p)`` of the previous round's
    probabilities to ``s``, summed: entries are non-negative and each row sums to ``k``; as the temperature
    falls it tends to the hard top-k. For ``k > U / 2`` the bottom ``U - k`` are relaxed instead (fewer rounds).
    """
    units = scores.shape[-1]
    if not 0 <= k <= units:
        raise ValueError(f"k must be in [0, {units}], got {k!r}")
    if k == 0:
        return torch.zeros_like(scores)
    if k == units:
        return torch.ones_like(scores)
    if k > units / 2:
        return 1.0 - relaxed_top_k(-scores, units - k, temperature)
    total = torch.zeros_like(scores)
    previous = torch.zeros_like(scores)
    s = scores
    for _ in range(int(k)):
        s = s + torch.log((1.0 - previous).clamp_min(_TINY))
        previous = torch.softmax(s / temperature, dim=-1)
        total = total + previous
    return total


def _pack(units: torch.Tensor) -> list[bytes]:
    """Each row of a 0/1 (N, U) tensor as a compact byte string (to remember which masks were used)."""
    bits = np.packbits(units.detach().cpu().numpy() > 0.5, axis=-1)
    return [row.tobytes() for row in bits]


class KSpaceSampler(nn.Module):
    """FFT -> learnable mask -> IFFT -> magnitude (see the module docstring).

    ``mode="bernoulli"``: the paper's hard Gumbel-softmax per unit (rate exact only in expectation, free to
    drift); ``mode="topk"``: exactly ``k = round(rate * U)`` units in every draw (Gumbel top-k with a
    straight-through relaxed top-k gradient). Input and output are real images ``(B, C, H, W)`` with
    ``(H, W) == shape``; phase encoding runs along ``H`` (rows), so a line mask selects rows of the centred
    k-space.
    """

    def __init__(self, shape: tuple[int, int] | int, rate: float, *, unit: Unit = "line",
                 temperature: float = 1.0, n_center: int = 0, per_sample: bool = True, seed: int = 0,
                 mode: Mode = "bernoulli"):
        super().__init__()
        self.shape = _check_shape(shape)
        self.nominal_rate = check_rate(rate)
        if unit not in ("line", "point"):
            raise ValueError(f"unit must be 'line' or 'point', got {unit!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode: Mode = mode
        self.unit: Unit = unit
        self.n_units = self.shape[0] if unit == "line" else self.shape[0] * self.shape[1]
        if isinstance(n_center, bool) or not isinstance(n_center, (int, np.integer)) or not 0 <= n_center <= self.n_units:
            raise ValueError(f"n_center must be an integer in [0, {self.n_units}], got {n_center!r}")
        self.n_center = int(n_center)
        self.temperature = temperature
        self.per_sample = bool(per_sample)
        self.k = unit_count(self.nominal_rate, self.n_units)

        order = centre_order(self.shape, unit)
        fixed = torch.zeros(self.n_units, dtype=torch.bool)
        fixed[order[:self.n_center]] = True
        self.register_buffer("fixed", fixed)
        self.register_buffer("order", order)  # tie-break of the evaluation mask: nearest the centre first

        free = self.n_units - self.n_center
        self.full_sampling = self.nominal_rate >= 1.0
        if self.full_sampling:
            free_rate = 1.0
        elif mode == "topk":
            if not self.n_center < self.k:
                raise ValueError(f"rate={self.nominal_rate} keeps k={self.k} units: need n_center={self.n_center} < k")
            free_rate = (self.k - self.n_center) / free
        else:
            free_rate = (self.nominal_rate * self.n_units - self.n_center) / free if free else 0.0
            if not 0 < free_rate < 1:
                raise ValueError(f"rate={self.nominal_rate} cannot be reached with n_center={self.n_center} "
                                 f"always-on units out of {self.n_units}: need n_center < rate * {self.n_units}")
        self.initial_free_rate = free_rate
        logits = torch.zeros(self.n_units, 2)
        if not self.full_sampling and free_rate < 1:
            logits[:, SAMPLE_COLUMN] = init_logit(free_rate)
        self.logits = nn.Parameter(logits)
        # a frozen sampler trains and evaluates with one fixed mask (see freeze())
        self.register_buffer("frozen_units", torch.zeros(self.n_units))
        self.register_buffer("is_frozen", torch.tensor(False))
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.last_draw_rate = float("nan")
        self.reset_record()

    # -- configuration ------------------------------------------------------------------------

    @property
    def temperature(self) -> float:
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = checks.positive_number(value, "temperature")

    def reseed(self, seed: int) -> None:
        """Restart the Gumbel noise stream from ``seed``."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, rate={self.nominal_rate}, mode={self.mode!r}, unit={self.unit!r}, "
                f"temperature={self.temperature}, n_center={self.n_center}, per_sample={self.per_sample}")

    # -- what training used -------------------------------------------------------------------

    def reset_record(self) -> None:
        """Forget the masks and unit counts recorded in training so far."""
        self.training_masks: set[bytes] = set()
        self.draw_count_range: tuple[int, int] | None = None

    def _record(self, units: torch.Tensor) -> None:
        counts = units.detach().sum(dim=-1)
        low, high = int(counts.min().round()), int(counts.max().round())
        if self.draw_count_range is not None:
            low, high = min(low, self.draw_count_range[0]), max(high, self.draw_count_range[1])
        self.draw_count_range = (low, high)
        self.training_masks.update(_pack(units))

    def seen_in_training(self, units: torch.Tensor | None = None) -> bool:
        """Whether the 0/1 unit mask ``units`` (default: the evaluation mask) was used in a training pass."""
        units = self.eval_units() if units is None else units
        return _pack(units.reshape(1, -1))[0] in self.training_masks

    # -- probabilities and masks --------------------------------------------------------------

    def log_odds(self) -> torch.Tensor:
        """``logits[:, 0] - logits[:, 1]`` per unit (+inf for always-on units)."""
        odds = self.logits[:, SAMPLE_COLUMN] - self.logits[:, 1 - SAMPLE_COLUMN]
        if self.full_sampling:
            return torch.full_like(odds, math.inf)
        return odds.masked_fill(self.fixed, math.inf)

    def probabilities(self) -> torch.Tensor:
        """Sampling probability of each unit: ``softmax(logits)[:, 0]`` in Bernoulli mode; in top-k mode the
        same quantity rescaled so that it sums to ``k`` (a display of the learned preference, not an exact
        inclusion probability); 1 for always-on units."""
        if self.mode == "bernoulli" or self.full_sampling:
            return torch.sigmoid(self.log_odds())
        free = ~self.fixed
        raw = torch.sigmoid(self.log_odds()[free])
        scaled = raw * (self.k - self.n_center) / raw.sum().clamp_min(_TINY)
        out = torch.ones(self.n_units, device=self.logits.device, dtype=raw.dtype)
        out[free] = scaled.clamp(max=1.0)
        return out

    def expected_rate(self) -> float:
        """Mean sampling probability over all units: the rate a training draw has on average (``k / U``
        exactly in top-k mode)."""
        if self.mode == "topk" and not self.full_sampling:
            return self.k / self.n_units
        return float(self.probabilities().detach().mean())

    def rate_penalty(self) -> torch.Tensor:
        """``(mean probability - nominal rate)**2``: add ``lambda * rate_penalty()`` to hold the rate."""
        return (self.probabilities().mean() - self.nominal_rate) ** 2

    def _to_image_shape(self, units: torch.Tensor) -> torch.Tensor:
        """(..., U) unit values -> (..., H, 1) for lines or (..., H, W) for points."""
        h, w = self.shape
        return units.reshape(*units.shape[:-1], h, 1 if self.unit == "line" else w)

    def _gumbel(self, count: int, columns: int, generator: torch.Generator | None) -> torch.Tensor:
        shape = (count, self.n_units, columns) if columns > 1 else (count, self.n_units)
        uniform = torch.rand(shape, generator=generator or self.generator).to(self.logits.device)
        return -torch.log(-torch.log(uniform.clamp_min(_TINY)))  # torch.rand < 1, so both logs are finite

    def sample_units(self, count: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` training draws, (count, U), values exactly 0/1, straight-through gradients to the logits.

        Bernoulli mode: one hard Gumbel-softmax per unit. Top-k mode: exactly ``k`` units per draw. The
        noise comes from the layer's generator (or ``generator``).
        """
        if self.full_sampling:
            return torch.ones(count, self.n_units, device=self.logits.device)
        if self.mode == "topk":
            return self._sample_top_k(count, generator)
        gumbel = self._gumbel(count, 2, generator)
        y_soft = torch.softmax((self.logits + gumbel) / self.temperature, dim=-1)
        y_hard = nn.functional.one_hot(y_soft.argmax(dim=-1), 2).to(y_soft.dtype)
        y = y_hard - y_soft.detach() + y_soft
        units = y[..., SAMPLE_COLUMN]
        return torch.where(self.fixed, torch.ones_like(units), units)

    def _sample_top_k(self, count: int, generator: torch.Generator | None) -> torch.Tensor:
        free = ~self.fixed
        k_free = self.k - self.n_center
        odds = self.log_odds()[free]
        scores = odds + self._gumbel(count, 1, generator)[:, free]
        hard = torch.zeros_like(scores)
        hard.scatter_(-1, scores.detach().topk(k_free, dim=-1).indices, 1.0)
        soft = relaxed_top_k(scores, k_free, self.temperature)
        y = hard - soft.detach() + soft
        units = torch.ones(count, self.n_units, device=y.device, dtype=y.dtype)
        units = units.masked_scatter(free.expand(count, -1), y)
        return units

    def eval_units(self, rate: float | None = None) -> torch.Tensor:
        """Deterministic 0/1 mask over units: the frozen mask if :meth:`freeze` was called, else the top ``k``
        by log-odds (always-on first, ties nearest the centre); ``k`` is the sampler's own in top-k mode and
        ``round(rate * U)`` (``rate`` defaults to the current :meth:`expected_rate`) in Bernoulli mode."""
        if bool(self.is_frozen) and rate is None:
            return self.frozen_units.clone()
        if self.mode == "topk" and rate is None:
            count = self.k
        else:
            rate = self.expected_rate() if rate is None else check_rate(rate)
            count = unit_count(rate, self.n_units)
        count = max(count, self.n_center)
        order = self.order.cpu()
        odds = self.log_odds().detach().cpu()[order]
        ranked = order[torch.sort(-odds, stable=True).indices]
        mask = torch.zeros(self.n_units, device=self.logits.device)
        mask[ranked[:count]] = 1.0
        return mask

    def freeze(self) -> None:
        """Fix the mask to the current evaluation (top-k) mask, in training as in evaluation; stop the
        logits' gradients. Used to fine-tune the classifier on the mask it will be evaluated with."""
        units = self.eval_units()
        self.frozen_units.copy_(units)
        self.is_frozen.fill_(True)
        self.logits.requires_grad_(False)

    def mask(self) -> torch.Tensor:
        """The evaluation mask in image layout, (H, 1) or (H, W)."""
        return self._to_image_shape(self.eval_units())

    def rates(self) -> dict[str, float]:
        """``nominal``, ``expected``, ``last_draw`` (nan before any training draw) and ``eval`` rates."""
        return {"nominal": self.nominal_rate, "expected": self.expected_rate(),
                "last_draw": self.last_draw_rate, "eval": float(self.eval_units().mean())}

    # -- forward ------------------------------------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise ValueError(f"KSpaceSampler expects a (B, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"KSpaceSampler was built for images of size {self.shape}, got {tuple(x.shape[-2:])}")
        if x.is_complex():
            raise ValueError("KSpaceSampler expects real (magnitude) images, got a complex tensor")

    def sampled(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``x`` through masks drawn as in training (one per image) from ``generator``, without recording
        them: the averaged evaluation protocol (score the test set under several such draws)."""
        self._check_input(x)
        units = self.sample_units(x.shape[0] if self.per_sample else 1, generator=generator).detach()
        return apply_mask(x, self._to_image_shape(units)[:, None].to(x.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if self.training and not bool(self.is_frozen):
            units = self.sample_units(x.shape[0] if self.per_sample else 1)
            self.last_draw_rate = float(units.detach().mean())
            self._record(units)
            mask = self._to_image_shape(units)[:, None]          # (B or 1, 1, H, 1 or W)
        else:
            units = self.eval_units()
            if self.training:
                self.last_draw_rate = float(units.mean())
                self._record(units[None])
            mask = self._to_image_shape(units)
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


class KSpaceClassifier(nn.Module):
    """A k-space sampler (learned or fixed) in front of a classifier network: ``net(sampler(x))``."""

    def __init__(self, sampler: nn.Module, net: nn.Module):
        super().__init__()
        self.sampler = sampler
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.sampler(x))

    def forward_sampled(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``net`` on ``x`` through masks drawn as in training (see :meth:`KSpaceSampler.sampled`)."""
        if not isinstance(self.sampler, KSpaceSampler):
            return self(x)
        return self.net(self.sampler.sampled(x, generator))
