"""The feature-space chapter's figures."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from scipy.cluster.hierarchy import leaves_list

from glassbox.measure import clustering
from glassbox.studies.feature_space.layer_similarity import _layer_order
from glassbox.studies.feature_space.study import FeatureResult
from glassbox.training.unet_grid import (
    model_label,
)


def plot_layer_profiles(long: pd.DataFrame, metric: str, paper: Mapping[str, Mapping[str, float]] | None = None):
    """``metric`` per layer for every model (lines), its chance level (grey) and the paper's values (crosses)."""

    part = long[long["metric"] == metric]
    labels = list(dict.fromkeys(part["model"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels), 3.0), sharey=True, squeeze=False)
    for ax, label in zip(axes[0], labels):
        rows = part[part["model"] == label].set_index("layer")
        layers = _layer_order(list(rows.index))
        x = np.arange(len(layers))
        ax.plot(x, rows["value"].reindex(layers), "o-", label="ours")
        ax.plot(x, rows["chance"].reindex(layers), "s-", color="grey", markersize=3, label="chance (re-paired)")
        if "chance_kept" in rows and rows["chance_kept"].notna().any():
            ax.plot(x, rows["chance_kept"].reindex(layers), "^:", color="grey", markersize=3, label="chance at kept k")
        if paper is not None:
            ax.plot(x, [paper.get(label, {}).get(l, np.nan) for l in layers], "x", color="C3", label="paper")
        ax.set_xticks(x, [l.replace("Bottleneck", "BN") for l in layers], rotation=90, fontsize=8)
        ax.set_title(label, fontsize=10)
    axes[0][0].set_ylabel(metric)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_cluster_heatmaps(f1: Mapping[str, np.ndarray], f2: Mapping[str, np.ndarray], layers: Sequence[str], *,
                          n_samples: int = 150, seed: int = 0, title: str = "",
                          notes: Mapping[str, str] | None = None):
    """The paper's Fig. 4 as one figure: per layer, the 2N x 2N sample correlation of two trials' features,
    ordered by average-linkage clustering, with a strip marking each row's trial (orange 1, blue 2);
    ``notes[layer]`` is printed under the layer's name (e.g. the clustering scores)."""

    layers = list(layers)
    ncols = min(4, len(layers))
    nrows = -(-len(layers) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 3.1 * nrows), squeeze=False)
    strip_cmap = ListedColormap(["tab:orange", "tab:blue"])
    for ax, layer in zip(axes.flat, layers):
        n = f1[layer].shape[0]
        idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, n_samples), replace=False))
        corr = clustering.sample_correlation(f1[layer][idx], f2[layer][idx])
        order = leaves_list(clustering.correlation_linkage(corr))
        trial = np.repeat([0, 1], len(idx))[order]
        ax.imshow(corr[np.ix_(order, order)], cmap="vlag", vmin=-1, vmax=1, interpolation="nearest")
        ax.imshow(trial[None, :], cmap=strip_cmap, aspect="auto", extent=(-0.5, len(order) - 0.5, -0.5,
                                                                           -0.06 * len(order)))
        ax.set_ylim(len(order) - 0.5, -0.06 * len(order))
        ax.set_xticks([])
        ax.set_yticks([])
        label = layer if notes is None or layer not in notes else f"{layer}\n{notes[layer]}"
        ax.set_title(label, fontsize=9)
    for ax in list(axes.flat)[len(layers):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def plot_fig4(result: FeatureResult):
    """The paper's Fig. 4 for the deepest U-Net: fixed seeding, random seeding and the permuted copy, one figure
    each, with ARI and twin rate under every layer's name. Returns the three figures."""
    deepest, trial1 = result.deepest, result.feats[(result.deepest, "random", 0)]
    layers = [l for l in trial1 if l != "Bottleneck"]
    figures = []
    for name, key, (a, b) in (
            ("fixed seeding", model_label(deepest, "fixed"),
             (result.feats[(deepest, "fixed", 0)], result.feats[(deepest, "fixed", 1)])),
            ("random seeding", model_label(deepest, "random"), (trial1, result.feats[(deepest, "random", 1)])),
            ("permuted copy of trial 1", "permuted copy", (trial1, result.permuted))):
        rows = result.clusters[result.clusters["pair"] == key].set_index("layer")
        notes = {layer: f"ARI {r.ari:.2f}, twin-NN {r.twin_nn_fraction:.2f}" for layer, r in rows.iterrows()}
        figures.append(plot_cluster_heatmaps(a, b, layers, n_samples=result.config.cluster_samples, seed=result.seed,
                                             title=f"U-Net-{deepest}, {name}", notes=notes))
    return figures


def plot_fig1(result: FeatureResult):
    """The paper's Fig. 1 for the last layer of the deepest U-Net (random seeding), beside its permuted copy."""
    label = model_label(result.deepest, "random")
    trial1 = result.feats[(result.deepest, "random", 0)]
    layer = list(trial1)[-1]
    ari = result.clusters.set_index(["pair", "layer"])["ari"]
    grids = []
    for other, labels, pair in ((result.feats[(result.deepest, "random", 1)][layer], ("trial 1", "trial 2"), label),
                                (result.permuted[layer], ("trial 1", "trial 1, channels shuffled"), "permuted copy")):
        grid = clustering.clustermap(trial1[layer], other, labels=labels, max_per_trial=result.config.cluster_samples,
                                     seed=result.seed, figsize=(4.6, 4.6))
        grid.figure.suptitle(f"{pair}, {layer} (ARI {ari[(pair, layer)]:.2f})", y=1.02)
        grids.append(grid)
    return grids
