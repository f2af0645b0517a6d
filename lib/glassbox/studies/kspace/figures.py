"""The k-space chapter's figures."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from glassbox.data.mri import (
    FACTORS,
)
from glassbox.models.kspace_sampler import (
    centre_mask,
)
from glassbox.studies.kspace.cohorts import ExperimentData
from glassbox.studies.kspace.conclusions import _learned_entries
from glassbox.studies.kspace.config import PAPER_TABLE1, TRAIN_VENDORS
from glassbox.studies.kspace.study import KSpaceResult
from glassbox.studies.kspace.tables import _learned_ks, _other, ablation_table

# --------------------------------------------------------------------------------------------
# Figures


def plot_factors(data: ExperimentData, index: int | None = None):
    """One tumour slice of A's test set as A scans it, with each of B's factors switched on alone, with all
    of them, and B's own test slice (other patient)."""

    names = ["A", *[f"A+{f}" for f in FACTORS], "A+all", "B"]
    test = data.test["A"]
    i = int(np.flatnonzero(test.labels == 1)[0]) if index is None else int(index)
    fig, axes = plt.subplots(1, len(names), figsize=(1.6 * len(names), 2.0))
    for ax, name in zip(axes, names):
        ax.imshow(data.test[name].images[i], cmap="gray", vmin=0, vmax=1.2)
        if name != "B":
            ax.contour(test.tumour_masks[i], levels=[0.5], colors="r", linewidths=0.5)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return axes


def plot_auc_vs_rate(result: KSpaceResult, axes=None):
    """Own- and other-vendor AUC against the achieved rate: learned mask (both protocols), centre and random
    masks (mean over seeds, bootstrap intervals), and Lu's Table 1 under both readings of its rate column."""

    cfg = result.config
    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True, sharey=True)
    ks = _learned_ks(cfg)
    base_ks = sorted({cfg.k(r) for r in cfg.baseline_rates})
    for row, relation in enumerate(("own", "other")):
        for col, vendor in enumerate(TRAIN_VENDORS):
            ax = axes[row][col]
            test = vendor if relation == "own" else _other(vendor)
            for kind, protocol, marker, shift, label in (("learned", "topk", "o-", 0.0, "learned, top-k"),
                                                         ("learned", "sampled", "o:", 0.004, "learned, sampled"),
                                                         ("centre", "topk", "s", -0.006, "centre"),
                                                         ("random", "topk", "^", 0.008, "random")):
                use = ks if kind == "learned" else base_ks
                est = [result.auc(vendor, kind, k, test, protocol) for k in use]
                x = np.array(use) / cfg.size + shift
                ax.errorbar(x, [e.value for e in est], yerr=[[e.value - e.low for e in est], [e.high - e.value for e in est]],
                            fmt=marker, capsize=2, ms=4, label=label)
            t = PAPER_TABLE1[vendor]
            r = np.asarray(t["rate"])
            ax.plot(r, t[relation], "--", color="grey", lw=1, label="Lu, rate column")
            ax.plot(1 - r[r < 1], np.asarray(t[relation])[r < 1], ":", color="grey", lw=1, label="Lu, 1 - rate")
            ax.axhline(0.5, color="k", lw=0.5, ls=":")
            ax.set_title(f"trained on {vendor}, tested on {test} ({relation})", fontsize=9)
            ax.set(ylim=(0.4, 1.0))
    for ax in axes[1]:
        ax.set_xlabel("achieved sampling rate")
    for row in axes:
        row[0].set_ylabel("AUC")
    axes[0][0].legend(fontsize=7, loc="lower right")
    axes[0][0].figure.tight_layout()
    return axes


def plot_masks(result: KSpaceResult, axes=None):
    """The learned evaluation masks (rows: seeds and rates; white = kept line), one panel per training vendor;
    the centre mask of the same k is outlined."""

    cfg = result.config
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 2.8), sharey=True)
    for ax, vendor in zip(axes, TRAIN_VENDORS):
        entries = sorted((m for m in _learned_entries(result) if m["spec"]["vendor"] == vendor),
                         key=lambda m: (m["spec"]["k"], m["spec"]["repeat"]))
        masks = np.stack([np.asarray(m["eval_units"]) for m in entries])
        centres = np.stack([centre_mask(cfg.size, m["spec"]["k"] / cfg.size).numpy() for m in entries])
        extent = (-cfg.size // 2 - 0.5, cfg.size - cfg.size // 2 - 0.5, len(entries) - 0.5, -0.5)
        ax.imshow(masks, aspect="auto", cmap="gray", vmin=0, vmax=1, extent=extent, interpolation="nearest")
        ax.contour(np.arange(cfg.size) - cfg.size // 2, np.arange(len(entries)), centres, levels=[0.5],
                   colors="C1", linewidths=0.8)
        ax.set(title=f"learned masks, trained on {vendor}", xlabel="phase-encode line (0 = DC)",
               yticks=range(len(entries)),
               yticklabels=[f"k={m['spec']['k']} s{m['spec']['repeat']}" for m in entries])
    return axes


def plot_ablation(result: KSpaceResult, ax=None):
    """The gap of A's model on each ablation scan at full sampling and with the learned mask at the lowest rate."""

    table = ablation_table(result)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.2))
    x = np.arange(len(table))
    for offset, column, label in ((-0.18, "gap_full", "full sampling"),
                                  (0.18, "gap_learned", f"learned, k={result.config.lowest_k}")):
        value = table[column]
        err = [value - table[f"{column}_low"], table[f"{column}_high"] - value]
        ax.bar(x + offset, value, width=0.36, yerr=err, capsize=2, label=label)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(x, table["test"], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="AUC on A minus AUC on scan", title="cross-vendor gap of the model trained on A, by factor")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax
