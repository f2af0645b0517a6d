"""Shared statistics: t and bootstrap intervals of a mean, Spearman's rho with a bootstrap interval, Holm.

- :func:`interval` -- mean and two-sided t confidence interval of a small sample (NaN bounds for n < 2);
- :func:`bootstrap_mean` -- mean and percentile bootstrap interval of the mean of one or more paired samples
  (resampling the same items for all of them, e.g. the test slices of two trials);
- :func:`spearman_bootstrap` -- Spearman's rho with a percentile bootstrap interval over pairs;
- :func:`holm` -- Holm's step-down rejections of a family of p-values.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from glassbox.core import checks


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t interval of the mean over independent pairs (NaN bounds for one value)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def spearman_bootstrap(x: Sequence[float], y: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                       level: float = 0.95) -> dict[str, float]:
    """Spearman's rho of (x, y) with a percentile bootstrap interval over the points (resampled with replacement).

    Resamples in which x or y is constant have no rho and are skipped; ``n_valid`` says how many counted.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if x.size < 3:
        raise ValueError(f"a rank correlation needs at least 3 finite points, got {x.size}")
    rho, p = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(checks.integer(n_boot, "n_boot", 1)):
        idx = rng.integers(0, x.size, x.size)
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            boots.append(stats.spearmanr(x[idx], y[idx])[0])
    lo, hi = (np.quantile(boots, [(1 - level) / 2, (1 + level) / 2]) if boots else (math.nan, math.nan))
    return {"rho": float(rho), "p": float(p), "lo": float(lo), "hi": float(hi), "n": int(x.size),
            "n_valid": len(boots)}


def bootstrap_mean(*samples: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
                   ) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of ``samples[0] - samples[1]`` (two samples: a paired difference) or of
    ``samples[0]`` (one sample), with a percentile bootstrap interval over the items (resampled with
    replacement, the same items for every sample)."""
    if len(samples) not in (1, 2):
        raise ValueError(f"bootstrap_mean takes one sample or two paired samples, got {len(samples)}")
    arrays = [np.asarray(x, dtype=np.float64) for x in samples]
    if any(a.ndim != 1 for a in arrays) or len({a.size for a in arrays}) != 1 or arrays[0].size < 2:
        raise ValueError("samples must be 1-D, of equal length and hold at least 2 items")
    values = arrays[0] - arrays[1] if len(arrays) == 2 else arrays[0]
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_mean got NaN or infinite values")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(checks.integer(n_boot, "n_boot", 10), values.size))
    means = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(values.mean()), float(lo), float(hi)


def holm(p_values: Sequence[float], alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down procedure: which hypotheses of the family are rejected at family-wise level ``alpha``.

    NaN p-values (a test that could not be run) are never rejected and do not count in the family size.
    """
    p = np.asarray(p_values, dtype=np.float64)
    reject = np.zeros(p.shape, dtype=bool)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    for rank, index in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        if p[index] > alpha / (m - rank):
            break
        reject[index] = True
    return reject
