"""Chance levels: the value each similarity metric takes for *unrelated* representations of the same shape.

A similarity number means little without its chance level: at N = 2604 samples the mean canonical
correlation of independent Gaussian features is 0.13 (64 channels) to 0.38 (512 channels), and the cosine
of unrelated ReLU features is about 1/pi. Three ways to get one, in order of preference:

- :func:`chance_for` -- for a computed :class:`~glassbox.measure.similarity.Similarity`: the exact mean over all
  re-pairings of samples where it has a closed form (linear CKA: sqrt(beta_x beta_y)/(N-1) with
  beta = (tr K)^2/||K||_F^2 of the centred Gram, Kazi-Aoual et al. 1995's RV-coefficient moment; debiased and
  minibatch CKA: 0, since the unbiased HSIC of re-paired samples has expectation 0; cosine:
  mean(x_i/|x_i|) . mean(y_j/|y_j|)), the Gaussian law for CCA/SVCCA (CCA is invariant to invertible linear
  maps, so only N and the kept dimensions matter), and otherwise a permutation baseline.
- :func:`chance_level` -- from the shape alone, for independent isotropic Gaussian features: closed forms
  (linear CKA sqrt(dx dy / ((N+dx)(N+dy))); R^2_CCA = max(dx, dy)/(N-1), exact; mean rho and Procrustes
  from the Wachter and Marchenko-Pastur limit laws), else a simulation with a stated number of draws.
  For CCA and SVCCA below 20 kept dimensions: :func:`cca_chance_exact`, draws from the exact law of the
  canonical correlations (no N x k data needed, so precise and fast at any N).
- :func:`k_at_chance` -- the number of kept dimensions k at which a given mean canonical correlation is the
  chance level (kx = ky = k): the yardstick for an SVCCA value whose SVD step kept an unknown k.
- :func:`permutation_chance` -- the metric recomputed on ``n_draws`` random re-pairings of samples (rows of
  y shuffled, in blocks of ``rows_per_sample`` rows for the ``positions`` reduction): mean, std and draws.
- :func:`linear_cka_permutation_test` -- the same for linear CKA, thousands of draws cheaply (one centred
  Gram matrix per side, re-indexed per draw), with the one-sided p-value; :func:`cosine_permutation_test`
  likewise for Qu et al.'s cosine (one N x N matrix of sample-to-sample cosines).

The permutation null keeps each representation's own structure (spectrum, sparsity, channel means) and
breaks only the correspondence of samples; it is the right "unrelated" for comparing two trials.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import numpy as np
import torch
from scipy import integrate

from glassbox.measure import similarity as sim
from glassbox.measure.similarity import (
    ArrayLike,
    DegenerateFeaturesError,
    Similarity,
    SimilarityInputError,
    TooFewSamplesError,
)

# limit laws are used from this many dimensions on (checked against simulation in the tests)
_MIN_DIMS_FOR_LIMIT_LAW = 20


class NoClosedFormError(SimilarityInputError):
    """The chance level needs the data (a permutation baseline), not just the shape."""


@dataclass(frozen=True)
class Chance:
    """Expected value of a metric for unrelated representations, and how it was obtained."""

    mean: float
    std: float | None
    method: str
    n_draws: int | None = None
    draws: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __float__(self) -> float:
        return float(self.mean)

    def z_score(self, observed: float | Similarity) -> float | None:
        """(observed - mean) / std, when the chance level has a spread."""
        if not self.std:
            return None
        return (float(observed) - self.mean) / self.std


METRICS: dict[str, Callable[..., Similarity]] = {
    "cosine": sim.cosine,
    "matched_cosine": sim.matched_cosine,
    "cca": sim.cca,
    "svcca": sim.svcca,
    "pwcca": sim.pwcca,
    "linear_cka": sim.linear_cka,
    "linear_cka_debiased": partial(sim.linear_cka, debiased=True),
    "minibatch_cka": sim.minibatch_cka,
    "procrustes": sim.procrustes,
}


def _metric_fn(metric: str | Callable[..., Any]) -> Callable[..., Any]:
    if callable(metric):
        return metric
    if metric not in METRICS:
        raise SimilarityInputError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)} or pass a callable")
    return METRICS[metric]


# --- limit laws ---------------------------------------------------------------------------------

def wachter_mean_rho(n: int, dims_x: int, dims_y: int) -> float:
    """Mean canonical correlation of independent Gaussian data in the large-dimension limit (Wachter 1980).

    The squared canonical correlations of p- and q-dimensional data (p <= q) over m = N - 1 centred samples
    follow the Wachter law on [l-, l+], l+- = (sqrt(c2 (1 - c1)) +- sqrt(c1 (1 - c2)))^2 with c1 = p/m,
    c2 = q/m, density sqrt((l - l-)(l+ - l)) / (2 pi c1 l (1 - l)); this returns E[sqrt(l)].
    """
    p, q = sorted((dims_x, dims_y))
    m = n - 1
    if p + q >= m:
        raise TooFewSamplesError(f"the CCA chance level needs N > dims_x + dims_y + 1 = {p + q + 1}, got N={n}")
    c1, c2 = p / m, q / m
    lo = (math.sqrt(c2 * (1 - c1)) - math.sqrt(c1 * (1 - c2))) ** 2
    hi = (math.sqrt(c2 * (1 - c1)) + math.sqrt(c1 * (1 - c2))) ** 2

    def density(lam: float) -> float:
        return math.sqrt(max((lam - lo) * (hi - lam), 0.0)) / (2 * math.pi * c1 * lam * (1 - lam))

    mass = integrate.quad(density, lo, hi, limit=200)[0]
    return integrate.quad(lambda lam: math.sqrt(lam) * density(lam), lo, hi, limit=200)[0] / mass


def marchenko_pastur_procrustes(n: int, dims_x: int, dims_y: int) -> float:
    """Procrustes similarity of independent isotropic Gaussians: sqrt(p/(N-1)) E_MP[sqrt(x)], p <= q.

    X^T Y / sqrt(N-1) is close to a p x q Gaussian matrix whose squared singular values / q follow the
    Marchenko-Pastur law with ratio p/q; valid when p, q << N (checked against simulation in the tests).
    """
    p, q = sorted((dims_x, dims_y))
    lam = p / q
    lo, hi = (1 - math.sqrt(lam)) ** 2, (1 + math.sqrt(lam)) ** 2

    def density(x: float) -> float:
        return math.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * math.pi * lam * x)

    mass = integrate.quad(density, lo, hi, limit=200)[0]
    mean_root = integrate.quad(lambda x: math.sqrt(x) * density(x), lo, hi, limit=200)[0] / mass
    return math.sqrt(p / (n - 1)) * mean_root


# --- the exact law of the canonical correlations ---------------------------------------------------

def _wishart(rng: np.random.Generator, draws: int, p: int, dof: int) -> np.ndarray:
    """``draws`` p x p Wishart(dof, I) matrices by Bartlett's decomposition (L L^T, L lower triangular)."""
    lower = np.zeros((draws, p, p))
    rows, cols = np.tril_indices(p, -1)
    lower[:, rows, cols] = rng.standard_normal((draws, rows.size))
    diag = np.arange(p)
    lower[:, diag, diag] = np.sqrt(rng.chisquare(dof - diag, size=(draws, p)))
    return lower @ np.transpose(lower, (0, 2, 1))


def cca_chance_exact(n: int, dims_x: int, dims_y: int, *, n_draws: int | None = None,
                     seed: int | np.random.Generator = 0) -> Chance:
    """Mean canonical correlation of independent Gaussian N x dims_x and N x dims_y data, from its exact law.

    With p = min(dims), q = max(dims) and m = N - 1 centred samples, the squared canonical correlations
    are the eigenvalues of (A + B)^-1 A with A ~ Wishart_p(q, I) and B ~ Wishart_p(m - q, I) independent
    (given Y, X^T P_Y X and X^T (I - P_Y) X are independent Wisharts). Each draw costs a p x p
    eigenproblem instead of an N x (p + q) CCA. ``n_draws`` defaults to enough draws for a standard error
    of about 1e-4 (``max(200, 20000 // p**2 * 10)`` capped at 4000). SVCCA's chance is this at its *kept*
    dimensions (CCA is invariant to invertible linear maps of each side).
    """
    p, q = sorted((int(dims_x), int(dims_y)))
    m = int(n) - 1
    if p < 1:
        raise SimilarityInputError(f"dims must be >= 1, got {dims_x} and {dims_y}")
    if p + q >= m:
        raise TooFewSamplesError(f"the CCA chance level needs N > dims_x + dims_y + 1 = {p + q + 1}, got N={n}")
    draws = n_draws if n_draws is not None else int(min(4000, max(200, 200000 // (p * p))))
    if draws < 2:
        raise SimilarityInputError(f"n_draws must be >= 2 to give a spread, got {draws}")
    rng = np.random.default_rng(seed)
    a, b = _wishart(rng, draws, p, q), _wishart(rng, draws, p, m - q)
    inverse = np.linalg.inv(np.linalg.cholesky(a + b))
    lam = np.linalg.eigvalsh(inverse @ a @ np.transpose(inverse, (0, 2, 1)))
    values = np.sqrt(np.clip(lam, 0.0, 1.0)).mean(axis=1)
    return Chance(float(values.mean()), float(values.std(ddof=1)),
                  f"exact law of the canonical correlations of independent Gaussians ({draws} Bartlett draws)",
                  draws, values)


def cca_chance_curve(n: int, k_max: int) -> np.ndarray:
    """Chance mean canonical correlation at kx = ky = k for k = 1..k_max (index k - 1): the exact law below
    20 dimensions, the Wachter limit law from 20 on (within 0.5 % of the exact value there)."""
    k_max = min(int(k_max), (int(n) - 3) // 2)
    values = []
    for k in range(1, k_max + 1):
        values.append(cca_chance_exact(n, k, k, seed=k).mean if k < _MIN_DIMS_FOR_LIMIT_LAW
                      else wachter_mean_rho(n, k, k))
    return np.array(values)


def k_at_chance(value: float, n: int, *, k_max: int = 1024, curve: np.ndarray | None = None) -> int | None:
    """The smallest k (kx = ky = k) whose chance mean canonical correlation at ``n`` samples reaches ``value``.

    An SVCCA value that kept fewer than this many directions on each side is above chance; one that kept
    more is below. None if even ``k_max`` (or the largest k that ``n`` allows) stays below ``value``.
    ``curve`` is a precomputed :func:`cca_chance_curve` (saves the work for many values).
    """
    curve = cca_chance_curve(n, k_max) if curve is None else np.asarray(curve)
    reached = np.flatnonzero(curve >= float(value))
    return int(reached[0]) + 1 if reached.size else None


# --- chance from the shape ----------------------------------------------------------------------

def simulate_gaussian(metric: str | Callable[..., Any], n: int, dims_x: int, dims_y: int, *,
                      n_draws: int = 200, seed: int | np.random.Generator = 0, **metric_kwargs: Any) -> Chance:
    """The metric on ``n_draws`` pairs of independent N(0, 1) matrices (N x dims_x, N x dims_y)."""
    fn = _metric_fn(metric)
    if n_draws < 2:
        raise SimilarityInputError(f"n_draws must be >= 2 to give a spread, got {n_draws}")
    rng = np.random.default_rng(seed)
    draws = np.array([float(fn(rng.standard_normal((n, dims_x)), rng.standard_normal((n, dims_y)),
                               **metric_kwargs)) for _ in range(n_draws)])
    return Chance(float(draws.mean()), float(draws.std(ddof=1)),
                  f"simulation: {n_draws} draws of independent isotropic Gaussians", n_draws, draws)


def chance_level(metric: str, n: int, dims_x: int, dims_y: int | None = None, *, n_draws: int = 200,
                 seed: int = 0) -> Chance:
    """Chance level of ``metric`` for independent isotropic Gaussian N x dims features.

    Closed forms where they exist (see the module docs), else a seeded simulation with ``n_draws`` draws
    (the method says which). For SVCCA pass the *kept* dimensions. Cosine-type metrics depend on the
    feature distribution (ReLU features sit far above 0), so they raise :class:`NoClosedFormError`.
    """
    dims_y = dims_x if dims_y is None else dims_y
    if n < 2 or dims_x < 1 or dims_y < 1:
        raise SimilarityInputError(f"need n >= 2 and dims >= 1, got n={n}, dims_x={dims_x}, dims_y={dims_y}")
    small = min(dims_x, dims_y) < _MIN_DIMS_FOR_LIMIT_LAW
    if metric == "linear_cka":
        return Chance(math.sqrt(dims_x * dims_y / ((n + dims_x) * (n + dims_y))), None,
                      "closed form sqrt(dx dy / ((N+dx)(N+dy))) (ratio of expectations, isotropic Gaussians)")
    if metric in ("linear_cka_debiased", "minibatch_cka"):
        return Chance(0.0, None, "exact: the unbiased HSIC of independent features has expectation 0")
    if metric == "cca_r2":
        if dims_x + dims_y >= n - 1:
            raise TooFewSamplesError(f"R^2_CCA chance needs N > dims_x + dims_y + 1, got N={n}")
        return Chance(max(dims_x, dims_y) / (n - 1), None, "exact: E[mean rho^2] = max(dx, dy)/(N-1)")
    if metric in ("cca", "svcca"):
        if not small:
            return Chance(wachter_mean_rho(n, dims_x, dims_y), None,
                          "limit law (Wachter 1980) of the canonical correlations of independent Gaussians")
        return cca_chance_exact(n, dims_x, dims_y, n_draws=max(n_draws, 200), seed=seed)
    if metric == "procrustes":
        if not small and max(dims_x, dims_y) <= 0.1 * n:
            return Chance(marchenko_pastur_procrustes(n, dims_x, dims_y), None,
                          "limit law (Marchenko-Pastur) for independent isotropic Gaussians")
        return simulate_gaussian("procrustes", n, dims_x, dims_y, n_draws=n_draws, seed=seed)
    if metric == "pwcca":
        return simulate_gaussian("pwcca", n, dims_x, dims_y, n_draws=n_draws, seed=seed)
    if metric in ("cosine", "matched_cosine"):
        raise NoClosedFormError(f"the chance level of {metric} depends on the feature distribution (1/pi for "
                                "ReLU(N(0,1)), ~0.7 for GAP of BN-ReLU layers); use chance_for(result, x, y) "
                                "or permutation_chance")
    raise SimilarityInputError(f"unknown metric {metric!r} for chance_level")


# --- chance from the data -----------------------------------------------------------------------

def _row_permutation(n_rows: int, rows_per_sample: int, rng: np.random.Generator) -> np.ndarray:
    if rows_per_sample < 1 or n_rows % rows_per_sample:
        raise SimilarityInputError(f"rows_per_sample={rows_per_sample} must divide the {n_rows} rows")
    groups = rng.permutation(n_rows // rows_per_sample)
    return (groups[:, None] * rows_per_sample + np.arange(rows_per_sample)[None, :]).ravel()


def permutation_chance(metric: str | Callable[..., Any], x: ArrayLike, y: ArrayLike, *, n_draws: int = 100,
                       seed: int | np.random.Generator = 0, rows_per_sample: int = 1,
                       **metric_kwargs: Any) -> Chance:
    """The metric on ``n_draws`` random re-pairings of samples: y's rows shuffled, x's kept.

    ``metric`` is a name from :data:`METRICS` or a callable ``(x, y, **kwargs) -> float | Similarity``.
    ``rows_per_sample`` > 1 shuffles whole samples of the ``positions`` reduction (H*W rows each).
    """
    fn = _metric_fn(metric)
    if n_draws < 2:
        raise SimilarityInputError(f"n_draws must be >= 2 to give a spread, got {n_draws}")
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise SimilarityInputError(f"x and y must hold the same samples: N={n} vs N={int(y.shape[0])}")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_draws):
        order = _row_permutation(n, rows_per_sample, rng)
        yp = y[torch.as_tensor(order, device=y.device)] if isinstance(y, torch.Tensor) else y[order]
        draws.append(float(fn(x, yp, **metric_kwargs)))
    values = np.array(draws)
    blocks = f" in blocks of {rows_per_sample} rows" if rows_per_sample > 1 else ""
    return Chance(float(values.mean()), float(values.std(ddof=1)),
                  f"permutation: {n_draws} random re-pairings of samples{blocks}", n_draws, values)


def linear_cka_permutation_test(x: ArrayLike, y: ArrayLike, *, n_draws: int = 999, debiased: bool = False,
                                 seed: int | np.random.Generator = 0) -> tuple[float, Chance, float]:
    """(observed linear CKA, its permutation null, one-sided p = (1 + #{null >= observed}) / (1 + n_draws)).

    Re-pairing samples permutes the rows and columns of y's centred Gram matrix, so each draw is an
    N x N re-indexing instead of a new CKA; the draws are the ones :func:`permutation_chance` makes with
    the same ``seed`` (same values to rounding). ``debiased`` uses the unbiased HSIC (Song et al. 2012) as
    :func:`glassbox.measure.similarity.linear_cka` does: with zero-diagonal Grams K, L,
    HSIC = [tr(KL) + 1'K1 1'L1 / ((n-1)(n-2)) - 2/(n-2) 1'KL1] / (n(n-3)); only tr(KL) and 1'KL1 change
    under a re-pairing.
    """
    if n_draws < 2:
        raise SimilarityInputError(f"n_draws must be >= 2 to give a spread, got {n_draws}")
    xa, ya = sim.as_float64(x, "x"), sim.as_float64(y, "y")
    xa = xa.cpu().numpy() if isinstance(xa, torch.Tensor) else np.asarray(xa)
    ya = ya.cpu().numpy() if isinstance(ya, torch.Tensor) else np.asarray(ya)
    if xa.ndim != 2 or ya.ndim != 2 or xa.shape[0] != ya.shape[0]:
        raise SimilarityInputError(f"x and y must be N x M matrices of the same samples, got {xa.shape} and {ya.shape}")
    n = xa.shape[0]
    xc, yc = xa - xa.mean(0), ya - ya.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    if debiased:
        if n < 4:
            raise TooFewSamplesError(f"debiased CKA needs N >= 4, got {n}")
        np.fill_diagonal(k, 0.0)
        np.fill_diagonal(l, 0.0)
        ks, ls = k.sum(1), l.sum(1)

        def hsic(trace: float, cross: float, a_sum: float, b_sum: float) -> float:
            return (trace + a_sum * b_sum / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3))

        kk = hsic(float(np.sum(k * k)), float(ks @ ks), float(ks.sum()), float(ks.sum()))
        ll = hsic(float(np.sum(l * l)), float(ls @ ls), float(ls.sum()), float(ls.sum()))
        if not kk > 0 or not ll > 0:
            raise DegenerateFeaturesError("debiased CKA is undefined: a side has no positive unbiased HSIC")
        norm = math.sqrt(kk * ll)

        def value(order: np.ndarray) -> float:
            return hsic(float(np.sum(k * l[np.ix_(order, order)])), float(ks @ ls[order]), float(ks.sum()),
                        float(ls.sum())) / norm
    else:
        norm = float(np.linalg.norm(k) * np.linalg.norm(l))
        if norm == 0:
            raise DegenerateFeaturesError("linear CKA is undefined for constant features")

        def value(order: np.ndarray) -> float:
            return float(np.sum(k * l[np.ix_(order, order)]) / norm)
    observed = value(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = np.array([value(_row_permutation(n, 1, rng)) for _ in range(n_draws)])
    p = float((1 + np.sum(draws >= observed - 1e-12)) / (1 + n_draws))
    return observed, Chance(float(draws.mean()), float(draws.std(ddof=1)),
                            f"permutation: {n_draws} random re-pairings of samples", n_draws, draws), p


def cosine_permutation_test(x: ArrayLike, y: ArrayLike, *, n_draws: int = 999,
                            seed: int | np.random.Generator = 0) -> tuple[float, Chance, float]:
    """(observed cosine, its permutation null, one-sided p) for :func:`glassbox.measure.similarity.cosine`.

    With G[i, j] = cos(x_i, y_j), the cosine of a re-pairing pi is mean_i G[i, pi(i)]: each draw costs N
    look-ups. The draws are the ones :func:`permutation_chance` makes with the same ``seed``.
    """
    if n_draws < 2:
        raise SimilarityInputError(f"n_draws must be >= 2 to give a spread, got {n_draws}")
    observed = float(sim.cosine(x, y))
    xa = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    ya = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    g = (xa / np.linalg.norm(xa, axis=1, keepdims=True)) @ (ya / np.linalg.norm(ya, axis=1, keepdims=True)).T
    rng = np.random.default_rng(seed)
    rows = np.arange(g.shape[0])
    draws = np.array([g[rows, _row_permutation(g.shape[0], 1, rng)].mean() for _ in range(n_draws)])
    p = float((1 + np.sum(draws >= observed - 1e-12)) / (1 + n_draws))
    return observed, Chance(float(draws.mean()), float(draws.std(ddof=1)),
                            f"permutation: {n_draws} random re-pairings of samples", n_draws, draws), p


def chance_for(result: Similarity, x: ArrayLike | None = None, y: ArrayLike | None = None, *,
               method: Literal["auto", "permutation"] = "auto", n_draws: int = 100,
               seed: int | np.random.Generator = 0, rows_per_sample: int = 1, **metric_kwargs: Any) -> Chance:
    """The chance level matching a computed result: a closed form where one exists, else permutations.

    ``x``, ``y`` (the data the result came from) are needed for the permutation baseline (PWCCA,
    Procrustes, matched cosine, any metric with ``method="permutation"``, and CKA with
    ``rows_per_sample`` > 1, whose exact formula assumes row-level re-pairing).
    """
    metric, n = result.metric, result.n
    closed = method == "auto" and rows_per_sample == 1
    if closed and metric == "linear_cka":
        bx, by = result.extra["beta_x"], result.extra["beta_y"]
        return Chance(math.sqrt(bx * by) / (n - 1), None,
                      "exact mean over re-pairings of samples, sqrt(beta_x beta_y)/(N-1) (Kazi-Aoual et al. 1995)")
    if closed and metric in ("linear_cka_debiased", "minibatch_cka"):
        return Chance(0.0, None, "exact: the unbiased HSIC of re-paired samples has expectation 0")
    if closed and metric == "cosine":
        return Chance(result.extra["permutation_mean"], None,
                      "exact mean over re-pairings of samples: mean(x_i/|x_i|) . mean(y_j/|y_j|)")
    if closed and metric in ("cca", "svcca"):
        return chance_level("cca", n, result.kept_x, result.kept_y, n_draws=n_draws,
                            seed=seed if isinstance(seed, int) else 0)
    if x is None or y is None:
        raise NoClosedFormError(f"{metric} has no closed-form chance level here; pass the data (x, y) for a "
                                "permutation baseline")
    kwargs = dict(metric_kwargs)
    if metric == "svcca":
        kwargs.setdefault("keep", result.extra["keep"])
        kwargs.setdefault("dims", result.extra["dims"])
        kwargs.setdefault("spectrum", result.extra["spectrum"])
    return permutation_chance(metric, x, y, n_draws=n_draws, seed=seed, rows_per_sample=rows_per_sample, **kwargs)
