"""The pixel-wise chapter's figures."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from glassbox.data import shapes
from glassbox.models import segnets
from glassbox.studies.pixelwise.config import ABDOMEN_WINDOW
from glassbox.studies.pixelwise.restoration import ImputationStudy, PixelLossStudy
from glassbox.studies.pixelwise.segmentation import ArchitectureStudy, LearningCurve, SoftLabelStudy
from glassbox.training import segmentation as seg

# ------------------------------------------------------------------------------------------------
# Figures

LOSS_LABELS = {"bce": "BCE (one-vs-rest)", "ce": "cross-entropy", "dice": "soft Dice", "ce+dice": "CE + Dice",
               "BCE": "BCE (one-vs-rest)", "CE": "cross-entropy", "Dice": "soft Dice"}
_LABEL_COLOURS = ("#1b1b1b", "#4c9be8", "#f0a030")      # background, large, small
_LABEL_COLOURS_RGB = [tuple(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)) for c in _LABEL_COLOURS]


def _label_image(labels: np.ndarray) -> np.ndarray:
    """A label map as an RGB image in the chapter's class colours."""
    return np.asarray(_LABEL_COLOURS_RGB)[np.asarray(labels)]


def plot_scenes(data: shapes.SegmentationSet, count: int = 4) -> plt.Figure:
    """Images (top) and label maps (bottom; background, large, small) of the first ``count`` scenes."""
    count = min(count, len(data))
    figure, axes = plt.subplots(2, count, figsize=(2.4 * count, 4.9), squeeze=False)
    for k in range(count):
        axes[0, k].imshow(data.images[k, 0], cmap="gray")
        axes[1, k].imshow(_label_image(data.labels[k].numpy()), interpolation="nearest")
        small = int((data.labels[k] == shapes.SMALL).sum())
        title = f"volume {int(data.volumes[k])}" if data.volumes is not None else f"scene {k}"
        axes[0, k].set_title(title, fontsize=9)
        axes[1, k].set_title(f"small: {small} px", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_share_vs_size(table: pd.DataFrame) -> plt.Figure:
    """Share of each loss owned by the small structure against its pixel fraction (log-log), with share = fraction."""
    figure, ax = plt.subplots(figsize=(5.6, 4.0))
    for name, group in table.groupby("loss"):
        group = group.sort_values("pixel_fraction")
        ax.plot(group.pixel_fraction, group.share, "o-", label=LOSS_LABELS.get(name, name))
    span = np.array([table.pixel_fraction.min(), table.pixel_fraction.max()])
    ax.plot(span, span, "k:", label="share = pixel fraction")
    ax.axhline(1 / shapes.N_CLASSES, color="grey", lw=0.8, ls="--", label="1 / number of classes")
    ax.set(xscale="log", yscale="log", xlabel="small structure: fraction of the image's pixels",
           ylabel="share of the loss from the small structure")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_training_curves(results: Sequence[Mapping[str, Any]], key: str = "dice_small",
                         label: str = "loss") -> plt.Figure:
    """Held-out ``key`` (default: the small structure's Dice) after each epoch, one line per trained network."""
    figure, ax = plt.subplots(figsize=(5.6, 3.6))
    for result in results:
        epochs = [e["epoch"] for e in result["history"]]
        ax.plot(epochs, [e[key] for e in result["history"]], "o-", ms=3,
                label=LOSS_LABELS.get(result[label], result[label]))
    ax.set(xlabel="epoch", ylabel=key.replace("_", " "), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_predictions(results: Sequence[Mapping[str, Any]], test: shapes.SegmentationSet, scenes: Sequence[int],
                     label: str = "loss", show_small_probability: bool = False,
                     titles: Sequence[str] | None = None) -> plt.Figure:
    """For each scene: image, truth, and each network's labels (or its small-class probability)."""
    models = [seg.segmenter_from_result(r) for r in results]
    columns = 2 + len(models)
    figure, axes = plt.subplots(len(scenes), columns, figsize=(2.3 * columns, 2.4 * len(scenes)), squeeze=False)
    for row, scene in enumerate(scenes):
        image = test.images[scene:scene + 1]
        axes[row, 0].imshow(image[0, 0], cmap="gray")
        axes[row, 1].imshow(_label_image(test.labels[scene].numpy()), interpolation="nearest")
        for col, (model, result) in enumerate(zip(models, results), start=2):
            if show_small_probability:
                logits = segnets.predict_logits(model, image)[0]
                # one-vs-rest BCE networks have one sigmoid per class, the others one softmax over classes
                probability = (torch.sigmoid(logits[shapes.SMALL]) if result["loss"] == "bce"
                               else torch.softmax(logits, dim=0)[shapes.SMALL]).numpy()
                axes[row, col].imshow(probability, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            else:
                axes[row, col].imshow(_label_image(segnets.predict_labels(model, image)[0].numpy()),
                                      interpolation="nearest")
            if row == 0:
                title = titles[col - 2] if titles else LOSS_LABELS.get(result[label], result[label])
                axes[row, col].set_title(title, fontsize=9)
        if row == 0:
            axes[row, 0].set_title("image", fontsize=9)
            axes[row, 1].set_title("truth", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_raters(study: SoftLabelStudy, scene: int = 0, raters: int = 3) -> plt.Figure:
    """One held-out scene: image, a few raters' outlines, the soft label of the large class, both networks'."""
    data = study.example
    panels = [("image", data.images[scene, 0].numpy(), "gray")]
    panels += [(f"rater {r + 1}", _label_image(data.raters[scene, r].numpy()), None)
               for r in range(min(raters, data.raters.shape[1]))]
    panels += [("raters: p(large)", data.soft[scene, shapes.LARGE].numpy(), "magma")]
    panels += [(f"{t} network: p(large)", study.predictions[t][scene, shapes.LARGE].numpy(), "magma")
               for t in ("majority", "soft") if t in study.predictions]
    figure, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.5))
    for ax, (title, image, cmap) in zip(axes, panels):
        ax.imshow(image, cmap=cmap, **({"vmin": 0, "vmax": 1} if cmap == "magma" else {}), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_reliability(study: SoftLabelStudy) -> plt.Figure:
    """Reliability diagram: mean raters' agreement with the predicted class against the network's confidence."""
    figure, ax = plt.subplots(figsize=(4.4, 4.0))
    ax.plot([0, 1], [0, 1], "k:", label="calibrated")
    for target, bins in study.reliability.items():
        filled = bins["count"] > 0
        ax.plot(bins["confidence"][filled], bins["outcome"][filled], "o-", ms=4, label=f"trained on {target} labels")
    ax.set(xlabel="network's confidence (largest class probability)",
           ylabel="raters' share for that class", xlim=(0.3, 1.01), ylim=(0.3, 1.01))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_architectures(study: ArchitectureStudy, column: str = "boundary_accuracy") -> plt.Figure:
    """``column`` per architecture, as built and at matched size: mean over seeds with its 95 % interval."""
    summary = study.summary()
    names = list(dict.fromkeys(summary.architecture))
    figure, ax = plt.subplots(figsize=(6.0, 3.6))
    for offset, (size, group) in zip((-0.15, 0.15), summary.groupby("size", sort=False)):
        group = group.set_index("architecture").loc[[n for n in names if n in set(group.architecture)]]
        x = np.array([names.index(n) for n in group.index]) + offset
        ax.errorbar(x, group[column], yerr=[group[column] - group[f"{column} low"],
                                            group[f"{column} high"] - group[column]],
                    fmt="o", capsize=3, label=size)
        for xi, (_, row) in zip(x, group.iterrows()):
            ax.annotate(f"{row.parameters / 1000:.0f}k", (xi, row[column]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
    ax.set_xticks(range(len(names)), names)
    ax.set(ylabel=column.replace("_", " "))
    ax.legend(fontsize=8, title="size (labels: parameters)", title_fontsize=8)
    figure.tight_layout()
    return figure


def plot_learning_curve(curve: LearningCurve) -> plt.Figure:
    """Held-out Dice of each structure against the number of labelled volumes, mean and 95 % interval over seeds."""
    summary = curve.summary()
    figure, ax = plt.subplots(figsize=(5.4, 3.6))
    for column, name in (("dice_large", "large structure"), ("dice_small", "small structure")):
        ax.errorbar(summary.volumes, summary[column],
                    yerr=[summary[column] - summary[f"{column} low"], summary[f"{column} high"] - summary[column]],
                    fmt="o-", capsize=3, label=name)
    ax.set(xlabel=f"labelled training volumes ({curve.slices_per_volume} slices each)", ylabel="held-out Dice",
           ylim=(-0.02, 1.02), xticks=list(summary.volumes))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_pixel_losses(study: PixelLossStudy, value: float) -> plt.Figure:
    """One held-out image: input, an impulse-noise target, both networks' outputs, and a line profile."""
    e = study.example
    names = [("noisy input", e["input"]), ("a training target", e["target"]), ("clean", e["clean"]),
             ("L2 output", e.get("l2")), ("L1 output", e.get("l1"))]
    names = [(n, im) for n, im in names if im is not None]
    figure, axes = plt.subplots(1, len(names) + 1, figsize=(2.3 * (len(names) + 1) + 1.5, 2.6),
                                gridspec_kw={"width_ratios": [1] * len(names) + [1.8]})
    low, high = float(e["clean"].min()), float(e["clean"].max()) + 0.5
    for ax, (name, image) in zip(axes, names):
        ax.imshow(image, cmap="gray", vmin=low, vmax=high)
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    row = int(np.argmax(e["clean"].max(axis=1)))
    ax = axes[-1]
    ax.plot(e["clean"][row], "k-", lw=1, label="clean (the median)")
    ax.plot(e["clean"][row] + study.fraction * (value - e["clean"][row]), "k--", lw=1, label="mean of targets")
    for name, style in (("l2", "C0-"), ("l1", "C1-")):
        if name in e:
            ax.plot(e[name][row], style, lw=1, label=f"{name.upper()} output")
    ax.set(xlabel="pixel along the row", title=f"row {row}")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=6)
    figure.tight_layout()
    return figure


def plot_gallery(reference: np.ndarray, images: Mapping[str, np.ndarray], table: pd.DataFrame) -> plt.Figure:
    """The reference and each equally-MSE degraded image, titled with its PSNR and SSIM."""
    figure, axes = plt.subplots(1, 1 + len(images), figsize=(2.5 * (1 + len(images)), 2.9))
    axes[0].imshow(reference, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("reference", fontsize=9)
    rows = table.set_index("degradation")
    for ax, (kind, image) in zip(axes[1:], images.items()):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{kind}\nPSNR {rows.loc[kind, 'PSNR [dB]']:.1f} dB, SSIM {rows.loc[kind, 'SSIM']:.2f}",
                     fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_restorations(images_hu: Mapping[str, np.ndarray], crop: tuple[slice, slice] | None = None,
                      difference_to: str | None = "full dose") -> plt.Figure:
    """Each image (abdomen window) and, below, its difference to ``difference_to`` (+-100 HU)."""
    crop = crop or (slice(None), slice(None))
    names = list(images_hu)
    rows = 2 if difference_to else 1
    figure, axes = plt.subplots(rows, len(names), figsize=(2.6 * len(names), 2.7 * rows), squeeze=False)
    low, high = ABDOMEN_WINDOW[0] - ABDOMEN_WINDOW[1] / 2, ABDOMEN_WINDOW[0] + ABDOMEN_WINDOW[1] / 2
    for col, name in enumerate(names):
        axes[0, col].imshow(images_hu[name][crop], cmap="gray", vmin=low, vmax=high)
        axes[0, col].set_title(name, fontsize=9)
        if difference_to and name != difference_to:
            axes[1, col].imshow((images_hu[name] - images_hu[difference_to])[crop], cmap="RdBu_r", vmin=-100, vmax=100)
            axes[1, col].set_title(f"{name} − {difference_to} (±100 HU)", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_imputation(study: ImputationStudy) -> plt.Figure:
    """One held-out slice: the available sequence, the missing one, and each imputation with its error."""
    e = study.example
    names = [n for n in ("source", "target (clean)", "intensity map", "U-Net") if n in e]
    figure, axes = plt.subplots(2, len(names), figsize=(2.4 * len(names), 4.9), squeeze=False)
    for col, name in enumerate(names):
        axes[0, col].imshow(e[name], cmap="gray", vmin=0, vmax=1.2)
        axes[0, col].set_title({"source": "available: T1 fat-sat", "target (clean)": "missing: T1 (truth)"}.get(name, name),
                               fontsize=8)
        if name in ("intensity map", "U-Net"):
            axes[1, col].imshow(e[name] - e["target (clean)"], cmap="RdBu_r", vmin=-0.4, vmax=0.4)
            axes[1, col].set_title(f"{name} − truth (±0.4)", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure
