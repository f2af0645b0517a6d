"""The U-Net training chapter: Qu et al.'s 12 denoisers, their Table I, and the seeding controls.

The grid itself (models, Table I, the paper's numbers) lives in :mod:`glassbox.training.unet_grid`, shared
with the feature-space chapter. This module adds what only this chapter shows: the thread-count control
(:func:`thread_count_experiment`), training curves (:func:`plot_training_curves`) and denoised examples
(:func:`plot_examples`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import torch

from glassbox.core import repro
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.loop import trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig
from glassbox.training.unet_grid import TrainedModel, max_weight_difference

PROFILES = unet_grid.PROFILES
"""This chapter runs on the U-Net grid's profiles (:data:`glassbox.training.unet_grid.PROFILES`)."""


def thread_count_experiment(recipe: DenoiserConfig, pairs: unet_denoiser.Pairs, *, seed: int,
                            threads: tuple[int, int] = (1, 2), max_samples: int = 128, epochs: int = 2
                            ) -> dict[str, float]:
    """Train the same ``fixed``-seeded model on the CPU three times: twice with ``threads[0]`` torch
    threads and once with ``threads[1]``; return the largest weight differences and the PSNR change.

    Identical seeds, data and code: the only change is how many threads split each floating-point
    reduction, i.e. the summation order. The run is shortened to ``epochs`` epochs and at most
    ``max_samples`` training samples (it is a demonstration, not a model of the grid).
    """
    short = dataclasses.replace(recipe, epochs=min(epochs, recipe.epochs),
                                n_patches=None if recipe.n_patches is None else min(recipe.n_patches, max_samples))
    data = unet_denoiser.prepare_data(short, pairs)
    if data.n_train > max_samples:
        keep = list(range(max_samples))
        data = dataclasses.replace(data, train=torch.utils.data.Subset(data.train, keep))
    seeds = trial_seeds("fixed", 0, seed)
    trained = []
    for n in (threads[0], threads[0], threads[1]):
        with repro.threads(n):
            model, _ = unet_denoiser.train_denoiser(short, pairs, seeds, device="cpu", progress=False, data=data)
        trained.append(model)
    psnr = [unet_denoiser.evaluate_denoiser(m, pairs, data.split["test"])["psnr"] for m in trained]
    return {"threads_a": threads[0], "threads_b": threads[1],
            "same_threads_max_weight_difference": max_weight_difference(trained[0], trained[1]),
            "other_threads_max_weight_difference": max_weight_difference(trained[0], trained[2]),
            "other_threads_psnr_difference": abs(psnr[0] - psnr[2]), "epochs": short.epochs,
            "samples": data.n_train}


def plot_training_curves(models: Mapping[tuple[int, str, int], TrainedModel], floor_psnr: float,
                         control: TrainedModel | None = None):
    """Validation PSNR per epoch, one panel per architecture, with the low-dose input's PSNR as the floor."""
    import matplotlib.pyplot as plt

    depths = list(dict.fromkeys(k[0] for k in models))
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.4), sharey=True, squeeze=False)
    styles = {"random": "-", "fixed": "--"}
    for ax, depth in zip(axes[0], depths):
        for (d, seeding, trial), m in models.items():
            if d != depth:
                continue
            frame = m.history.to_frame()
            color = f"C{trial}" if seeding == "random" else f"C{trial + 2}"
            ax.plot(frame["epoch"], frame["val_psnr"], styles[seeding], marker="o", markersize=3,
                    label=f"{seeding}, trial {trial + 1}", color=color)
        if control is not None and control.depth == depth:
            frame = control.history.to_frame()
            ax.plot(frame["epoch"], frame["val_psnr"], ":", color="k", label="paper recipe (control)")
        ax.axhline(floor_psnr, color="grey", lw=1)
        ax.annotate("low-dose input", (0.02, floor_psnr), xycoords=("axes fraction", "data"), fontsize=8,
                    color="grey", va="bottom")
        ax.set_title(f"U-Net-{depth}")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("validation PSNR (dB)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_examples(pairs: unet_denoiser.Pairs, patient: str, slice_index: int, outputs: Mapping[str, torch.nn.Module],
                  *, window: str = "abdomen"):
    """Low-dose input, full-dose target and each model's output for one test slice, PSNR in the titles."""
    from glassbox.measure import image_metrics
    from glassbox.report.plotting import image_grid

    low, full = (np.asarray(a[slice_index], dtype=np.float32) for a in pairs[patient])
    images, titles = [low, full], [f"low dose\n{image_metrics.psnr(low, full, unet_denoiser.PSNR_RANGE_HU):.2f} dB",
                                   "full dose (target)"]
    for name, model in outputs.items():
        out = unet_denoiser.denoise(model, low)
        images.append(out)
        titles.append(f"{name}\n{image_metrics.psnr(out, full, unet_denoiser.PSNR_RANGE_HU):.2f} dB")
    return image_grid(images, titles, window=window, size=2.4)
