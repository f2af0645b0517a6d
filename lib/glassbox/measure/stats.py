"""Shared statistics: a t interval of a mean and a bootstrap interval of Spearman's rank correlation.

- :func:`interval` -- mean and two-sided t confidence interval of a small sample (NaN bounds for n < 2);
- :func:`spearman_bootstrap` -- Spearman's rho with a percentile bootstrap interval over pairs.
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
