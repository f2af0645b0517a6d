"""Measuring reconstructed invariances: samples, their pixel-wise spread, and the checks that say how far to trust them.

Rombach et al.'s method (as adapted to CT by Eulig et al.) draws images ``D(t^-1(v | z))`` that a layer cannot
tell from ``x``; where they vary, the layer is blind. This module measures one test image at a time:

- :func:`decode_samples` -- ``n`` samples for one representation ``z``;
- :func:`window_hu` -- network units to HU clipped to the analysed window, the scale of every number here;
- :func:`spread_map` -- the pixel-wise standard deviation over the samples (HU);
- :func:`centred_cosine` -- the similarity of two representations after removing the mean feature map
  (Rombach et al.'s consistency check: ``Phi`` of a sample should look like ``z``);
- :func:`rmse_hu` -- per-image RMSE in the window.

**The floor.** Even a map with no invariance at all (an injective one: the identity, or a convolution from one
channel to many) gets a non-zero spread from this method: the VAE's posterior is not a point, and the cINN is
not perfect. That spread is the method's floor; an invariance is the part of a layer's spread above it
(:func:`excess_over_floor`, paired over test images).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from glassbox.measure.stats import interval

HU_SCALE = 1000.0
HU_OFFSET = 1000.0


def window_hu(x: Tensor, window: tuple[float, float]) -> Tensor:
    """Network units ``(HU + 1000) / 1000`` -> HU clipped to the window ``(level, width)`` (float64)."""
    level, width = window
    hu = torch.as_tensor(x).double() * HU_SCALE - HU_OFFSET
    return hu.clamp(level - width / 2, level + width / 2)


def rmse_hu(a: Tensor, b: Tensor, window: tuple[float, float]) -> Tensor:
    """Per-image RMSE (HU) between two (N, 1, h, w) stacks in network units, both clipped to ``window``."""
    if a.shape != b.shape:
        raise ValueError(f"the two stacks must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return (window_hu(a, window) - window_hu(b, window)).pow(2).flatten(1).mean(1).sqrt()


def centred_cosine(a: Tensor, b: Tensor, centre: Tensor) -> Tensor:
    """Cosine similarity of ``a - centre`` and ``b - centre`` per sample (flattened); centre = mean feature map."""
    a, b = (a - centre).flatten(1).double(), (b - centre).flatten(1).double()
    return F.cosine_similarity(a, b, dim=1)


def spread_map(samples: Tensor, window: tuple[float, float]) -> Tensor:
    """Pixel-wise standard deviation (HU, in ``window``) over a stack of samples (n >= 2, 1, h, w) -> (h, w)."""
    if samples.ndim != 4 or samples.shape[0] < 2:
        raise ValueError(f"samples must be an (n >= 2, 1, h, w) stack, got {tuple(samples.shape)}")
    return window_hu(samples[:, 0], window).std(0)


def decode_samples(inverse: Callable[[Tensor], Tensor], decode: Callable[[Tensor], Tensor], latent_dim: int,
                   n_samples: int, generator: torch.Generator, device: torch.device | str = "cpu",
                   chunk: int = 256) -> Tensor:
    """``decode(inverse(v))`` for ``n_samples`` draws ``v ~ N(0, I)`` from ``generator`` (in chunks), on ``device``."""
    v = torch.randn((int(n_samples), int(latent_dim)), generator=generator)
    with torch.no_grad():
        return torch.cat([decode(inverse(part.to(device))) for part in v.split(chunk)])


def excess_over_floor(spreads: Sequence[float], floors: Sequence[float], level: float = 0.95
                      ) -> tuple[float, float, float]:
    """(mean, low, high) of ``spread - floor`` paired per test image: a t-interval over images."""
    spreads, floors = np.asarray(spreads, dtype=np.float64), np.asarray(floors, dtype=np.float64)
    if spreads.shape != floors.shape or spreads.ndim != 1:
        raise ValueError(f"spreads and floors must be 1-D and paired, got {spreads.shape} and {floors.shape}")
    return interval(spreads - floors, level)


def masked_mean(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean of each (h, w) map over its mask; NaN where a mask selects nothing."""
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps and masks must have the same shape, got {maps.shape} and {masks.shape}")
    counts = masks.reshape(len(masks), -1).sum(1)
    sums = np.where(masks, maps, 0.0).reshape(len(maps), -1).sum(1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
