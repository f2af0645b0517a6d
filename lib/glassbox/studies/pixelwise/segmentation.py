"""Sections 1-3 of the notes: segmentation losses, uncertain labels, architectures and labelled data."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch import Tensor

from glassbox.data import shapes
from glassbox.measure import image_metrics
from glassbox.models import segnets
from glassbox.studies.pixelwise.config import PixelwiseConfig, PixelwiseError, interval_of, replicate_seed
from glassbox.studies.pixelwise.jobs import (
    architecture_jobs,
    binary_jobs,
    curve_jobs,
    fetch,
    loss_jobs,
    rated_data,
    scenes_data,
    soft_label_jobs,
)
from glassbox.training import losses
from glassbox.training import segmentation as seg

# ------------------------------------------------------------------------------------------------
# Section 1: how much of each loss a small structure owns

def blurred_prediction_logits(labels: Tensor, n_classes: int, sigma: float) -> Tensor:
    """Log-probabilities of a prediction that is right but unsure near boundaries.

    The one-hot labels are blurred with a Gaussian of ``sigma`` pixels and renormalised (a floor of
    1e-4 keeps the logarithm finite), which is roughly what a trained network outputs.
    """
    if sigma <= 0:
        raise PixelwiseError(f"sigma must be > 0 pixels, got {sigma!r}")
    onehot = losses.one_hot(labels, n_classes, like=torch.zeros((), dtype=torch.float64)).numpy()
    blurred = ndimage.gaussian_filter(onehot, sigma=(0, 0, sigma, sigma), mode="nearest")
    blurred = np.maximum(blurred, 1e-4)
    blurred /= blurred.sum(axis=1, keepdims=True)
    return torch.from_numpy(np.log(blurred))


def share_per_scene(config: PixelwiseConfig, seed: int) -> pd.DataFrame:
    """Share of BCE, CE and Dice loss owned by the small structure: one row per (radius, scene, loss).

    For every radius in ``config.share_radii`` and ``config.share_scenes`` scenes, the prediction is
    :func:`blurred_prediction_logits` of the true labels (the same boundary uncertainty for both structures).
    """
    scene_config = config.shapes_config()
    rows = []
    for radius in config.share_radii:
        for scene in range(config.share_scenes):
            rng = np.random.default_rng([seed, scene])
            labels = shapes.scene_labels(scene_config, rng, small_radius=float(radius))
            label_tensor = torch.from_numpy(labels)[None]
            logits = blurred_prediction_logits(label_tensor, shapes.N_CLASSES, config.share_blur)
            shares = losses.small_structure_share(logits, label_tensor, shapes.SMALL)
            fraction = float((labels == shapes.SMALL).mean())
            rows += [{"radius": float(radius), "scene": scene, "pixel_fraction": fraction, "loss": name,
                      "share": value} for name, value in shares.items()]
    return pd.DataFrame(rows)


def share_at_task_size(config: PixelwiseConfig, seed: int) -> pd.DataFrame:
    """The same shares for ``share_scenes`` scenes of the training task itself (radii drawn from its ranges)."""
    rows = []
    for scene in range(config.share_scenes):
        labels = shapes.scene_labels(config.shapes_config(), np.random.default_rng([seed, 1_000 + scene]))
        label_tensor = torch.from_numpy(labels)[None]
        logits = blurred_prediction_logits(label_tensor, shapes.N_CLASSES, config.share_blur)
        shares = losses.small_structure_share(logits, label_tensor, shapes.SMALL)
        rows += [{"scene": scene, "pixel_fraction": float((labels == shapes.SMALL).mean()), "loss": name,
                  "share": value} for name, value in shares.items()]
    return pd.DataFrame(rows)


def share_vs_size(config: PixelwiseConfig, seed: int) -> pd.DataFrame:
    """Mean share of each loss (and the small structure's pixel fraction) per radius: one row per (radius, loss)."""
    frame = share_per_scene(config, seed)
    return frame.groupby(["radius", "loss"], as_index=False)[["pixel_fraction", "share"]].mean()


def exercise_prediction(config: PixelwiseConfig, seed: int) -> tuple[Tensor, Tensor]:
    """(labels (1, H, W), logits (1, K, H, W)): the scene of :func:`missed_structure_table` and the blurred
    prediction of the loss-share figure for it. Exercise 1 scores this pair."""
    labels = torch.from_numpy(shapes.scene_labels(config.shapes_config(), np.random.default_rng(seed)))[None]
    return labels, blurred_prediction_logits(labels, shapes.N_CLASSES, config.share_blur)


def missed_structure_table(config: PixelwiseConfig, seed: int, confidence: float = 0.95) -> pd.DataFrame:
    """Each loss for a confident correct prediction and for the same prediction with the small structure missed.

    The second prediction labels the small structure's pixels as background with the same
    confidence. Columns: loss, ``correct``, ``missed``, ``relative increase`` (missed / correct - 1).
    """
    if not 0.5 < confidence < 1:
        raise PixelwiseError(f"confidence must be in (0.5, 1), got {confidence!r}")
    labels = exercise_prediction(config, seed)[0]
    other = (1 - confidence) / (shapes.N_CLASSES - 1)
    correct = torch.full((1, shapes.N_CLASSES, *labels.shape[1:]), other, dtype=torch.float64)
    correct.scatter_(1, labels[:, None], confidence)
    missed = correct.clone()
    region = labels[0] == shapes.SMALL
    missed[0, shapes.SMALL][region] = other
    missed[0, shapes.BACKGROUND][region] = confidence
    rows = []
    for name in ("bce", "ce", "dice"):
        loss = losses.segmentation_loss(name)
        values = [float(loss(p.log(), labels)) for p in (correct, missed)]
        rows.append({"loss": name, "correct": values[0], "missed": values[1],
                     "relative increase": values[1] / values[0] - 1})
    return pd.DataFrame(rows)


@dataclass
class LossShares:
    """Section 1's loss-share numbers: per scene and radius, per radius (means), at the training task's own
    sizes, and the missed-structure table."""

    per_scene: pd.DataFrame
    by_radius: pd.DataFrame
    task: pd.DataFrame
    missed: pd.DataFrame
    n_classes: int = shapes.N_CLASSES

    def at_task_size(self, loss: str) -> np.ndarray:
        """The share of ``loss`` (BCE, CE or Dice) in every scene of the training task."""
        return self.task[self.task.loss == loss]["share"].to_numpy()


def loss_shares(config: PixelwiseConfig, seed: int) -> LossShares:
    """Section 1, no training: loss shares against size, and what each loss says when a structure is missed."""
    per_scene = share_per_scene(config, seed)
    by_radius = per_scene.groupby(["radius", "loss"], as_index=False)[["pixel_fraction", "share"]].mean()
    return LossShares(per_scene, by_radius, share_at_task_size(config, seed), missed_structure_table(config, seed))


# ------------------------------------------------------------------------------------------------
# Section 1: training with each loss

def segmentation_data(config: PixelwiseConfig, seed: int) -> tuple[shapes.SegmentationSet, shapes.SegmentationSet]:
    """(train, test) scene sets of the loss section; the test scenes come from a different seed stream."""
    return scenes_data(config, seed).build()


def results_table(results: Sequence[Mapping[str, Any]], **columns: Sequence[Any]) -> pd.DataFrame:
    """One row per trained network: architecture, loss, parameters, scores and training seconds (+ ``columns``)."""
    frame = pd.DataFrame([{"architecture": r["architecture"], "loss": r["loss"], "parameters": r["parameters"],
                           **r["scores"], "seconds": r["seconds"]} for r in results])
    for name, values in columns.items():
        frame.insert(0, name, list(values))
    return frame


@dataclass
class LossStudy:
    """Section 1's trained networks: one per loss and replicate, with per-epoch held-out scores."""

    results: list[dict[str, Any]]
    replicates: list[int]
    table: pd.DataFrame
    small_dice_per_image: dict[str, np.ndarray]   # loss -> (replicates, test images)
    small_probability_inside: dict[str, float]    # loss -> mean small-class probability inside the small structure
    first_reach: dict[str, int | None]            # loss -> first epoch with held-out small Dice >= reach_level


def loss_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
               progress: bool = True) -> LossStudy:
    """Train ``config.loss_architecture`` with each loss (same initial weights and data order per replicate)."""
    jobs = loss_jobs(config, seed)
    results = [fetch(job, device, progress) for job in jobs]
    replicates = [job.seed for job in jobs]
    _, test = segmentation_data(config, seed)
    per_image: dict[str, list[np.ndarray]] = {}
    inside: dict[str, list[float]] = {}
    for job, result in zip(jobs, results):
        model = seg.segmenter_from_result(result)
        per_image.setdefault(job.loss, []).append(seg.per_image_dice(model, test.images, test.labels, shapes.SMALL))
        probs = seg.predicted_probabilities(model, test.images) if job.loss != "bce" else \
            torch.sigmoid(segnets.predict_logits(model, test.images))
        inside.setdefault(job.loss, []).append(float(probs[:, shapes.SMALL][test.labels == shapes.SMALL].mean()))
    first = {job.loss: seg.first_epoch_reaching(result["history"], "dice_small", config.reach_level)
             for job, result in zip(jobs, results) if job.seed == replicate_seed(seed, 0)}
    return LossStudy(results, replicates, results_table(results, seed=replicates),
                     {k: np.stack(v) for k, v in per_image.items()}, {k: float(np.mean(v)) for k, v in inside.items()},
                     first)


# ------------------------------------------------------------------------------------------------
# Section 1: uncertain labels

@dataclass
class SoftLabelStudy:
    """Soft-target against majority-vote training: per replicate, calibration and Dice on held-out scenes."""

    rows: pd.DataFrame                                  # target, seed, two calibration errors, nll, Dice
    reliability: dict[str, dict[str, np.ndarray]]      # target -> bins of the first replicate
    example: shapes.RatedSet                            # held-out scenes (for the figure)
    predictions: dict[str, Tensor]                     # target -> probabilities of the first replicate

    def paired(self, column: str) -> np.ndarray:
        """Per replicate: majority-vote value minus soft-target value of ``column``."""
        wide = self.rows.pivot(index="seed", columns="target", values=column)
        return (wide["majority"] - wide["soft"]).to_numpy()


def soft_label_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                     progress: bool = True) -> SoftLabelStudy:
    """The same network trained on the raters' p(y = k) and on their majority vote, scored against the raters."""
    jobs = soft_label_jobs(config, seed)
    _, test = rated_data(config, seed).build()
    disagree = test.soft.max(dim=1).values < 1            # pixels where the raters do not all agree
    rows, reliability, predictions = [], {}, {}
    for job in jobs:
        result = fetch(job, device, progress)
        probs = seg.predicted_probabilities(seg.segmenter_from_result(result), test.images)
        nll = float(losses.cross_entropy_loss(probs.clamp_min(1e-6).log().double(), test.soft.double()))
        rows.append({"target": job.target, "seed": job.seed,
                     "ece where raters disagree": image_metrics.calibration_error(
                         probs, test.soft, config.calibration_bins, mask=disagree),
                     "ece all pixels": image_metrics.calibration_error(probs, test.soft, config.calibration_bins),
                     "nll": nll, **{k: v for k, v in result["scores"].items() if k.startswith("dice")}})
        if job.seed == replicate_seed(seed, 0):
            reliability[job.target] = image_metrics.reliability_bins(probs, test.soft, config.calibration_bins,
                                                                     mask=disagree)
            predictions[job.target] = probs
    return SoftLabelStudy(pd.DataFrame(rows), reliability, test, predictions)


# ------------------------------------------------------------------------------------------------
# Section 2: the binary network

@dataclass
class BinaryStudy:
    """The notes' binary network (one sigmoid output, BCE) against two softmax outputs with CE."""

    rows: pd.DataFrame            # output, seed, parameters, dice_large, boundary_accuracy
    identity_error: float         # max |sigmoid(a1 - a0) - softmax(a0, a1)_1| on random logits

    def paired(self, column: str = "dice_large") -> np.ndarray:
        wide = self.rows.pivot(index="seed", columns="output", values=column)
        return (wide["sigmoid + BCE"] - wide["softmax + CE"]).to_numpy()


def sigmoid_softmax_gap(n: int = 10_000, seed: int = 0) -> float:
    """Largest |sigmoid(a1 - a0) - softmax([a0, a1])[1]| and |BCE - CE| over random logits (0 up to rounding)."""
    g = torch.Generator().manual_seed(seed)
    logits = 6 * torch.randn(n, 2, 1, 1, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (n, 1, 1), generator=g)
    sigmoid = torch.sigmoid(logits[:, 1] - logits[:, 0])
    softmax = torch.softmax(logits, dim=1)[:, 1]
    bce = losses.bce_loss((logits[:, 1] - logits[:, 0])[:, None], labels[:, None].double(), reduction="none")
    ce = losses.cross_entropy_loss(logits, labels, reduction="none")
    return float(max((sigmoid - softmax).abs().max(), (bce[:, 0] - ce).abs().max()))


def binary_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                 progress: bool = True) -> BinaryStudy:
    """Train the binary task (large structure against the rest) both ways, ``binary_seeds`` times."""
    rows = []
    for job in binary_jobs(config, seed):
        result = fetch(job, device, progress)
        rows.append({"output": "sigmoid + BCE" if job.loss == seg.BINARY_LOSS else "softmax + CE", "seed": job.seed,
                     "parameters": result["parameters"], "dice_large": result["scores"]["dice_large"],
                     "boundary_accuracy": result["scores"]["boundary_accuracy"]})
    return BinaryStudy(pd.DataFrame(rows), sigmoid_softmax_gap(seed=seed))


# ------------------------------------------------------------------------------------------------
# Section 2: architectures

@dataclass
class ArchitectureStudy:
    """Every architecture as built and at matched size, over replicates: one row per trained network."""

    rows: pd.DataFrame
    results: list[dict[str, Any]]
    test: shapes.SegmentationSet

    def summary(self) -> pd.DataFrame:
        """Mean and 95 % t interval over replicates of boundary accuracy and small Dice, per (size, architecture)."""
        out = []
        for (size, name), group in self.rows.groupby(["size", "architecture"], sort=False):
            entry = {"size": size, "architecture": name, "parameters": int(group.parameters.iloc[0]),
                     "width": float(group.width.iloc[0]), "seeds": len(group)}
            for column in ("boundary_accuracy", "dice_small", "dice_large"):
                mean, lo, hi = interval_of(group[column])
                entry |= {column: mean, f"{column} low": lo, f"{column} high": hi}
            out.append(entry)
        return pd.DataFrame(out)

    def paired(self, size: str, a: str, b: str, column: str = "boundary_accuracy") -> np.ndarray:
        """Per replicate: ``a``'s value minus ``b``'s at ``size`` (``as built`` or ``matched``)."""
        part = self.rows[self.rows["size"] == size].pivot(index="seed", columns="architecture", values=column)
        return (part[a] - part[b]).to_numpy()


def architecture_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                       progress: bool = True) -> ArchitectureStudy:
    """Each architecture trained ``arch_seeds`` times as built and at the matched parameter count."""
    rows, results = [], []
    for size, job in architecture_jobs(config, seed):
        result = fetch(job, device, progress)
        results.append(result)
        rows.append({"size": size, "architecture": job.architecture, "seed": job.seed, "width": job.width,
                     "parameters": result["parameters"], **result["scores"], "seconds": result["seconds"]})
    _, test = scenes_data(config, seed, config.arch_n_train, config.repeat_image_size).build()
    return ArchitectureStudy(pd.DataFrame(rows), results, test)


def architecture_overview(config: PixelwiseConfig) -> pd.DataFrame:
    """Per architecture at ``config.width``: parameters in 2-D and as a 3-D network, and the receptive field."""
    rows = []
    for name in segnets.ARCHITECTURES:
        with torch.random.fork_rng(devices=[]):
            model = segnets.build_segnet(name, width=config.width)
        rows.append({"architecture": name, "parameters (2-D)": segnets.count_parameters(model),
                     "parameters (3-D, k×k×k kernels)": segnets.conv3d_parameter_count(model),
                     "receptive field [px]": segnets.receptive_field(model, size=config.image_size)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# Section 3: how many labelled volumes

@dataclass
class LearningCurve:
    """Dice against the number of labelled training volumes: one row per (n_volumes, replicate)."""

    rows: pd.DataFrame
    slices_per_volume: int

    def summary(self) -> pd.DataFrame:
        out = []
        for n, group in self.rows.groupby("volumes"):
            entry = {"volumes": int(n), "slices": int(n) * self.slices_per_volume, "seeds": len(group)}
            for column in ("dice_large", "dice_small", "boundary_accuracy"):
                mean, lo, hi = interval_of(group[column])
                entry |= {column: mean, f"{column} low": lo, f"{column} high": hi}
            out.append(entry)
        return pd.DataFrame(out)

    def gap(self, n_volumes: int, column: str = "dice_large") -> np.ndarray:
        """Per replicate: the value with ``n_volumes`` minus the value with the largest training set."""
        wide = self.rows.pivot(index="replicate", columns="volumes", values=column)
        return (wide[n_volumes] - wide[wide.columns.max()]).to_numpy()


def learning_curve(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                   progress: bool = True) -> LearningCurve:
    """A U-Net trained on 1, 2, ... labelled volumes (random subsets per replicate), equal optimiser steps each."""
    rows = []
    for n, r, job in curve_jobs(config, seed):
        result = fetch(job, device, progress)
        rows.append({"volumes": n, "replicate": r, "seed": job.seed, "chosen": list(job.volumes),
                     "epochs": job.training.epochs, **result["scores"]})
    return LearningCurve(pd.DataFrame(rows), config.volume_slices)
