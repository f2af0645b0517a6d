"""Representation similarity between two sets of features, each number with its convention.

Inputs are N x D matrices (numpy arrays or torch tensors): rows are data points (images, or image
positions for the ``positions`` reduction of :mod:`glassbox.measure.features`), columns are features. All
arithmetic is float64 (float32/float16 inputs are converted first), on the CPU or on the input's GPU.
Every metric returns a :class:`Similarity` that records what it was computed on (metric, reduction,
N, dimensions given and kept) and converts to ``float``. Chance levels live in :mod:`glassbox.measure.chance`.

Conventions (the research note ``similarity.md`` explains why each choice matters):

- ``cosine`` -- Qu et al.'s "CS": per sample i, cos(x_i, y_i) of the *uncentred* feature vectors in
  the given column order; the value is the mean over samples. Not invariant to a permutation of
  channels or to shifts; for non-negative (ReLU) features its chance level is far above 0 (1/pi for
  ReLU(N(0,1)) features).
- ``matched_cosine`` -- y's channels reordered by a Hungarian assignment that maximises the summed
  Pearson correlation of matched channels (Li et al. 2016), then ``cosine``.
- ``cca`` -- canonical correlations rho_1 >= ... >= rho_r of the centred data, r = min(kept_x, kept_y).
  value = mean rho over all r coefficients (Raghu et al.'s rho-bar); ``extra["r2"]`` = mean rho^2
  (Kornblith's R^2_CCA). Directions whose variance is below ``rtol`` x the largest are dropped (dead
  or duplicated channels): they are neither counted as rho = 0 nor allowed to produce NaN, and
  ``kept_x``/``kept_y`` say how many remain. No trailing-coefficient trimming (google/svcca's
  ``threshold=0.98`` "mean" is *not* applied). CCA needs N >= kept_x + kept_y + 1 samples (with fewer,
  some rho are 1 whatever the data); even above that, small N inflates rho -- compare with chance.
- ``svcca`` -- per side, PCA (eigendecomposition of the covariance, i.e. the SVD of the centred data)
  keeping the smallest k whose cumulative *variance* (squared singular values) reaches ``keep`` of the
  total, the crossing component included; then ``cca`` on the kept components, mean rho over
  min(k_x, k_y). ``spectrum="singular_values"`` applies the rule to |s| instead, as Raghu et al. 2017,
  App. A, literally do (it keeps more components); ``dims=k`` keeps a fixed k (tutorial: 20).
- ``pwcca`` -- Morcos et al. 2018 projection weighting with weights from *x*'s canonical variates
  h_i (centred, unit norm): alpha_i proportional to sum_j |<h_i, x_j>| over x's centred neurons x_j;
  value = sum_i alpha_i rho_i. Asymmetric: ``extra["value_y_weighted"]`` has the other direction.
- ``linear_cka`` -- linear CKA of centred features (Kornblith et al. 2019; equal to the RV
  coefficient): ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F). ``debiased=True`` replaces each HSIC by the
  unbiased estimator (Song et al. 2012), exactly as Kornblith's ``debiased=True``; it can be negative.
  Computed from D x D moments when D <= N, else from N x N Gram matrices built in column chunks.
- ``minibatch_cka`` -- Nguyen et al. 2021: mean over minibatches of the unbiased HSIC_1, then the CKA
  ratio of the means. Needs batches of >= 4 samples.
- ``procrustes`` -- orthogonal Procrustes similarity ||X^T Y||_* of centred X, Y scaled to unit
  Frobenius norm; in [0, 1], 1 - value is anatome's "opd", ``extra["angle"]`` = arccos(value)
  (Williams et al. 2021's angular distance).

Invariances (tested): CKA, CCA and Procrustes are unchanged by rotations, channel permutations,
isotropic scaling and shifts; CCA also by any invertible linear map; cosine by none except scaling.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.linalg.blas as _blas
import scipy.linalg.lapack as _lapack
import torch
from scipy.optimize import linear_sum_assignment

ArrayLike = np.ndarray | torch.Tensor
Spectrum = Literal["variance", "singular_values"]
Route = Literal["auto", "features", "gram"]

DEFAULT_RTOL = 1e-10  # relative eigenvalue floor for CCA-type metrics
_ROW_CHUNK = 1 << 16  # rows per float64 chunk when accumulating moments


# --- errors -------------------------------------------------------------------------------------

class SimilarityInputError(ValueError):
    """Input a similarity metric cannot use (shape, NaN, mismatched samples)."""


class TooFewSamplesError(SimilarityInputError):
    """Fewer samples than the metric needs; the message says how many it needs."""


class DegenerateFeaturesError(SimilarityInputError):
    """A representation without variance (every feature constant), so the metric is undefined."""


# --- the result ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Similarity:
    """One similarity value and what it was computed on; ``float(result)`` gives the value."""

    value: float
    metric: str
    n: int
    dims_x: int
    dims_y: int
    kept_x: int | None = None
    kept_y: int | None = None
    reduction: str | None = None
    coefficients: np.ndarray | None = field(default=None, repr=False, compare=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __float__(self) -> float:
        return float(self.value)

    def __format__(self, spec: str) -> str:
        return format(self.value, spec) if spec else str(self)

    def describe(self) -> str:
        """One line: value, metric and what it was computed on."""
        kept = "" if self.kept_x is None else f", kept {self.kept_x}x{self.kept_y}"
        red = "" if self.reduction is None else f", reduction={self.reduction}"
        return f"{self.metric} = {self.value:.4f} (N={self.n}, dims {self.dims_x}x{self.dims_y}{kept}{red})"


# --- backend: numpy/SciPy on the CPU, torch on a GPU --------------------------------------------
# On the CPU, torch's LAPACK (eigh ~10x slower than NumPy's here) and its OpenMP elementwise kernels on a
# shared 2-core machine were the bottleneck (measured), so CPU arrays are float64 numpy arrays and the
# same code runs on float64 torch tensors on a GPU. Only the few functions below know the difference.
# Tests set CPU_BACKEND = "torch" to run the GPU code path on the CPU.
CPU_BACKEND: Literal["numpy", "torch"] = "numpy"
Array = Any  # np.ndarray (CPU) or torch.Tensor (GPU, or CPU when CPU_BACKEND == "torch")


def _device_of(*arrays: Any, device: str | torch.device | None = None) -> torch.device:
    """The device to compute on: the one asked for, else the first tensor's, else the CPU."""
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise SimilarityInputError("device='cuda' was requested but CUDA is not available")
        return dev
    for a in arrays:
        if isinstance(a, torch.Tensor):
            return a.device
    return torch.device("cpu")


def _torch_on(device: torch.device) -> bool:
    return device.type != "cpu" or CPU_BACKEND == "torch"


def _is_torch(a: Any) -> bool:
    return isinstance(a, torch.Tensor)


def _np(a: Array) -> np.ndarray:
    return a.detach().cpu().numpy() if _is_torch(a) else np.asarray(a)


def _zeros(shape: tuple[int, ...], device: torch.device) -> Array:
    if _torch_on(device):
        return torch.zeros(shape, dtype=torch.float64, device=device)
    return np.zeros(shape)


def _eye(k: int, like: Array) -> Array:
    return torch.eye(k, dtype=like.dtype, device=like.device) if _is_torch(like) else np.eye(k)


def _flatnonzero(mask: Array) -> Array:
    return torch.nonzero(mask).flatten() if _is_torch(mask) else np.flatnonzero(mask)


def _reversed(a: Array, axis: int) -> Array:
    return a.flip(axis) if _is_torch(a) else np.flip(a, axis)


def _zero_diagonal(k: Array) -> Array:
    if _is_torch(k):
        return k.clone().fill_diagonal_(0.0)
    k = k.copy()
    np.fill_diagonal(k, 0.0)
    return k


def _scatter(a: Array) -> Array:
    """a^T a in float64 (NumPy recognises the pattern and uses BLAS syrk: half a general product)."""
    return a.T @ a


def _symmetrize_upper(upper: np.ndarray) -> np.ndarray:
    """Full symmetric matrix from one whose strict lower triangle is zero (dsyrk output)."""
    full = upper + upper.T
    full[np.diag_indices_from(full)] = np.diagonal(upper)
    return full


def _eigh(c: Array) -> tuple[Array, Array]:
    """Symmetric eigendecomposition, ascending eigenvalues."""
    return torch.linalg.eigh(c) if _is_torch(c) else np.linalg.eigh(c)


def _eigvalsh(c: Array) -> Array:
    return torch.linalg.eigvalsh(c) if _is_torch(c) else np.linalg.eigvalsh(c)


def _svd(t: Array) -> tuple[Array, Array, Array]:
    return torch.linalg.svd(t, full_matrices=False) if _is_torch(t) else np.linalg.svd(t, full_matrices=False)


def _svdvals(t: Array) -> Array:
    return torch.linalg.svdvals(t) if _is_torch(t) else np.linalg.svd(t, compute_uv=False)


# --- input handling -----------------------------------------------------------------------------

def _shape2d(a: Any, name: str) -> tuple[int, int]:
    """N x D shape of ``a`` (1-D counts as N x 1); a clear error for anything else."""
    if not isinstance(a, (np.ndarray, torch.Tensor)):
        raise SimilarityInputError(f"{name} must be a numpy array or torch tensor, got {type(a).__name__}")
    if a.ndim == 1:
        return int(a.shape[0]), 1
    if a.ndim != 2:
        raise SimilarityInputError(
            f"{name} must be an N x D matrix (rows = data points), got shape {tuple(a.shape)}; reduce conv "
            "maps first (glassbox.measure.features: 'flatten', 'mean' or 'positions')")
    return int(a.shape[0]), int(a.shape[1])


def as_float64(a: ArrayLike, name: str = "x", device: str | torch.device | None = None) -> Array:
    """``a`` as a finite N x D float64 array: numpy on the CPU, a torch tensor on a GPU.

    1-D input becomes N x 1. NaN or infinite entries raise :class:`SimilarityInputError`.
    """
    _shape2d(a, name)
    dev = _device_of(a, device=device)
    if (a.dtype.is_complex or a.dtype == torch.bool) if _is_torch(a) else a.dtype.kind not in "fiu":
        raise SimilarityInputError(f"{name} must be real-valued, got dtype {a.dtype}")
    if _torch_on(dev):
        t = a if _is_torch(a) else torch.from_numpy(np.ascontiguousarray(a))
        t = t.to(device=dev, dtype=torch.float64)
        finite = bool(torch.isfinite(t).all())
    else:
        t = np.ascontiguousarray(_np(a), dtype=np.float64)
        finite = bool(np.isfinite(t).all())
    if t.ndim == 1:
        t = t[:, None]
    if not finite:
        bad = int((~torch.isfinite(t)).sum()) if _is_torch(t) else int((~np.isfinite(t)).sum())
        raise SimilarityInputError(f"{name} contains {bad} NaN or infinite value(s); features must be finite")
    return t


def _pair(x: ArrayLike, y: ArrayLike, device: str | torch.device | None) -> tuple[Array, Array]:
    nx, _ = _shape2d(x, "x")
    ny, _ = _shape2d(y, "y")
    if nx != ny:
        raise SimilarityInputError(f"x and y must hold the same samples in the same order: x has N={nx} rows, "
                                   f"y has N={ny}")
    dev = _device_of(x, y, device=device)
    return as_float64(x, "x", dev), as_float64(y, "y", dev)


def _require(n: int, needed: int, metric: str, why: str) -> None:
    if n < needed:
        raise TooFewSamplesError(f"{metric} needs at least {needed} samples ({why}), got N={n}")


# --- sufficient statistics ----------------------------------------------------------------------

class CrossMoments:
    """Streamed float64 moments of paired rows (x_i, y_i): enough for CKA (biased and debiased), CCA,
    SVCCA, PWCCA and Procrustes without keeping the rows.

    Memory is O(Dx^2 + Dy^2 + Dx*Dy), independent of the number of rows, so "positions as data points"
    at full resolution never materialises N*H*W x C. Rows are shifted by a reference (the first chunk's
    mean) before accumulating, which keeps float64 sums accurate for features with large means.
    """

    def __init__(self, dims_x: int, dims_y: int, device: str | torch.device | None = None,
                 reduction: str | None = None, fourth_moments: bool = True):
        if dims_x < 1 or dims_y < 1:
            raise SimilarityInputError(f"dims must be >= 1, got dims_x={dims_x}, dims_y={dims_y}")
        self.dims_x, self.dims_y, self.reduction = int(dims_x), int(dims_y), reduction
        self.fourth_moments = fourth_moments  # needed only by the debiased CKA
        self.exact_shift = False  # True once rows were shifted by their exact means (from_arrays)
        self.device = _device_of(device=device)
        dev = self.device
        self.n = 0
        self.shift_x: Array | None = None
        self.shift_y: Array | None = None
        self.sx, self.sy = _zeros((dims_x,), dev), _zeros((dims_y,), dev)
        self.sxx, self.syy = _zeros((dims_x, dims_x), dev), _zeros((dims_y, dims_y), dev)
        self.sxy = _zeros((dims_x, dims_y), dev)
        # fourth-moment terms for the debiased HSIC, with P_i = |x_i|^2 and Q_i = |y_i|^2 of shifted rows
        self.p_sum = self.q_sum = self.pp_sum = self.qq_sum = self.pq_sum = 0.0
        self.px, self.qx = _zeros((dims_x,), dev), _zeros((dims_x,), dev)  # sum P_i x_i, sum Q_i x_i
        self.py, self.qy = _zeros((dims_y,), dev), _zeros((dims_y,), dev)  # sum P_i y_i, sum Q_i y_i

    @classmethod
    def from_arrays(cls, x: ArrayLike, y: ArrayLike, *, device: str | torch.device | None = None,
                    reduction: str | None = None, fourth_moments: bool = True) -> CrossMoments:
        """Moments of two in-memory N x D matrices (shifted by their exact means)."""
        xt, yt = _pair(x, y, device)
        m = cls(xt.shape[1], yt.shape[1], device=_device_of(x, y, device=device), reduction=reduction,
                fourth_moments=fourth_moments)
        m.shift_x, m.shift_y = xt.mean(0), yt.mean(0)
        m._accumulate(xt - m.shift_x, yt - m.shift_y)
        m.exact_shift = True
        return m

    def update(self, x: ArrayLike, y: ArrayLike) -> CrossMoments:
        """Add paired rows (any float dtype; chunks are converted to float64 one at a time)."""
        nx, dx = _shape2d(x, "x")
        ny, dy = _shape2d(y, "y")
        if nx != ny:
            raise SimilarityInputError(f"paired rows must match: x batch has {nx} rows, y batch has {ny}")
        if (dx, dy) != (self.dims_x, self.dims_y):
            raise SimilarityInputError(f"batch dims {dx}x{dy} differ from the accumulator's "
                                       f"{self.dims_x}x{self.dims_y}")
        for start in range(0, nx, _ROW_CHUNK):
            xc = as_float64(x[start:start + _ROW_CHUNK], "x", self.device)
            yc = as_float64(y[start:start + _ROW_CHUNK], "y", self.device)
            if self.shift_x is None:
                self.shift_x, self.shift_y = xc.mean(0), yc.mean(0)
            self._accumulate(xc - self.shift_x, yc - self.shift_y)
        return self

    def _accumulate(self, xs: Array, ys: Array) -> None:
        first = self.n == 0
        self.exact_shift = False
        self.n += xs.shape[0]
        self.sx += xs.sum(0)
        self.sy += ys.sum(0)
        if first:  # assign rather than add to the zeros
            self.sxx, self.syy, self.sxy = _scatter(xs), _scatter(ys), xs.T @ ys
        else:
            self.sxx += _scatter(xs)
            self.syy += _scatter(ys)
            self.sxy += xs.T @ ys
        if not self.fourth_moments:
            return
        p, q = (xs * xs).sum(1), (ys * ys).sum(1)
        self.p_sum += float(p.sum())
        self.q_sum += float(q.sum())
        self.pp_sum += float((p * p).sum())
        self.qq_sum += float((q * q).sum())
        self.pq_sum += float((p * q).sum())
        self.px += p @ xs
        self.qx += q @ xs
        self.py += p @ ys
        self.qy += q @ ys

    # -- centred quantities
    def _means(self) -> tuple[Array, Array]:
        if self.n == 0:
            raise TooFewSamplesError("the accumulator holds no rows yet")
        return self.sx / self.n, self.sy / self.n

    def covariances(self) -> tuple[Array, Array, Array]:
        """Centred scatter matrices (sums over rows, not divided by N-1): Cxx, Cyy, Cxy."""
        mx, my = self._means()
        n = self.n
        if self.exact_shift:  # rows were shifted by their exact means: the sums are already centred
            return self.sxx, self.syy, self.sxy
        cxx = self.sxx - n * (mx[:, None] * mx[None, :])
        cyy = self.syy - n * (my[:, None] * my[None, :])
        cxy = self.sxy - n * (mx[:, None] * my[None, :])
        return cxx, cyy, cxy

    def _sum_rs(self) -> tuple[float, float, float]:
        """sum r_i s_i, sum r_i^2, sum s_i^2, with r_i, s_i the squared norms of the *centred* rows.

        With shifted rows x_i, mean m and P_i = |x_i|^2: r_i = P_i - 2 x_i.m + |m|^2, so every sum expands
        into the accumulated P, Q, sum P_i x_i, ... terms (no second pass over the rows).
        """
        mx, my = self._means()
        n = self.n
        ax, ay = float(mx @ mx), float(my @ my)

        def expand(pq: float, u_b: Array, u_a: Array, s_ab: Array, p_sum: float, q_sum: float,
                   a: float, b: float, m_a: Array, m_b: Array) -> float:
            return (pq - 2 * float(u_b @ m_b) - 2 * float(u_a @ m_a) + 4 * float(m_a @ (s_ab @ m_b))
                    + b * p_sum + a * q_sum - 3 * n * a * b)

        rs = expand(self.pq_sum, self.py, self.qx, self.sxy, self.p_sum, self.q_sum, ax, ay, mx, my)
        rr = expand(self.pp_sum, self.px, self.px, self.sxx, self.p_sum, self.p_sum, ax, ax, mx, mx)
        ss = expand(self.qq_sum, self.qy, self.qy, self.syy, self.q_sum, self.q_sum, ay, ay, my, my)
        return rs, rr, ss

    # -- metrics
    def linear_cka(self, debiased: bool = False) -> Similarity:
        """Linear CKA from the moments (see the module docs for the convention)."""
        n = self.n
        _require(n, 4 if debiased else 2, "debiased linear CKA" if debiased else "linear CKA",
                 "the unbiased HSIC divides by (N-1)(N-2)(N-3)" if debiased else "centring needs 2 rows")
        cxx, cyy, cxy = self.covariances()
        _nonconstant(cxx, "x")
        _nonconstant(cyy, "y")
        hxy, hxx, hyy = float((cxy * cxy).sum()), float((cxx * cxx).sum()), float((cyy * cyy).sum())
        tx, ty = float(cxx.trace()), float(cyy.trace())
        beta_x, beta_y = tx * tx / hxx, ty * ty / hyy
        if debiased:
            if not self.fourth_moments:
                raise SimilarityInputError("debiased CKA needs an accumulator made with fourth_moments=True")
            rs, rr, ss = self._sum_rs()
            hxy, hxx, hyy = _debias(hxy, rs, tx, ty, n), _debias(hxx, rr, tx, tx, n), _debias(hyy, ss, ty, ty, n)
        value = hxy / math.sqrt(hxx * hyy) if hxx > 0 and hyy > 0 else math.nan
        return _cka_result(value, debiased, n, self.dims_x, self.dims_y, self.reduction,
                           beta_x=beta_x, beta_y=beta_y, route="features")

    def _whitened_cross(self, rtol: float, metric: str) -> tuple[Array, _Whitener, _Whitener, Array, Array]:
        cxx, cyy, cxy = self.covariances()
        wx, wy = _whiten(cxx, rtol, "x"), _whiten(cyy, rtol, "y")
        _require(self.n, wx.kept + wy.kept + 1, metric,
                 f"N must exceed kept_x + kept_y = {wx.kept} + {wy.kept}, otherwise some correlations are 1 "
                 "whatever the data; 5-10x more is advisable")
        return wy.right(wx.left(_take(cxy, wx.idx, wy.idx))), wx, wy, cxx, cyy

    def cca(self, rtol: float = DEFAULT_RTOL) -> Similarity:
        """Canonical correlations (``coefficients``, descending) and their mean (``value``)."""
        t, wx, wy, _, _ = self._whitened_cross(rtol, "CCA")
        return _cca_result("cca", _canonical_correlations(t), self.n, self.dims_x, self.dims_y, wx.kept,
                           wy.kept, self.reduction, {"rtol": rtol, "whitening": (wx.route, wy.route)})

    def svcca(self, keep: float = 0.99, *, dims: int | None = None, spectrum: Spectrum = "variance",
              rtol: float = DEFAULT_RTOL) -> Similarity:
        """SVCCA: PCA per side by the ``keep`` rule (or a fixed ``dims``), then CCA; value = mean rho."""
        if dims is None and not 0.0 < keep <= 1.0:
            raise SimilarityInputError(f"keep must be a fraction in (0, 1], got {keep}")
        if dims is not None and dims < 1:
            raise SimilarityInputError(f"dims must be >= 1, got {dims}")
        if spectrum not in ("variance", "singular_values"):
            raise SimilarityInputError(f"spectrum must be 'variance' or 'singular_values', got {spectrum!r}")
        cxx, cyy, cxy = self.covariances()
        _nonconstant(cxx, "x")
        _nonconstant(cyy, "y")
        vx, kx = _principal_whitener(cxx, keep, dims, spectrum, rtol)
        vy, ky = _principal_whitener(cyy, keep, dims, spectrum, rtol)
        _require(self.n, kx + ky + 1, "SVCCA", f"N must exceed the kept components {kx} + {ky}; 5-10x more "
                 "is advisable")
        rho = _canonical_correlations(vx.T @ cxy @ vy)
        return _cca_result("svcca", rho, self.n, self.dims_x, self.dims_y, kx, ky, self.reduction,
                           {"keep": keep, "dims": dims, "spectrum": spectrum, "rtol": rtol})

    def pwcca(self, rtol: float = DEFAULT_RTOL) -> Similarity:
        """Projection-weighted CCA, weights from x's canonical variates (Morcos et al. 2018)."""
        t, wx, wy, cxx, cyy = self._whitened_cross(rtol, "PWCCA")
        u, rho, vh = _svd(t)
        rho = rho.clip(0.0, 1.0)
        # canonical directions a_i in the live-neuron basis; <h_i, x_j> = (Cxx a_i)_j with |h_i| = 1
        alpha = abs(_take(cxx, wx.idx, wx.idx) @ wx.directions(u)).sum(0)
        beta = abs(_take(cyy, wy.idx, wy.idx) @ wy.directions(vh.T)).sum(0)
        rho_np, alpha_np, beta_np = _np(rho), _np(alpha), _np(beta)
        value = float((alpha_np * rho_np).sum() / alpha_np.sum())
        value_y = float((beta_np * rho_np).sum() / beta_np.sum())
        return Similarity(value, "pwcca", self.n, self.dims_x, self.dims_y, wx.kept, wy.kept, self.reduction,
                          coefficients=rho_np,
                          extra={"value_y_weighted": value_y, "weights": alpha_np / alpha_np.sum(),
                                 "mean_rho": float(rho_np.mean()), "rtol": rtol})

    def procrustes(self) -> Similarity:
        """Orthogonal Procrustes similarity ||X^T Y||_* / (||X||_F ||Y||_F) of centred data."""
        _require(self.n, 2, "Procrustes", "centring needs 2 rows")
        cxx, cyy, cxy = self.covariances()
        _nonconstant(cxx, "x")
        _nonconstant(cyy, "y")
        nuc = float(_svdvals(cxy).sum())
        value = min(nuc / math.sqrt(float(cxx.trace()) * float(cyy.trace())), 1.0)
        return Similarity(value, "procrustes", self.n, self.dims_x, self.dims_y, reduction=self.reduction,
                          extra={"angle": math.acos(value), "route": "features"})


def _take(c: Array, rows: Array, cols: Array) -> Array:
    """c[rows][:, cols] without copying when nothing is dropped."""
    if len(rows) < c.shape[0]:
        c = c[rows]
    if len(cols) < c.shape[1]:
        c = c[:, cols]
    return c


def _nonconstant(c: Array, name: str) -> None:
    if float(c.diagonal().max()) <= 0.0:
        raise DegenerateFeaturesError(f"{name} is constant (zero variance in every feature); the similarity is "
                                      "undefined")


def _debias(xty: float, rs: float, tx: float, ty: float, n: int) -> float:
    """n(n-3) x the unbiased HSIC, from feature-space terms (as Kornblith et al.'s debiased helper)."""
    return xty - n / (n - 2.0) * rs + tx * ty / ((n - 1.0) * (n - 2.0))


def _cka_result(value: float, debiased: bool, n: int, dx: int, dy: int, reduction: str | None, *,
                beta_x: float, beta_y: float, route: str) -> Similarity:
    return Similarity(float(value), "linear_cka_debiased" if debiased else "linear_cka", n, dx, dy,
                      reduction=reduction,
                      extra={"beta_x": beta_x, "beta_y": beta_y, "route": route, "debiased": debiased})


def _cca_result(metric: str, rho: Array, n: int, dx: int, dy: int, kx: int, ky: int,
                reduction: str | None, extra: dict[str, Any]) -> Similarity:
    rho_np = _np(rho)
    return Similarity(float(rho_np.mean()), metric, n, dx, dy, kx, ky, reduction, coefficients=rho_np,
                      extra={"r2": float((rho_np ** 2).mean()), **extra})


@dataclass
class _Whitener:
    """A whitening W (live channels x kept) with W^T C W = I on the live channels ``idx``.

    Stored either as the lower Cholesky factor L of C (W = L^-T, applied by triangular solves) or as an
    explicit matrix (eigendecomposition route V Lambda^-1/2, or L^-T on a GPU).
    """

    idx: Array
    kept: int
    route: str  # "cholesky" or "eigh"
    w: Array | None = None
    chol: np.ndarray | None = None

    def left(self, m: Array) -> Array:
        """W^T m."""
        return _blas.dtrsm(1.0, self.chol, m, lower=1) if self.chol is not None else self.w.T @ m

    def right(self, m: Array) -> Array:
        """m W."""
        if self.chol is not None:
            return _blas.dtrsm(1.0, self.chol, m, side=1, lower=1, trans_a=1)
        return m @ self.w

    def directions(self, u: Array) -> Array:
        """W u: canonical directions in the live-channel basis."""
        return _blas.dtrsm(1.0, self.chol, u, lower=1, trans_a=1) if self.chol is not None else self.w @ u


def _cholesky_certified(c: Array, rtol: float) -> _Whitener | None:
    """Cholesky whitening when it keeps exactly what the eigenvalue floor would (every eigenvalue above
    ``rtol`` x the largest), else None.

    For a symmetric matrix the 2-norm condition number is at most the 1-norm one. On the CPU LAPACK's
    estimate of the latter must clear the floor by a factor 100 (margin for the estimator); on a GPU the
    bound lambda_min >= 1/||L^-1||_F^2 with lambda_max <= trace is used.
    """
    if _is_torch(c):
        chol, info = torch.linalg.cholesky_ex(c)
        if int(info) != 0:
            return None
        linv = torch.linalg.solve_triangular(chol, _eye(c.shape[0], c), upper=False)
        if float((linv * linv).sum()) * rtol * float(c.trace()) > 1.0:
            return None
        return _Whitener(None, c.shape[0], "cholesky", w=linv.T)
    chol, info = _lapack.dpotrf(c, lower=1, clean=1)
    if info != 0:
        return None
    rcond, info = _lapack.dpocon(chol, float(np.abs(c).sum(0).max()), uplo="L")
    if info != 0 or rcond < 100.0 * rtol:
        return None
    return _Whitener(None, c.shape[0], "cholesky", chol=chol)


def _whiten(c: Array, rtol: float, name: str) -> _Whitener:
    """Whitening of a scatter matrix with a relative eigenvalue floor ``rtol`` x lambda_max.

    Constant channels are dropped first. Cholesky is used when it is certified to keep every direction
    (see :func:`_cholesky_certified`); otherwise (duplicated or nearly dependent channels) the
    eigendecomposition drops the directions below the floor.
    """
    _nonconstant(c, name)
    var = c.diagonal()
    idx = _flatnonzero(var > rtol * var.max())
    cl = _take(c, idx, idx)
    white = _cholesky_certified(cl, rtol)
    if white is not None:
        white.idx = idx
        return white
    w, v = _eigh(cl)
    keep = _flatnonzero(w > rtol * w.max())
    return _Whitener(idx, len(keep), "eigh", w=v[:, keep] / w[keep] ** 0.5)


def _principal_whitener(c: Array, keep: float, dims: int | None, spectrum: Spectrum,
                        rtol: float) -> tuple[Array, int]:
    """Whitened leading principal directions V_k Lambda_k^-1/2 (D x k), and k."""
    w, v = _eigh(c)
    w, v = _reversed(w, 0), _reversed(v, 1)  # descending
    w_np = _np(w)
    valid = int((w_np > rtol * w_np[0]).sum())
    if dims is not None:
        k = min(dims, valid)
    else:
        spec = w_np[:valid] if spectrum == "variance" else np.sqrt(w_np[:valid])
        frac = np.cumsum(spec) / spec.sum()
        # smallest k whose cumulative fraction reaches keep (a hair of slack against rounding at keep = 1)
        k = min(int(np.searchsorted(frac, keep - 1e-12, side="left")) + 1, valid)
    return v[:, :k] / w[:k] ** 0.5, k


def _canonical_correlations(t: Array) -> Array:
    """Singular values of a whitened cross-covariance (= canonical correlations), descending, in [0, 1].

    Taken as square roots of the eigenvalues of the smaller of T T^T and T^T T: faster than an SVD, and
    accurate to ~1e-8 absolute, far below anything a table shows.
    """
    ev = _eigvalsh(_scatter(t.T) if t.shape[0] <= t.shape[1] else _scatter(t))
    return _reversed(ev.clip(0.0, 1.0) ** 0.5, 0)


# --- metrics on N x D arrays --------------------------------------------------------------------

def cca(x: ArrayLike, y: ArrayLike, *, rtol: float = DEFAULT_RTOL, reduction: str | None = None,
        device: str | torch.device | None = None) -> Similarity:
    """Canonical correlations of x and y (``result.coefficients``); value = their mean."""
    return CrossMoments.from_arrays(x, y, device=device, reduction=reduction, fourth_moments=False).cca(rtol)


def svcca(x: ArrayLike, y: ArrayLike, keep: float = 0.99, *, dims: int | None = None,
          spectrum: Spectrum = "variance", rtol: float = DEFAULT_RTOL, reduction: str | None = None,
          device: str | torch.device | None = None) -> Similarity:
    """SVCCA: keep the leading principal components holding ``keep`` of the variance, CCA, mean rho."""
    return CrossMoments.from_arrays(x, y, device=device, reduction=reduction, fourth_moments=False).svcca(
        keep, dims=dims, spectrum=spectrum, rtol=rtol)


def pwcca(x: ArrayLike, y: ArrayLike, *, rtol: float = DEFAULT_RTOL, reduction: str | None = None,
          device: str | torch.device | None = None) -> Similarity:
    """Projection-weighted CCA with weights from x (``extra['value_y_weighted']``: from y)."""
    return CrossMoments.from_arrays(x, y, device=device, reduction=reduction, fourth_moments=False).pwcca(rtol)


def linear_cka(x: ArrayLike, y: ArrayLike, *, debiased: bool = False, route: Route = "auto",
               reduction: str | None = None, device: str | torch.device | None = None,
               chunk_columns: int = 4096) -> Similarity:
    """Linear CKA; ``route="auto"`` uses D x D moments when max(Dx, Dy) <= N, else N x N Gram matrices."""
    if route not in ("auto", "features", "gram"):
        raise SimilarityInputError(f"route must be 'auto', 'features' or 'gram', got {route!r}")
    n, dx = _shape2d(x, "x")
    ny, dy = _shape2d(y, "y")
    if n != ny:
        raise SimilarityInputError(f"x and y must hold the same samples: x has N={n} rows, y has N={ny}")
    if route == "gram" or (route == "auto" and max(dx, dy) > n):
        _require(n, 4 if debiased else 2, "linear CKA", "the (debiased) HSIC needs them")
        gx = linear_gram(x, chunk_columns=chunk_columns, device=device, name="x")
        gy = linear_gram(y, chunk_columns=chunk_columns, device=_device_of(x, y, device=device), name="y")
        return cka_from_grams(gx, gy, debiased=debiased, reduction=reduction, dims_x=dx, dims_y=dy)
    moments = CrossMoments.from_arrays(x, y, device=device, reduction=reduction, fourth_moments=debiased)
    return moments.linear_cka(debiased)


def procrustes(x: ArrayLike, y: ArrayLike, *, reduction: str | None = None,
               device: str | torch.device | None = None, chunk_columns: int = 4096) -> Similarity:
    """Orthogonal Procrustes similarity; through N x N Gram matrices when max(Dx, Dy) > N."""
    n, dx = _shape2d(x, "x")
    ny, dy = _shape2d(y, "y")
    if n != ny:
        raise SimilarityInputError(f"x and y must hold the same samples: x has N={n} rows, y has N={ny}")
    if max(dx, dy) <= n:
        return CrossMoments.from_arrays(x, y, device=device, reduction=reduction,
                                        fourth_moments=False).procrustes()
    _require(n, 2, "Procrustes", "centring needs 2 rows")
    gx = linear_gram(x, chunk_columns=chunk_columns, device=device, name="x")
    gy = linear_gram(y, chunk_columns=chunk_columns, device=_device_of(x, y, device=device), name="y")
    tx, ty = float(gx.trace()), float(gy.trace())
    if tx <= 0 or ty <= 0:
        raise DegenerateFeaturesError("x or y is constant (zero variance); Procrustes similarity is undefined")
    # ||X^T Y||_* = trace((K^1/2 L K^1/2)^1/2) for the centred Grams K = X X^T, L = Y Y^T
    w, v = _eigh(gx)
    w = w * (w > DEFAULT_RTOL * w.max())  # round-off "eigenvalues" of the null space would add sqrt(1e-16)'s
    root = (v * w ** 0.5) @ v.T
    inner = _eigvalsh((lambda m: (m + m.T) / 2)(root @ gy @ root))
    nuc = float(((inner * (inner > DEFAULT_RTOL * inner.max())) ** 0.5).sum())
    value = min(nuc / math.sqrt(tx * ty), 1.0)
    return Similarity(value, "procrustes", n, dx, dy, reduction=reduction,
                      extra={"angle": math.acos(value), "route": "gram"})


def cosine(x: ArrayLike, y: ArrayLike, *, reduction: str | None = None,
           device: str | torch.device | None = None) -> Similarity:
    """Qu et al.'s cosine similarity: mean over samples of cos(x_i, y_i), columns matched by position.

    ``extra["permutation_mean"]`` is the exact mean under a random re-pairing of samples,
    mean_i(x_i/|x_i|) . mean_j(y_j/|y_j|): the chance level for these features.
    """
    xt, yt = _pair(x, y, device)
    if xt.shape[1] != yt.shape[1]:
        raise SimilarityInputError(f"cosine compares corresponding features, so x and y need the same D: "
                                   f"got {xt.shape[1]} and {yt.shape[1]}")
    _require(xt.shape[0], 1, "cosine", "one row at least")
    nx, ny = (xt * xt).sum(1) ** 0.5, (yt * yt).sum(1) ** 0.5
    zero = _np((nx == 0) | (ny == 0))
    if zero.any():
        raise DegenerateFeaturesError(f"{int(zero.sum())} sample(s) have an all-zero feature vector in x or y; "
                                      "their cosine is undefined")
    ux, uy = xt / nx[:, None], yt / ny[:, None]
    per_sample = _np((ux * uy).sum(1))
    return Similarity(float(per_sample.mean()), "cosine", xt.shape[0], xt.shape[1], yt.shape[1],
                      reduction=reduction,
                      extra={"std": float(per_sample.std(ddof=1)) if len(per_sample) > 1 else 0.0,
                             "permutation_mean": float(ux.mean(0) @ uy.mean(0))})


# --- channel matching ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChannelMatch:
    """Hungarian matching of y's channels to x's: ``y_for_x[i]`` is the y channel paired with x channel i."""

    y_for_x: np.ndarray
    correlation: np.ndarray
    n: int
    dead_x: int = 0
    dead_y: int = 0

    @property
    def mean_correlation(self) -> float:
        """Mean Pearson correlation of the matched pairs (Li et al. 2016)."""
        return float(self.correlation.mean())

    def reorder_y(self, y: ArrayLike) -> ArrayLike:
        """y with its columns put in x's order."""
        if isinstance(y, torch.Tensor):
            return y[:, torch.as_tensor(self.y_for_x, device=y.device)]
        return y[:, self.y_for_x]


def channel_correlation(x: ArrayLike, y: ArrayLike, *, device: str | torch.device | None = None
                        ) -> tuple[np.ndarray, int, int]:
    """Dx x Dy Pearson correlations between channels (0 for a constant channel), and the dead counts."""
    xt, yt = _pair(x, y, device)
    _require(xt.shape[0], 3, "channel correlation", "a correlation of 2 points is always +-1")
    xc, yc = xt - xt.mean(0), yt - yt.mean(0)
    sx, sy = _np((xc * xc).sum(0) ** 0.5), _np((yc * yc).sum(0) ** 0.5)
    if not sx.any() or not sy.any():
        raise DegenerateFeaturesError("every channel of x or of y is constant; channel matching is undefined")
    corr = _np(xc.T @ yc) / np.outer(np.where(sx > 0, sx, np.inf), np.where(sy > 0, sy, np.inf))
    return corr, int((sx == 0).sum()), int((sy == 0).sum())


def match_channels(x: ArrayLike, y: ArrayLike, *, device: str | torch.device | None = None) -> ChannelMatch:
    """One-to-one assignment of y's channels to x's maximising the summed channel correlation."""
    n, dx = _shape2d(x, "x")
    _, dy = _shape2d(y, "y")
    if dx != dy:
        raise SimilarityInputError(f"one-to-one channel matching needs equal widths, got {dx} and {dy}")
    corr, dead_x, dead_y = channel_correlation(x, y, device=device)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    y_for_x = np.empty(dx, dtype=np.int64)
    y_for_x[rows] = cols
    return ChannelMatch(y_for_x, corr[np.arange(dx), y_for_x], n, dead_x, dead_y)


def matched_cosine(x: ArrayLike, y: ArrayLike, *, reduction: str | None = None,
                   device: str | torch.device | None = None) -> Similarity:
    """``cosine`` after putting y's channels in x's order by :func:`match_channels`."""
    match = match_channels(x, y, device=device)
    r = cosine(x, match.reorder_y(y), reduction=reduction, device=device)
    return Similarity(r.value, "matched_cosine", r.n, r.dims_x, r.dims_y, reduction=reduction,
                      extra={**r.extra, "mean_matched_correlation": match.mean_correlation,
                             "y_for_x": match.y_for_x})


# --- Gram matrices, minibatch CKA ---------------------------------------------------------------

def linear_gram(x: ArrayLike, *, chunk_columns: int = 4096, device: str | torch.device | None = None,
                name: str = "x") -> Array:
    """N x N float64 Gram matrix of the column-centred features, accumulated over column chunks.

    Extra memory is the N x N result plus one N x ``chunk_columns`` float64 chunk, so a 2604 x 262144
    float32 matrix (2.7 GB) never gets a float64 copy. Works on numpy memmaps. Returns a numpy array on
    the CPU, a torch tensor on a GPU.
    """
    n, d = _shape2d(x, name)
    if chunk_columns < 1:
        raise SimilarityInputError(f"chunk_columns must be >= 1, got {chunk_columns}")
    dev = _device_of(x, device=device)
    if x.ndim == 1:
        x = x[:, None]
    gram = _zeros((n, n), dev)
    if not _is_torch(gram):
        gram = np.asfortranarray(gram)
    for start in range(0, d, chunk_columns):
        chunk = as_float64(x[:, start:start + chunk_columns], name, dev)
        chunk = chunk - chunk.mean(0)  # centring a column needs only that column: exact per chunk
        if _is_torch(chunk):
            gram += chunk @ chunk.T
        else:  # chunk.T is a Fortran-ordered k x N matrix: dsyrk(trans=1) adds (chunk.T)^T chunk.T in place
            gram = _blas.dsyrk(1.0, chunk.T, beta=1.0, c=gram, trans=1, overwrite_c=1)
    if _is_torch(gram):
        return gram
    return _symmetrize_upper(np.triu(gram))


def _center_gram(k: Array) -> Array:
    return k - k.mean(0)[None, :] - k.mean(1)[:, None] + k.mean()


def _u_center_gram(k: Array) -> Array:
    """U-centring (Szekely & Rizzo 2014): <U(K), U(L)> / (n(n-3)) is the unbiased HSIC."""
    n = k.shape[0]
    k = _zero_diagonal(k)
    means = k.sum(0) / (n - 2)
    means = means - means.sum() / (2 * (n - 1))
    return _zero_diagonal(k - means[:, None] - means[None, :])


def cka_from_grams(gram_x: ArrayLike, gram_y: ArrayLike, *, debiased: bool = False,
                   reduction: str | None = None, dims_x: int = 0, dims_y: int = 0) -> Similarity:
    """CKA of two N x N Gram matrices (linear or not; they need not be centred).

    ``dims_x``/``dims_y`` are the feature counts behind the Grams, for the record (0 = not known).
    """
    kx = as_float64(gram_x, "gram_x")
    ky = as_float64(gram_y, "gram_y", _device_of(gram_x))
    n = kx.shape[0]
    if tuple(kx.shape) != (n, n) or tuple(ky.shape) != (n, n):
        raise SimilarityInputError(f"Gram matrices must both be N x N: got {tuple(kx.shape)} and {tuple(ky.shape)}")
    _require(n, 4 if debiased else 2, "CKA from Gram matrices", "the (debiased) HSIC needs them")
    cx, cy = _center_gram(kx), _center_gram(ky)
    tx, ty = float(cx.trace()), float(cy.trace())
    fx, fy = float((cx * cx).sum()), float((cy * cy).sum())
    if fx <= 0 or fy <= 0:
        raise DegenerateFeaturesError("a centred Gram matrix is zero (constant features); CKA is undefined")
    if debiased:
        ux, uy = _u_center_gram(kx), _u_center_gram(ky)
        num, dnx, dny = float((ux * uy).sum()), float((ux * ux).sum()), float((uy * uy).sum())
        value = num / math.sqrt(dnx * dny) if dnx > 0 and dny > 0 else math.nan
    else:
        value = float((cx * cy).sum()) / math.sqrt(fx * fy)
    return _cka_result(value, debiased, n, dims_x, dims_y, reduction, beta_x=tx * tx / fx,
                       beta_y=ty * ty / fy, route="gram")


def hsic1(gram_x: Array, gram_y: Array) -> float:
    """Unbiased HSIC estimator of Song et al. 2012 (eq. 5) of two n x n Gram matrices, n >= 4."""
    n = gram_x.shape[0]
    if n < 4:
        raise TooFewSamplesError(f"the unbiased HSIC needs at least 4 samples per batch, got {n}")
    kx, ky = _zero_diagonal(gram_x), _zero_diagonal(gram_y)
    term = (float((kx * ky).sum()) + float(kx.sum()) * float(ky.sum()) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * float(kx.sum(0) @ ky.sum(0)))
    return term / (n * (n - 3))


class MinibatchCKA:
    """Minibatch linear CKA (Nguyen et al. 2021): mean HSIC_1 over batches, then the CKA ratio."""

    def __init__(self, device: str | torch.device | None = None, reduction: str | None = None):
        self.device = device
        self.reduction = reduction
        self.xy = self.xx = self.yy = 0.0
        self.batches = self.n = 0
        self.dims: tuple[int, int] | None = None

    def update(self, x: ArrayLike, y: ArrayLike) -> MinibatchCKA:
        """Add one minibatch of paired samples (>= 4 rows); features may be flattened conv maps."""
        xt, yt = _pair(x, y, self.device)
        _require(xt.shape[0], 4, "minibatch CKA (per batch)", "the unbiased HSIC divides by (n-1)(n-2)(n-3)")
        xt, yt = xt - xt.mean(0), yt - yt.mean(0)  # HSIC_1 is shift invariant; centring helps rounding
        kx, ky = xt @ xt.T, yt @ yt.T
        self.xy += hsic1(kx, ky)
        self.xx += hsic1(kx, kx)
        self.yy += hsic1(ky, ky)
        self.batches += 1
        self.n += xt.shape[0]
        self.dims = (xt.shape[1], yt.shape[1])
        return self

    def result(self) -> Similarity:
        """The minibatch CKA over all batches seen so far."""
        if self.batches == 0 or self.dims is None:
            raise TooFewSamplesError("minibatch CKA has seen no batch yet")
        if self.xx <= 0 or self.yy <= 0:
            raise DegenerateFeaturesError("the mean HSIC of x or y with itself is <= 0 (constant features?)")
        value = self.xy / math.sqrt(self.xx * self.yy)
        return Similarity(value, "minibatch_cka", self.n, self.dims[0], self.dims[1], reduction=self.reduction,
                          extra={"batches": self.batches})


def minibatch_cka(x: ArrayLike, y: ArrayLike, *, batch_size: int = 256, seed: int | None = None,
                  reduction: str | None = None, device: str | torch.device | None = None) -> Similarity:
    """Minibatch CKA of in-memory data split into N // batch_size near-equal batches.

    ``seed`` shuffles the sample order first (``numpy.random.default_rng(seed)``); None keeps it.
    """
    n, _ = _shape2d(x, "x")
    if batch_size < 4:
        raise SimilarityInputError(f"batch_size must be >= 4 (unbiased HSIC), got {batch_size}")
    _require(n, 4, "minibatch CKA", "one batch of 4")
    order = np.arange(n) if seed is None else np.random.default_rng(seed).permutation(n)
    acc = MinibatchCKA(device=device, reduction=reduction)
    for idx in np.array_split(order, max(n // batch_size, 1)):
        acc.update(_take_rows(x, idx), _take_rows(y, idx))
    return acc.result()


def _take_rows(a: ArrayLike, idx: np.ndarray) -> ArrayLike:
    return a[torch.as_tensor(idx, device=a.device)] if isinstance(a, torch.Tensor) else a[idx]
