"""The paper's clustering heatmap of two trials' features, and the numbers that say what it shows.

Qu et al. (Fig. 1, 4) stack the N x M features of one layer from trial 1 and trial 2 into 2N rows,
correlate every row with every other (Pearson across the M features of a sample), cluster the 2N x 2N
matrix hierarchically and draw it with seaborn's ``clustermap`` and a colour bar for the trial. Two big
one-trial clusters are read as "the trials learned different features".

The picture cannot carry that reading: a sample-by-sample correlation compares channel c of trial 1
with channel c of trial 2, and channel order is arbitrary. If trial 2 is an exact channel permutation
of trial 1 (identical information, CKA = 1) the clustering still splits perfectly by trial, because
every sample of a trial shares that trial's channel-mean profile. So :func:`cluster_trials` reports
what the picture shows as numbers, next to their chance levels:

- ``twin_nn_fraction``: fraction of the 2N samples whose nearest neighbour (highest correlation) is their
  twin, the same input seen by the other trial; chance 1/(2N-1);
- ``ari``: adjusted Rand index of the two-cluster cut against the trial labels (1 = split by trial,
  0 = unrelated to trial);
- ``p_value``: permutation test of that ARI under "the trial labels of each twin pair are exchangeable"
  (each pair's labels swapped with probability 1/2; the clustering itself does not change);
- ``twin_nn_p_value``: permutation test of the twin rate under "the rows of trial 2 are unrelated to those
  of trial 1" (trial 2's rows re-paired at random; every nearest neighbour stays where it is, only which
  row counts as the twin changes).

Distances: ``"rows_euclidean"`` clusters the rows of the correlation matrix by Euclidean distance with
average linkage, which is what ``sns.clustermap(corr)`` does by default (most likely the paper's
route); ``"one_minus_r"`` uses 1 - r directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.linalg.blas as _blas
import torch
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

from glassbox.measure.similarity import (
    ArrayLike,
    DegenerateFeaturesError,
    SimilarityInputError,
    TooFewSamplesError,
)

Distance = Literal["rows_euclidean", "one_minus_r"]
DISTANCES = ("rows_euclidean", "one_minus_r")


@dataclass(frozen=True)
class TrialClustering:
    """What the two-trial clustering heatmap shows, in numbers."""

    n_per_trial: int
    twin_nn_fraction: float
    twin_nn_chance: float
    ari: float
    p_value: float
    n_permutations: int
    cluster_sizes: tuple[int, int]
    trial_counts: np.ndarray = field(repr=False, compare=False)  # 2 clusters x 2 trials
    distance: str = "rows_euclidean"
    method: str = "average"
    linkage: np.ndarray | None = field(default=None, repr=False, compare=False)
    twin_nn_p_value: float = float("nan")


def _shape(a: Any, name: str) -> tuple[int, int]:
    if not isinstance(a, (np.ndarray, torch.Tensor)) or a.ndim != 2:
        raise SimilarityInputError(f"{name} must be an N x M matrix (samples x features), got "
                                   f"{getattr(a, 'shape', type(a).__name__)}")
    return int(a.shape[0]), int(a.shape[1])


def _float64(a: ArrayLike, name: str) -> np.ndarray:
    arr = (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)).astype(np.float64)
    if not np.isfinite(arr).all():
        raise SimilarityInputError(f"{name} contains {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    return arr


def sample_correlation(x1: ArrayLike, x2: ArrayLike, *, chunk_columns: int = 4096) -> np.ndarray:
    """2N x 2N Pearson correlation between the samples (rows) of [x1; x2], across their features.

    Computed over column chunks in float64 (two passes: row means, then the Gram of centred rows), so
    large ``flatten`` features need no float64 copy.
    """
    (n1, m1), (n2, m2) = _shape(x1, "x1"), _shape(x2, "x2")
    if (n1, m1) != (n2, m2):
        raise SimilarityInputError(f"both trials need the same samples and features: x1 is {n1}x{m1}, x2 is {n2}x{m2}")
    if m1 < 2:
        raise SimilarityInputError(f"a correlation across features needs at least 2 features, got {m1}")

    def rows(start: int) -> np.ndarray:
        return np.concatenate([_float64(x1[:, start:start + chunk_columns], "x1"),
                               _float64(x2[:, start:start + chunk_columns], "x2")])

    means = sum(rows(s).sum(1) for s in range(0, m1, chunk_columns)) / m1
    gram = np.zeros((2 * n1, 2 * n1), order="F")
    for start in range(0, m1, chunk_columns):
        chunk = np.ascontiguousarray(rows(start) - means[:, None])
        gram = _blas.dsyrk(1.0, chunk.T, beta=1.0, c=gram, trans=1, overwrite_c=1)
    gram = np.triu(gram)
    gram = gram + np.triu(gram, 1).T
    scale = np.sqrt(np.diagonal(gram))
    if (scale == 0).any():
        raise DegenerateFeaturesError(f"{int((scale == 0).sum())} sample(s) have constant features; their "
                                      "correlation with other samples is undefined")
    corr = gram / np.outer(scale, scale)
    np.fill_diagonal(corr, 1.0)
    return np.clip(corr, -1.0, 1.0)


def correlation_linkage(corr: np.ndarray, *, distance: Distance = "rows_euclidean",
                        method: str = "average") -> np.ndarray:
    """Hierarchical clustering (scipy linkage matrix) of a correlation matrix's samples."""
    if distance not in DISTANCES:
        raise SimilarityInputError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if distance == "one_minus_r":
        dist = 1.0 - corr
    else:  # Euclidean distance between rows of corr, through one matrix product
        sq = np.einsum("ij,ij->i", corr, corr)
        dist = np.sqrt(np.clip(sq[:, None] + sq[None, :] - 2.0 * (corr @ corr.T), 0.0, None))
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2
    return linkage(squareform(dist, checks=False), method=method)


def adjusted_rand_index(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) of two labelings; equals scikit-learn's."""
    _, t = np.unique(labels_true, return_inverse=True)
    _, p = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)
    return _ari_from_table(table)


def _ari_from_table(table: np.ndarray) -> float:
    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1) / 2).sum())

    n = table.sum()
    index, rows, cols = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    total = n * (n - 1) / 2
    expected = rows * cols / total
    top = (rows + cols) / 2
    return 1.0 if top == expected else float((index - expected) / (top - expected))


def cluster_trials(x1: ArrayLike, x2: ArrayLike, *, distance: Distance = "rows_euclidean",
                   method: str = "average", n_permutations: int = 999,
                   seed: int | np.random.Generator = 0, chunk_columns: int = 4096) -> TrialClustering:
    """Cluster the 2N samples of two trials (rows of x1 and x2 are the same inputs) and measure the split."""
    n, _ = _shape(x1, "x1")
    if n < 2:
        raise TooFewSamplesError(f"clustering two trials needs at least 2 samples per trial, got {n}")
    if n_permutations < 1:
        raise SimilarityInputError(f"n_permutations must be >= 1, got {n_permutations}")
    corr = sample_correlation(x1, x2, chunk_columns=chunk_columns)
    z = correlation_linkage(corr, distance=distance, method=method)
    clusters = fcluster(z, 2, criterion="maxclust") - 1
    trial = np.repeat([0, 1], n)

    masked = corr.copy()
    np.fill_diagonal(masked, -np.inf)
    nearest = masked.argmax(1)
    twin = np.concatenate([np.arange(n, 2 * n), np.arange(n)])
    twin_nn = float((nearest == twin).mean())

    table = np.zeros((2, 2))
    np.add.at(table, (clusters, trial), 1)
    ari = _ari_from_table(table)
    # null: each twin pair's trial labels are exchangeable -> swap them with probability 1/2
    rng = np.random.default_rng(seed)
    c1, c2 = clusters[:n], clusters[n:]
    exceed = 0
    for _ in range(n_permutations):
        swap = rng.random(n) < 0.5
        in1_trial0 = float(np.where(swap, c2, c1).sum())  # samples labelled trial 0 that sit in cluster 1
        in1_trial1 = float(np.where(swap, c1, c2).sum())
        perm_table = np.array([[n - in1_trial0, n - in1_trial1], [in1_trial0, in1_trial1]])
        exceed += _ari_from_table(perm_table) >= ari - 1e-12
    # null of the twin rate: trial 2's rows re-paired with trial 1's at random
    hits = 0
    for _ in range(n_permutations):
        pairing = rng.permutation(n)
        fake_twin = np.concatenate([n + pairing, np.argsort(pairing)])
        hits += float((nearest == fake_twin).mean()) >= twin_nn - 1e-12
    sizes = np.bincount(clusters, minlength=2)
    return TrialClustering(n_per_trial=n, twin_nn_fraction=twin_nn, twin_nn_chance=1.0 / (2 * n - 1), ari=float(ari),
                           p_value=float((1 + exceed) / (1 + n_permutations)), n_permutations=n_permutations,
                           twin_nn_p_value=float((1 + hits) / (1 + n_permutations)),
                           cluster_sizes=(int(sizes[0]), int(sizes[1])), trial_counts=table.astype(int),
                           distance=distance, method=method, linkage=z)


def clustermap(x1: ArrayLike, x2: ArrayLike, *, labels: tuple[str, str] = ("trial 1", "trial 2"),
               colors: tuple[str, str] = ("tab:orange", "tab:blue"), max_per_trial: int | None = None,
               seed: int | np.random.Generator = 0, distance: Distance = "rows_euclidean",
               method: str = "average", **kwargs: Any) -> Any:
    """The paper's heatmap: seaborn ``clustermap`` of the 2N x 2N sample correlation, trial colour bars.

    ``max_per_trial`` draws that many samples (the same inputs in both trials, chosen with ``seed``) to keep
    the figure light. Extra keyword arguments go to ``seaborn.clustermap``. Returns the ClusterGrid.
    """
    # imported here, not at the top: plotting libraries (seaborn ~1.5 s) that only this figure needs, so the
    # measure layer stays free of them
    import matplotlib.patches as mpatches
    import seaborn as sns

    n, _ = _shape(x1, "x1")
    if max_per_trial is not None and max_per_trial < n:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_per_trial, replace=False))
        take = (lambda a: a[torch.as_tensor(idx)]) if isinstance(x1, torch.Tensor) else (lambda a: a[idx])
        x1, x2, n = take(x1), take(x2), max_per_trial
    corr = sample_correlation(x1, x2)
    z = correlation_linkage(corr, distance=distance, method=method)
    trial_colors = [colors[0]] * n + [colors[1]] * n
    options = dict(cmap="vlag", vmin=-1, vmax=1, xticklabels=False, yticklabels=False, figsize=(7, 7))
    grid = sns.clustermap(corr, row_linkage=z, col_linkage=z, row_colors=trial_colors, col_colors=trial_colors,
                          **(options | kwargs))
    handles = [mpatches.Patch(color=c, label=lab) for c, lab in zip(colors, labels)]
    grid.ax_col_dendrogram.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return grid
