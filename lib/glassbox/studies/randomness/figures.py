"""The randomness chapter's figures."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib import ticker

from glassbox.studies.randomness.conditions import CONDITIONS

_PANELS = (("feature_dissimilarity", "1 - debiased CKA (mean over layers)"),
           ("weight_distance", "relative weight distance"),
           ("output_rms_diff_hu", "RMS difference of outputs (HU)"))


def _colours(conditions: Sequence[str]) -> dict[str, Any]:

    cmap = plt.get_cmap("tab10")
    return {c: cmap(i % 10) for i, c in enumerate(CONDITIONS) if c in conditions}


def plot_curves(curve: pd.DataFrame, axes: Sequence[Any] | None = None):
    """Three panels against the training step: feature dissimilarity, weight distance, output difference.

    Lines are the means over pairs, bands the range. Log axes: exact zeros (identical trials) are not drawn.
    """

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    fig = axes[0].figure
    conditions = list(dict.fromkeys(curve["condition"]))
    colours = _colours(conditions)
    for ax, (column, label) in zip(axes, _PANELS):
        for condition in conditions:
            part = curve[(curve["condition"] == condition) & (curve["step"] > 0)]
            g = part.groupby("step")[column]
            mean, lo, hi = g.mean(), g.min(), g.max()
            positive = mean > 0
            if not positive.any():
                continue
            ax.plot(mean.index[positive], mean[positive], marker="o", ms=3, color=colours[condition], label=condition)
            ax.fill_between(mean.index[positive], lo[positive].clip(lower=mean[positive].min() * 1e-3),
                            hi[positive], color=colours[condition], alpha=0.15)
        ax.set(xscale="log", yscale="log", xlabel="training step (optimizer updates)", ylabel=label)
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_layers(layers: pd.DataFrame, axes: Sequence[Any] | None = None):
    """Debiased CKA and matched cosine per layer and condition (mean over pairs), with the chance band."""

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    fig = axes[0].figure
    order = list(dict.fromkeys(layers.sort_values("layer_index")["layer"]))
    colours = _colours(list(dict.fromkeys(layers["condition"])))
    for ax, metric, label in ((axes[0], "cka", "debiased linear CKA"), (axes[1], "matched_cosine", "matched cosine")):
        for condition, part in layers.groupby("condition", sort=False):
            m = part.groupby("layer")[metric].mean().reindex(order)
            ax.plot(order, m.values, marker="o", color=colours[condition], label=condition)
        null = layers.groupby("layer")[f"{metric}_chance"].mean().reindex(order)
        sd = layers.groupby("layer")[f"{metric}_chance_sd"].mean().reindex(order)
        ax.fill_between(order, null - 2 * sd, null + 2 * sd, color="grey", alpha=0.25, label="chance ± 2 SD")
        ax.set(xlabel="layer", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_correlation(pairs: pd.DataFrame, corr: pd.DataFrame, axes: Sequence[Any] | None = None):
    """Feature dissimilarity of every differing pair against its PSNR difference (left) and its output
    difference (right); the titles give Spearman's rho over all differing pairs and over the seed-level ones."""

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    fig = axes[0].figure
    differing = pairs[~pairs["weights_identical"]]
    colours = _colours(list(dict.fromkeys(differing["condition"])))
    for ax, target in zip(axes, ("psnr_diff", "output_rms_diff_hu")):
        rows = corr[corr["target"] == target].set_index("pairs")
        for condition, part in differing.groupby("condition", sort=False):
            ax.scatter(part["feature_dissimilarity"], part[target], color=colours[condition], label=condition, s=25)
        title = "; ".join(f"{scope}: rho {r.rho:.2f} [{r.lo:.2f}, {r.hi:.2f}]" for scope, r in rows.iterrows())
        ax.set(xscale="log", xlabel="1 - debiased CKA (mean over layers)", ylabel=rows["against"].iloc[0])
        ax.set_title(title, fontsize=8)
        if (differing[target] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
