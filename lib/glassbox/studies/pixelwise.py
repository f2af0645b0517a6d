"""Experiments of the teaching chapter on pixel-wise prediction (ETH 227-0391-00, Section 6).

The chapter ``book/pixelwise.ipynb`` calls these functions; its knobs are :class:`PixelwiseConfig`
with one entry per profile in :data:`PROFILES`. One section of the notes, one function here:

- Segmentation losses: :func:`loss_shares` (how much of each loss a small structure owns, and what
  each loss says when it is missed) and :func:`loss_study` (one network trained with each loss).
- Uncertain labels: :func:`soft_label_study` (training on the raters' p(y = k) against their majority
  vote, scored for calibration).
- Architectures: :func:`binary_study` (the notes' binary network, sigmoid + BCE, against a two-class
  softmax), :func:`architecture_study` (naive, FCN and U-Nets, as built and at matched parameter
  counts, over several seeds) and :func:`architecture_overview` (receptive fields, 2-D and 3-D sizes).
- Labelled data: :func:`learning_curve` (Dice against the number of labelled training volumes).
- Restoration metrics: :func:`ct_examples`, :func:`equal_mse_gallery`, :func:`degradation_table`,
  :func:`rank_disagreements` and :func:`convention_table`.
- Restoration losses: :func:`pixel_loss_study` (L1 against L2 on targets with impulse noise: median
  against mean) and :func:`restoration_study` (MSE, MSE + perceptual, MSE + adversarial).
- Missing sequences: :func:`imputation_study` (a U-Net and a pixel-wise intensity map impute a
  missing MRI sequence).

Every trained network comes from the artifact store through a :class:`Job` (``glassbox.core.store``);
:func:`plan` lists them all, so a grid can train them before the chapter runs. :func:`claims` and
:func:`checks` turn the results into the chapter's verdicts; the ``check_*`` functions test a student's
answer to each exercise on fresh inputs; the ``plot_*`` functions at the end draw the chapter's figures.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from glassbox.core import dryrun
from glassbox.core.store import get_or_compute
from glassbox.core.tasks import Task
from glassbox.data import degrade, mri, mri_sequences, shapes, tissue_crops
from glassbox.measure import image_metrics, stats
from glassbox.measure.claims import (
    Check,
    Claim,
    Deviation,
    apply_checks,
    equivalence_rule,
    interval_rule,
    quality_check,
)
from glassbox.models import feature_nets, segnets
from glassbox.training import losses
from glassbox.training import restoration as rst
from glassbox.training import segmentation as seg
from glassbox.training.tissue_features import FeatureNetConfig, feature_net_from_state, pretrained_feature_net

CHAPTER = "pixelwise"
SOURCE = "ETH 227-0391-00 §6"
REFERENCE = "eth2025section6"
"""BibTeX key of the course notes: the ``reference`` of every claim whose source is the notes."""
SIMULATED_ONLY = ("its tasks are synthetic shapes, simulated CT and simulated MRI, built so that the right answer "
                  "is known")
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""

ABDOMEN_WINDOW = (40.0, 400.0)          # (centre, width) in HU, the usual soft-tissue window
RESTORATION_LOSSES = rst.RESTORATION_LOSSES


class PixelwiseError(ValueError):
    """A bad argument to one of the chapter's experiments."""


@dataclass(frozen=True)
class PixelwiseConfig:
    """Every knob of the chapter; the defaults are the ``quick`` profile."""

    # segmentation task (glassbox.data.shapes), sizes relative to image_size
    image_size: int = 64
    repeat_image_size: int = 48          # scene size of the sections trained over several seeds (cost ~ pixels)
    n_train: int = 128
    n_test: int = 48
    small_intensity: float = 1.5
    noise: float = 0.35
    width: float = 0.25
    seg_training: seg.SegTraining = seg.SegTraining(epochs=15, batch_size=16, lr=3e-3)
    # losses: one network per loss, with the held-out small-structure Dice after every epoch
    loss_names: tuple[str, ...] = ("ce", "dice")
    loss_architecture: str = "unet-bilinear"
    loss_seeds: int = 1
    reach_level: float = 0.5             # "finds the small structure": held-out small Dice reaches this
    # loss share against size
    share_radii: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    share_scenes: int = 6
    share_blur: float = 1.5
    ce_share_below: float = 0.1          # "L_small << L": the small structure's CE share below 10 %
    # uncertain labels: several raters, soft targets against their majority vote
    n_raters: int = 5
    rater_softness: float = 2.0          # raters see each edge blurred by this many pixels ...
    rater_threshold: tuple[float, float] = (0.15, 0.85)   # ... and draw it at their own level: +-2 px disagreement
    rated_train: int = 64
    rated_test: int = 24
    soft_training: seg.SegTraining = seg.SegTraining(epochs=12, batch_size=8, lr=6e-3, cosine=True)
    soft_width: float = 0.25
    soft_seeds: int = 3
    calibration_bins: int = 10
    soft_dice_margin: float = 0.02       # soft labels "keep" the Dice if the difference is within this
    # the notes' binary network (sigmoid + BCE) against a two-class softmax + CE
    binary_architecture: str = "naive"
    binary_width: float = 0.25
    binary_n_train: int = 64
    binary_training: seg.SegTraining = seg.SegTraining(epochs=8, batch_size=8, lr=6e-3, cosine=True)
    binary_seeds: int = 3
    binary_margin: float = 0.02          # the two parametrisations agree if their Dice differs by less
    # architectures: as built (one width) and at matched parameter counts, over seeds
    architectures: tuple[str, ...] = segnets.ARCHITECTURES
    architecture_loss: str = "dice"
    arch_n_train: int = 64
    arch_training: seg.SegTraining = seg.SegTraining(epochs=15, batch_size=8, lr=6e-3, cosine=True)
    arch_seeds: int = 3
    matched_to: str = "naive"            # every network sized to this one's parameter count at `width`
    up_mode_margin: float = 0.01         # bilinear and transposed up-sampling "alike" within this
    # labelled volumes: learning curve
    volume_slices: int = 12
    curve_volumes: tuple[int, ...] = (1, 3, 5, 10)
    test_volumes: int = 4
    curve_training: seg.SegTraining = seg.SegTraining(epochs=1, batch_size=8, lr=6e-3, cosine=True)  # epochs: steps
    curve_steps: int = 120               # optimiser steps per training, the same for every training-set size
    curve_width: float = 0.25
    intensity_spread: float = 0.4        # each volume's class intensities and noise scaled by 1 +- up to this
    curve_seeds: int = 3
    notes_volumes: int = 5               # the notes: "3 - 5 labeled volumes" suffice for large structures
    curve_margin: float = 0.05           # "suffice": large-structure Dice within this of the largest set's
    # restoration metrics on CT
    ct_size: int = 128
    dose: float = 0.1
    n_ct_test: int = 8
    gallery_mse: float = 4e-3            # on the [0, 1] window scale: PSNR 24 dB
    # L1 against L2 training: targets with impulse noise
    impulse_fraction: float = 0.3
    impulse_value: float = 2.0
    pixel_n_train: int = 64
    pixel_training: rst.RegressorTraining = rst.RegressorTraining(base=8, levels=2, epochs=12, batch_size=8, lr=4e-3,
                                                                  cosine=True)
    pixel_seeds: int = 3
    slope_margin: float = 0.05           # slope equals its prediction (q for L2, 0 for L1) within this
    # perceptual and adversarial demo
    featurenet: FeatureNetConfig = field(default_factory=FeatureNetConfig)
    n_restore_patients: int = 24
    restore_crop: int = 64
    restore_crops_per_image: int = 4
    restore_training: rst.RegressorTraining = rst.RegressorTraining(base=16, levels=2, epochs=10, batch_size=8,
                                                                    lr=1e-3, cosine=True)
    adversarial: rst.AdversarialTraining = rst.AdversarialTraining(perceptual_weight=0.1, adversarial_weight=5e-3,
                                                                   critic_lr=1e-4)
    # imputing a missing MRI sequence
    impute_patients: int = 24
    impute_test_patients: int = 8
    impute_slices: int = 4
    impute_noise: float = 0.03
    impute_training: rst.RegressorTraining = rst.RegressorTraining(base=8, levels=3, epochs=12, batch_size=8, lr=6e-3,
                                                                   cosine=True)
    impute_seeds: int = 3
    mapping_bins: int = 64

    def __post_init__(self) -> None:
        for name in ("loss_seeds", "soft_seeds", "binary_seeds", "arch_seeds", "curve_seeds", "pixel_seeds",
                     "impute_seeds", "n_raters", "volume_slices", "test_volumes", "curve_steps"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < 1:
                raise PixelwiseError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.notes_volumes not in self.curve_volumes:
            raise PixelwiseError(f"curve_volumes {self.curve_volumes} must include notes_volumes={self.notes_volumes}")
        if self.matched_to not in self.architectures:
            raise PixelwiseError(f"matched_to={self.matched_to!r} must be one of architectures {self.architectures}")

    def shapes_config(self, size: int | None = None) -> shapes.ShapesConfig:
        """The scene configuration: a large ellipse of radius 19-28 % and a small disk of 3-5.5 % of the side.

        ``size`` defaults to ``image_size``; the sections repeated over seeds use ``repeat_image_size``.
        """
        size = self.image_size if size is None else size
        return shapes.ShapesConfig(size=size, large_radius=(0.19 * size, 0.28 * size),
                                   small_radius=(max(1.0, 0.03 * size), max(1.5, 0.055 * size)),
                                   small_intensity=self.small_intensity, noise=self.noise)


PROFILES: dict[str, PixelwiseConfig] = {
    "smoke": PixelwiseConfig(
        image_size=40, repeat_image_size=40, n_train=16, n_test=8, width=0.125,
        seg_training=seg.SegTraining(1, 8, 3e-3),
        loss_names=("ce", "dice"),
        share_radii=(1.0, 2.0, 4.0), share_scenes=2,
        n_raters=3, rated_train=8, rated_test=4, soft_training=seg.SegTraining(1, 8, 3e-3), soft_seeds=2,
        binary_n_train=8, binary_training=seg.SegTraining(1, 8, 3e-3), binary_seeds=2,
        arch_n_train=8, arch_training=seg.SegTraining(1, 8, 3e-3), arch_seeds=2,
        volume_slices=4, curve_volumes=(1, 2), notes_volumes=2, test_volumes=1, curve_steps=2, curve_seeds=2,
        curve_width=0.125,
        ct_size=64, n_ct_test=2,
        pixel_n_train=8, pixel_training=rst.RegressorTraining(base=4, levels=2, epochs=1, batch_size=8), pixel_seeds=2,
        featurenet=FeatureNetConfig(size=64, crop=32, crops_per_image=1, n_patients=4, base=4, epochs=1, batch_size=8),
        n_restore_patients=4, restore_crop=32, restore_crops_per_image=1,
        restore_training=rst.RegressorTraining(base=4, levels=2, epochs=1, batch_size=8),
        impute_patients=3, impute_test_patients=2, impute_slices=2,
        impute_training=rst.RegressorTraining(base=4, levels=3, epochs=1, batch_size=8), impute_seeds=2,
        mapping_bins=16),
    "quick": PixelwiseConfig(),
    "paper": PixelwiseConfig(
        image_size=128, n_train=1024, n_test=256, width=1.0, seg_training=seg.SegTraining(60, 16, 3e-3),
        loss_names=("bce", "ce", "dice", "ce+dice"), loss_seeds=5, share_scenes=32,
        rated_train=512, rated_test=128, soft_training=seg.SegTraining(40, 16, 3e-3), soft_width=0.5, soft_seeds=5,
        binary_n_train=512, binary_training=seg.SegTraining(40, 16, 3e-3), binary_width=0.5, binary_seeds=5,
        arch_n_train=1024, arch_training=seg.SegTraining(60, 16, 3e-3), arch_seeds=5,
        repeat_image_size=128, volume_slices=64, curve_volumes=(1, 2, 3, 5, 10, 20), test_volumes=8, curve_steps=2000,
        curve_width=0.5,
        curve_seeds=5, ct_size=256, n_ct_test=16,
        pixel_n_train=512, pixel_training=rst.RegressorTraining(base=16, levels=3, epochs=40, batch_size=16),
        pixel_seeds=5,
        featurenet=FeatureNetConfig(size=256, crop=128, crops_per_image=4, n_patients=400, base=32, epochs=40),
        n_restore_patients=400, restore_crop=128, restore_crops_per_image=4,
        restore_training=rst.RegressorTraining(base=32, levels=2, epochs=60, batch_size=8, lr=1e-3),
        impute_patients=200, impute_test_patients=50, impute_slices=8, impute_seeds=5,
        impute_training=rst.RegressorTraining(base=32, levels=3, epochs=40, batch_size=16)),
}


def replicate_seed(seed: int, replicate: int) -> int:
    """The training seed of replicate ``replicate`` of a chapter run with ``seed`` (init and data order)."""
    return 1000 * int(seed) + int(replicate)


def interval_of(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of a mean (over seeds or test images)."""
    return stats.interval(values)


# ------------------------------------------------------------------------------------------------
# Data specifications (frozen, hashable: they are part of every store key)

@dataclass(frozen=True)
class ScenesData:
    """Training and held-out scenes of :mod:`glassbox.data.shapes`; the test scenes come from another stream."""

    shapes: shapes.ShapesConfig
    n_train: int
    n_test: int
    seed: int

    def build(self) -> tuple[shapes.SegmentationSet, shapes.SegmentationSet]:
        return _scenes(self, dryrun.active())


# The cached builders below take ``dry_run`` as part of their cache key: in a dry run the data generators copy their
# first item (glassbox.core.dryrun), and such data must never serve a real run in the same process.
@functools.lru_cache(maxsize=8)
def _scenes(spec: ScenesData, dry_run: bool = False) -> tuple[shapes.SegmentationSet, shapes.SegmentationSet]:
    return (shapes.make_dataset(spec.n_train, spec.shapes, seed=2 * spec.seed),
            shapes.make_dataset(spec.n_test, spec.shapes, seed=2 * spec.seed + 1))


@dataclass(frozen=True)
class RatedData:
    """Scenes annotated by ``n_raters`` raters; ``target`` is what a network learns: ``soft`` or ``majority``."""

    shapes: shapes.ShapesConfig
    n_train: int
    n_test: int
    n_raters: int
    seed: int
    softness: float = 1.5
    threshold: tuple[float, float] = (0.25, 0.75)

    def build(self) -> tuple[shapes.RatedSet, shapes.RatedSet]:
        return _rated(self, dryrun.active())


@functools.lru_cache(maxsize=4)
def _rated(spec: RatedData, dry_run: bool = False) -> tuple[shapes.RatedSet, shapes.RatedSet]:
    options = {"softness": spec.softness, "threshold": spec.threshold}
    return (shapes.make_rated_set(spec.n_train, spec.n_raters, spec.shapes, seed=2 * spec.seed + 100, **options),
            shapes.make_rated_set(spec.n_test, spec.n_raters, spec.shapes, seed=2 * spec.seed + 101, **options))


@dataclass(frozen=True)
class VolumesData:
    """A pool of labelled volumes (ids ``0 .. pool - 1``) and ``test_volumes`` held-out ones after them."""

    shapes: shapes.ShapesConfig
    n_slices: int
    pool: int
    test_volumes: int
    seed: int
    intensity_spread: float = 0.0

    def build(self) -> tuple[shapes.SegmentationSet, shapes.SegmentationSet]:
        return _volumes(self, dryrun.active())

    def chosen(self, n_volumes: int, replicate: int) -> tuple[int, ...]:
        """The ``n_volumes`` training volumes of one replicate: a random subset of the pool, drawn per replicate."""
        order = np.random.default_rng([self.seed, 7, replicate]).permutation(self.pool)
        return tuple(sorted(int(v) for v in order[:n_volumes]))


@functools.lru_cache(maxsize=4)
def _volumes(spec: VolumesData, dry_run: bool = False) -> tuple[shapes.SegmentationSet, shapes.SegmentationSet]:
    pool = shapes.make_volumes(spec.pool, spec.n_slices, spec.shapes, seed=spec.seed + 500,
                               intensity_spread=spec.intensity_spread)
    test = shapes.make_volumes(spec.test_volumes, spec.n_slices, spec.shapes, seed=spec.seed + 500, first=spec.pool,
                               intensity_spread=spec.intensity_spread)
    return pool, test


# ------------------------------------------------------------------------------------------------
# Jobs: every trained network of the chapter, computed through the store

@dataclass(frozen=True)
class SegmenterJob:
    """One segmentation network: architecture, loss, width, training, data and seed (its store key)."""

    architecture: str
    loss: str
    width: float
    training: seg.SegTraining
    data: ScenesData | RatedData | VolumesData
    seed: int
    target: str = "labels"               # labels | soft | majority | binary-large
    volumes: tuple[int, ...] = ()        # training volumes (VolumesData only)
    validate_every_epoch: bool = False

    entry = "pixelwise-segmenter"

    def training_data(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(images, targets, test images, test labels) for this job."""
        if isinstance(self.data, RatedData):
            train, test = self.data.build()
            targets = {"soft": train.soft, "majority": train.majority}[self.target]
            return train.images, targets, test.images, test.majority
        train, test = self.data.build()
        if isinstance(self.data, VolumesData):
            train = train.select_volumes(self.volumes)
        if self.target == "binary-large":
            return (train.images, (train.labels == shapes.LARGE).float()[:, None], test.images,
                    (test.labels == shapes.LARGE).long())
        return train.images, train.labels, test.images, test.labels

    def compute(self, device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
        images, targets, test_images, test_labels = self.training_data()
        names = ("background", "large") if self.target == "binary-large" else shapes.CLASS_NAMES
        if self.target == "binary-large" and self.loss == "ce":
            targets = targets[:, 0].long()
        return seg.train_segmenter(self.architecture, self.loss, images, targets, width=self.width,
                                   training=self.training, seed=self.seed, test_images=test_images,
                                   test_labels=test_labels, class_names=names,
                                   validate_every_epoch=self.validate_every_epoch, device=device, progress=progress)


@dataclass(frozen=True)
class PixelLossData:
    """Noise-free shapes images (clean), noisy inputs, and targets hit by impulse noise."""

    shapes: shapes.ShapesConfig
    n_train: int
    n_test: int
    fraction: float
    value: float
    seed: int

    def build(self) -> dict[str, Tensor]:
        return _pixel_loss_data(self, dryrun.active())


@functools.lru_cache(maxsize=4)
def _pixel_loss_data(spec: PixelLossData, dry_run: bool = False) -> dict[str, Tensor]:
    out = {}
    for split, n, offset in (("train", spec.n_train, 300), ("test", spec.n_test, 301)):
        data = shapes.make_dataset(n, spec.shapes, seed=2 * spec.seed + offset)
        clean = np.stack([shapes.clean_image(lab, spec.shapes) for lab in data.labels.numpy()])
        rng = np.random.default_rng([spec.seed, offset])
        targets = np.stack([degrade.impulse(c, spec.fraction, spec.value, rng) for c in clean])
        as_tensor = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))[:, None]  # noqa: E731
        out |= {f"{split}_input": data.images, f"{split}_target": as_tensor(targets), f"{split}_clean": as_tensor(clean)}
    return out


@dataclass(frozen=True)
class RegressorJob:
    """One image-to-image network trained with the L1 or L2 loss (impulse-noise targets or a missing sequence)."""

    loss: str
    training: rst.RegressorTraining
    data: PixelLossData | SequencesData
    seed: int

    entry = "pixelwise-regressor"

    def compute(self, device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
        data = self.data.build()
        return rst.train_image_regressor(self.loss, data["train_input"], data["train_target"], self.training,
                                         seed=self.seed, device=device, progress=progress)


@dataclass(frozen=True)
class SequencesData:
    """Training and test patients scanned with two sequences; inputs are the noisy source, targets the noisy target."""

    n_train: int
    n_test: int
    slices: int
    size: int
    noise: float
    seed: int

    def build(self) -> dict[str, Tensor]:
        return _sequences(self, dryrun.active())


@functools.lru_cache(maxsize=2)
def _sequences(spec: SequencesData, dry_run: bool = False) -> dict[str, Any]:
    anatomy = mri.AnatomyConfig(size=spec.size, slices_per_patient=spec.slices)
    scans = mri_sequences.paired_sequences(spec.n_train + spec.n_test, seed=spec.seed + 700, anatomy=anatomy)
    train = scans.patients < spec.n_train
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[:, None]  # noqa: E731
    noisy_source = mri_sequences.add_rician_noise(scans.source, spec.noise, seed=spec.seed + 701)
    noisy_target = mri_sequences.add_rician_noise(scans.target, spec.noise, seed=spec.seed + 702)
    return {"train_input": as_tensor(noisy_source[train]), "train_target": as_tensor(noisy_target[train]),
            "test_input": as_tensor(noisy_source[~train]), "test_target": as_tensor(noisy_target[~train]),
            "test_clean_target": as_tensor(scans.target[~train]), "test_clean_source": as_tensor(scans.source[~train]),
            "test_patients": scans.patients[~train]}


@dataclass(frozen=True)
class CTCropsData:
    """Low- and full-dose training crops (HU / 1000) from simulated patients."""

    n_patients: int
    size: int
    dose: float
    crop: int
    crops_per_image: int
    seed: int

    def build(self) -> dict[str, Tensor]:
        return _ct_crops(self, dryrun.active())


@functools.lru_cache(maxsize=2)
def _ct_crops(spec: CTCropsData, dry_run: bool = False) -> dict[str, Tensor]:
    data = tissue_crops.simulated_ct(spec.n_patients, spec.size, spec.dose, seed=2_000 + spec.seed)
    low, full = tissue_crops.random_crops([data["low"], data["full"]], spec.crop, spec.crops_per_image, spec.seed)
    as_input = lambda a: torch.from_numpy((a / feature_nets.HU_SCALE).astype(np.float32))[:, None]  # noqa: E731
    return {"low": as_input(low), "full": as_input(full)}


@dataclass(frozen=True)
class FeatureNetJob:
    """The CT feature network behind the perceptual loss (the store entry of its own training module)."""

    config: FeatureNetConfig
    seed: int

    entry = "featurenet"

    def key(self) -> dict[str, Any]:
        return {"config": self.config, "seed": self.seed}

    def get(self, device: str | torch.device = "cpu", progress: bool = True) -> tuple[torch.nn.Module, dict]:
        return pretrained_feature_net(self.config, seed=self.seed, device=device, progress=progress)


@dataclass(frozen=True)
class RestorerJob:
    """The CT denoiser trained with MSE, MSE + perceptual or MSE + adversarial."""

    loss: str
    training: rst.RegressorTraining
    extra: rst.AdversarialTraining
    data: CTCropsData
    featurenet: FeatureNetJob
    seed: int

    entry = "pixelwise-restorer"

    def compute(self, device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
        data = self.data.build()
        net = self.featurenet.get(device, progress)[0] if self.loss == "mse+perceptual" else None
        return rst.train_restorer(self.loss, data["low"], data["full"], self.training, self.extra, seed=self.seed,
                                  feature_net=net, device=device, progress=progress)


Job = SegmenterJob | RegressorJob | RestorerJob


def fetch(job: Job, device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """The job's result from the store (trained on a miss): the one ``get_or_compute`` call per job."""
    return get_or_compute(job.entry, job, lambda: _compute(job, device, progress), seed=job.seed, device=device,
                          progress=progress)


_DRY_RUN_RESULTS: dict[Job, dict[str, Any]] = {}


def _dry_run_twin(job: Job) -> Job:
    """``job`` without what changes only numbers, not shapes or code path: seeds, chosen volumes, epochs."""
    if isinstance(job, SegmenterJob):
        return dataclasses.replace(job, seed=0, volumes=(), training=dataclasses.replace(job.training, epochs=1))
    return dataclasses.replace(job, seed=0)


def _compute(job: Job, device: str | torch.device, progress: bool) -> dict[str, Any]:
    """``job.compute``; in a dry run (``glassbox.core.dryrun``) each distinct network is tried once, and replicates
    that differ from it only in seed, volumes or length get its result (the paper profile's 124 networks are about
    20 distinct configurations)."""
    if not dryrun.active():
        _DRY_RUN_RESULTS.clear()
        return job.compute(device, progress)
    twin = _dry_run_twin(job)
    if twin in _DRY_RUN_RESULTS:
        dryrun.note(f"{job.entry}: a replicate of a configuration this dry run tried")
    else:
        _DRY_RUN_RESULTS[twin] = job.compute(device, progress)
    return _DRY_RUN_RESULTS[twin]


# --- the jobs of each section -------------------------------------------------------------------

def scenes_data(config: PixelwiseConfig, seed: int, n_train: int | None = None, size: int | None = None) -> ScenesData:
    return ScenesData(config.shapes_config(size), n_train or config.n_train, config.n_test, seed)


def loss_jobs(config: PixelwiseConfig, seed: int) -> list[SegmenterJob]:
    return [SegmenterJob(config.loss_architecture, name, config.width, config.seg_training, scenes_data(config, seed),
                         replicate_seed(seed, r), validate_every_epoch=True)
            for r in range(config.loss_seeds) for name in config.loss_names]


def rated_data(config: PixelwiseConfig, seed: int) -> RatedData:
    return RatedData(config.shapes_config(config.repeat_image_size), config.rated_train, config.rated_test,
                     config.n_raters, seed, config.rater_softness, config.rater_threshold)


def soft_label_jobs(config: PixelwiseConfig, seed: int) -> list[SegmenterJob]:
    return [SegmenterJob(config.loss_architecture, "ce", config.soft_width, config.soft_training,
                         rated_data(config, seed), replicate_seed(seed, r), target=target)
            for r in range(config.soft_seeds) for target in ("soft", "majority")]


def binary_jobs(config: PixelwiseConfig, seed: int) -> list[SegmenterJob]:
    data = scenes_data(config, seed, config.binary_n_train, config.repeat_image_size)
    return [SegmenterJob(config.binary_architecture, loss, config.binary_width, config.binary_training, data,
                         replicate_seed(seed, r), target="binary-large")
            for r in range(config.binary_seeds) for loss in (seg.BINARY_LOSS, "ce")]


def matched_widths(config: PixelwiseConfig) -> dict[str, tuple[float, int]]:
    """Each architecture's (width, parameters) at the parameter count of ``matched_to`` at ``config.width``."""
    target = segnets.parameter_count(config.matched_to, config.width)
    return {name: (config.width, target) if name == config.matched_to else segnets.width_for_parameters(name, target)
            for name in config.architectures}


def architecture_jobs(config: PixelwiseConfig, seed: int) -> list[tuple[str, SegmenterJob]]:
    """``(size, job)`` pairs: every architecture as built (``config.width``) and at the matched size."""
    data = scenes_data(config, seed, config.arch_n_train, config.repeat_image_size)
    matched = matched_widths(config)
    jobs = []
    for r in range(config.arch_seeds):
        for name in config.architectures:
            for size, width in (("as built", config.width), ("matched", matched[name][0])):
                jobs.append((size, SegmenterJob(name, config.architecture_loss, width, config.arch_training, data,
                                                replicate_seed(seed, r))))
    return jobs


def volumes_data(config: PixelwiseConfig, seed: int) -> VolumesData:
    return VolumesData(config.shapes_config(config.repeat_image_size), config.volume_slices, max(config.curve_volumes),
                       config.test_volumes, seed, config.intensity_spread)


def curve_jobs(config: PixelwiseConfig, seed: int) -> list[tuple[int, int, SegmenterJob]]:
    """``(n_volumes, replicate, job)``: equal optimiser steps for every training-set size."""
    data = volumes_data(config, seed)
    jobs = []
    for r in range(config.curve_seeds):
        for n in config.curve_volumes:
            training = config.curve_training.epochs_for(n * config.volume_slices, config.curve_steps)
            jobs.append((n, r, SegmenterJob(config.loss_architecture, config.architecture_loss, config.curve_width,
                                            training, data, replicate_seed(seed, r), volumes=data.chosen(n, r))))
    return jobs


def pixel_loss_data(config: PixelwiseConfig, seed: int) -> PixelLossData:
    clean_shapes = config.shapes_config(config.repeat_image_size)
    return PixelLossData(clean_shapes, config.pixel_n_train, config.n_test, config.impulse_fraction,
                         config.impulse_value, seed)


def pixel_loss_jobs(config: PixelwiseConfig, seed: int) -> list[RegressorJob]:
    data = pixel_loss_data(config, seed)
    return [RegressorJob(loss, config.pixel_training, data, replicate_seed(seed, r))
            for r in range(config.pixel_seeds) for loss in rst.PIXEL_LOSSES]


def sequences_data(config: PixelwiseConfig, seed: int) -> SequencesData:
    return SequencesData(config.impute_patients, config.impute_test_patients, config.impute_slices,
                         config.image_size, config.impute_noise, seed)


def imputation_jobs(config: PixelwiseConfig, seed: int) -> list[RegressorJob]:
    data = sequences_data(config, seed)
    return [RegressorJob("l1", config.impute_training, data, replicate_seed(seed, r))
            for r in range(config.impute_seeds)]


def featurenet_job(config: PixelwiseConfig, seed: int) -> FeatureNetJob:
    return FeatureNetJob(config.featurenet, seed)


def restoration_crops_data(config: PixelwiseConfig, seed: int) -> CTCropsData:
    return CTCropsData(config.n_restore_patients, config.ct_size, config.dose, config.restore_crop,
                       config.restore_crops_per_image, seed)


def restoration_crops(config: PixelwiseConfig, seed: int) -> dict[str, Tensor]:
    """The denoisers' training crops: ``low`` and ``full`` dose, (N, 1, crop, crop), HU / 1000."""
    return restoration_crops_data(config, seed).build()


def restorer_jobs(config: PixelwiseConfig, seed: int) -> list[RestorerJob]:
    data = restoration_crops_data(config, seed)
    return [RestorerJob(loss, config.restore_training, config.adversarial, data, featurenet_job(config, seed), seed)
            for loss in RESTORATION_LOSSES]


def plan(config: PixelwiseConfig, *, seed: int, device: str | torch.device = "cpu",
         data_dir: str | None = None) -> list[Task]:
    """Every network the chapter trains, as tasks making the chapter's own store calls (see :mod:`glassbox.core.tasks`).

    After each task's ``run()`` the chapter finds all of them in the store and trains nothing.
    """
    if data_dir is not None:
        raise PixelwiseError(f"the pixelwise chapter runs on simulated data only: {SIMULATED_ONLY}")
    jobs: list[Job] = [*loss_jobs(config, seed), *soft_label_jobs(config, seed), *binary_jobs(config, seed),
                       *(job for _, job in architecture_jobs(config, seed)),
                       *(job for _, _, job in curve_jobs(config, seed)), *pixel_loss_jobs(config, seed),
                       *imputation_jobs(config, seed)]
    tasks, seen = [], set()
    for job in jobs:
        task = Task(job.entry, job, run=functools.partial(fetch, job, device, False), label=_label(job))
        if task.key not in seen:                       # shared networks (e.g. the same U-Net in two sections)
            seen.add(task.key)
            tasks.append(task)
    net = featurenet_job(config, seed)
    net_task = Task(net.entry, net.key(), run=functools.partial(net.get, device, False),
                    label=f"CT feature network, seed {seed}")
    tasks.append(net_task)
    for job in restorer_jobs(config, seed):
        deps = (net_task.key,) if job.loss == "mse+perceptual" else ()
        tasks.append(Task(job.entry, job, run=functools.partial(fetch, job, device, False), label=_label(job),
                          deps=deps))
    return tasks


def _label(job: Job) -> str:
    if isinstance(job, SegmenterJob):
        extra = f", volumes {list(job.volumes)}" if job.volumes else ""
        return f"segmenter {job.architecture} / {job.loss} ({job.target}, width {job.width:.3g}{extra}), seed {job.seed}"
    if isinstance(job, RegressorJob):
        return f"regressor {job.loss} on {type(job.data).__name__}, seed {job.seed}"
    return f"CT denoiser {job.loss}, seed {job.seed}"


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


# ------------------------------------------------------------------------------------------------
# Section 4: restoration metrics

def window(hu: np.ndarray, centre: float = ABDOMEN_WINDOW[0], width: float = ABDOMEN_WINDOW[1]) -> np.ndarray:
    """HU mapped linearly to [0, 1] over ``[centre - width / 2, centre + width / 2]`` and clipped."""
    if width <= 0:
        raise PixelwiseError(f"window width must be > 0 HU, got {width!r}")
    return np.clip((np.asarray(hu, dtype=np.float64) - (centre - width / 2)) / width, 0.0, 1.0)


def ct_examples(config: PixelwiseConfig, seed: int) -> dict[str, np.ndarray]:
    """``config.n_ct_test`` simulated slices at ``config.ct_size``: phantom, labels, low and full dose (HU)."""
    return tissue_crops.simulated_ct(config.n_ct_test, config.ct_size, config.dose, seed=1_000 + seed)


def metric_reference_check(low_w: np.ndarray, full_w: np.ndarray) -> pd.DataFrame:
    """Our MSE, NMSE, PSNR and SSIM beside scikit-image's for one image pair, with the absolute difference."""
    from skimage import metrics as skmetrics

    table = pd.DataFrame({
        "glassbox": [image_metrics.mse(low_w, full_w), image_metrics.nmse(low_w, full_w, "energy"),
                     image_metrics.nmse(low_w, full_w, "range"), image_metrics.psnr(low_w, full_w, 1.0),
                     image_metrics.ssim(low_w, full_w, 1.0)],
        "scikit-image": [skmetrics.mean_squared_error(full_w, low_w), skmetrics.normalized_root_mse(full_w, low_w) ** 2,
                         skmetrics.normalized_root_mse(full_w, low_w, normalization="min-max") ** 2,
                         skmetrics.peak_signal_noise_ratio(full_w, low_w, data_range=1.0),
                         skmetrics.structural_similarity(full_w, low_w, data_range=1.0)],
    }, index=["MSE", "NMSE (energy)", "NMSE (range)", "PSNR [dB]", "SSIM"])
    table["|difference|"] = (table["glassbox"] - table["scikit-image"]).abs()
    return table


def equal_mse_gallery(reference: np.ndarray, target_mse: float, data_range: float = 1.0,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every degradation kind of :mod:`glassbox.data.degrade` tuned to the same MSE against ``reference``.

    Returns the metrics table (one row per kind, with the strength used) and the degraded images.
    Equal MSE means equal PSNR; the SSIM column shows how differently the structure suffers.
    """
    rows, images = [], {}
    for kind in degrade.KINDS:
        chosen, image = degrade.match_mse(reference, kind, target_mse, seed=seed)
        images[kind] = image
        strength = {"noise": chosen.noise, "blur": chosen.blur, "shift": chosen.shift,
                    "contrast": 1 - chosen.gain, "offset": chosen.offset}[kind]
        rows.append({"degradation": kind, "strength": strength,
                     **image_metrics.restoration_metrics(image, reference, data_range)})
    return pd.DataFrame(rows), images


def rank_disagreements(table: pd.DataFrame, label: str = "degradation", tolerance: float = 0.1) -> pd.DataFrame:
    """Pairs of rows that PSNR and SSIM order differently (PSNR gap above ``tolerance`` dB)."""
    rows = []
    for (_, a), (_, b) in itertools.combinations(table.iterrows(), 2):
        psnr_gap, ssim_gap = a["PSNR [dB]"] - b["PSNR [dB]"], a["SSIM"] - b["SSIM"]
        if abs(psnr_gap) > tolerance and psnr_gap * ssim_gap < 0:
            better_psnr, better_ssim = (a, b) if psnr_gap > 0 else (b, a)
            rows.append({"better PSNR": better_psnr[label], "better SSIM": better_ssim[label],
                         "PSNR gap [dB]": abs(psnr_gap), "SSIM gap": abs(ssim_gap)})
    return pd.DataFrame(rows, columns=["better PSNR", "better SSIM", "PSNR gap [dB]", "SSIM gap"])


TYPICAL_DEGRADATIONS: dict[str, degrade.Degradation] = {
    "noise σ 0.04": degrade.Degradation(noise=0.04),
    "blur σ 1.5 px": degrade.Degradation(blur=1.5),
    "shift 1 px": degrade.Degradation(shift=1.0),
    "contrast × 0.8": degrade.Degradation(gain=0.8),
    "brightness + 0.06": degrade.Degradation(offset=0.06),
}


def degradation_table(reference: np.ndarray, degradations: Mapping[str, degrade.Degradation] = TYPICAL_DEGRADATIONS,
                      data_range: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """All restoration metrics of each named degradation of ``reference`` (one row per degradation)."""
    return pd.DataFrame([{"degradation": name,
                          **image_metrics.restoration_metrics(degrade.degrade(reference, d, seed), reference, data_range)}
                         for name, d in degradations.items()])


def convention_table(x_hu: np.ndarray, ref_hu: np.ndarray) -> pd.DataFrame:
    """One image pair scored under different conventions: what a metric's number means depends on them."""
    x_w, ref_w = window(x_hu), window(ref_hu)
    width = ABDOMEN_WINDOW[1]
    rows = [
        ("MSE", "HU", "none", image_metrics.mse(x_hu, ref_hu)),
        ("MSE", "abdomen window → [0, 1]", "none", image_metrics.mse(x_w, ref_w)),
        ("NMSE (energy)", "HU", "÷ Σ ref²", image_metrics.nmse(x_hu, ref_hu, "energy")),
        ("NMSE (energy)", "abdomen window → [0, 1]", "÷ Σ ref²", image_metrics.nmse(x_w, ref_w, "energy")),
        ("NMSE (range)", "HU", "÷ (max − min)²", image_metrics.nmse(x_hu, ref_hu, "range")),
        ("PSNR [dB]", "HU", f"data range {width:.0f} HU", image_metrics.psnr(x_hu, ref_hu, width)),
        ("PSNR [dB]", "HU", "data range 2000 HU", image_metrics.psnr(x_hu, ref_hu, 2000.0)),
        ("PSNR [dB]", "HU", "notes: max(ref)", image_metrics.psnr(x_hu, ref_hu, float(np.max(ref_hu)))),
        ("PSNR [dB]", "abdomen window → [0, 1]", "data range 1", image_metrics.psnr(x_w, ref_w, 1.0)),
        ("SSIM", "HU", "data range 2000 HU", image_metrics.ssim(x_hu, ref_hu, 2000.0)),
        ("SSIM", "abdomen window → [0, 1]", "data range 1", image_metrics.ssim(x_w, ref_w, 1.0)),
    ]
    return pd.DataFrame(rows, columns=["metric", "images", "normalisation", "value"])


# ------------------------------------------------------------------------------------------------
# Section 5: L1 against L2 training

def bias_slope(estimate: np.ndarray, clean: np.ndarray, value: float) -> float:
    """Least-squares slope b of ``estimate - clean = a + b (value - clean)`` over all pixels.

    An L2-trained network predicts the mean of its targets, ``clean + q (value - clean)`` for impulse
    noise of rate q, so b = q; an L1-trained one predicts their median, ``clean``, so b = 0.
    """
    e, c = np.asarray(estimate, np.float64).ravel(), np.asarray(clean, np.float64).ravel()
    x = value - c
    x = x - x.mean()
    return float(((e - c) - (e - c).mean()) @ x / (x @ x))


@dataclass
class PixelLossStudy:
    """L1- and L2-trained networks on impulse-noise targets: per replicate, slope, MAE and PSNR against the clean image."""

    rows: pd.DataFrame
    fraction: float
    example: dict[str, np.ndarray]     # input, target, clean, l1, l2 of one held-out image (first replicate)


def pixel_loss_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                     progress: bool = True) -> PixelLossStudy:
    """The same residual U-Net trained with L1 and with L2 on the same noisy inputs and impulse-noise targets."""
    data = pixel_loss_data(config, seed).build()
    clean = data["test_clean"].numpy()
    rows, example = [], {"input": data["test_input"][0, 0].numpy(), "target": data["test_target"][0, 0].numpy(),
                         "clean": clean[0, 0]}
    for job in pixel_loss_jobs(config, seed):
        result = fetch(job, device, progress)
        estimate = rst.apply_regressor(result, data["test_input"]).numpy()
        history = result["history"]
        rows.append({"loss": job.loss, "seed": job.seed,
                     "slope": bias_slope(estimate, clean, config.impulse_value),
                     "MAE vs clean": image_metrics.mae(estimate, clean),
                     "mean bias": float((estimate - clean).mean()),
                     "loss last / first epoch": history[-1]["train_loss"] / history[0]["train_loss"]})
        if job.seed == replicate_seed(seed, 0):
            example[job.loss] = estimate[0, 0]
    rows.append({"loss": "noisy input", "seed": None, "slope": bias_slope(data["test_input"].numpy(), clean,
                                                                            config.impulse_value),
                 "MAE vs clean": image_metrics.mae(data["test_input"].numpy(), clean),
                 "mean bias": float((data["test_input"].numpy() - clean).mean())})
    return PixelLossStudy(pd.DataFrame(rows), config.impulse_fraction, example)


# ------------------------------------------------------------------------------------------------
# Section 5: perceptual and adversarial losses on CT

def high_frequency_ratio(x: np.ndarray, ref: np.ndarray, sigma: float = 1.0, mask: np.ndarray | None = None) -> float:
    """Energy of ``x``'s fine detail (x minus its Gaussian blur) relative to ``ref``'s, inside ``mask``.

    Below 1: the estimate is smoother than the reference (over-smoothing, the classic MSE look).
    """
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise PixelwiseError(f"x and ref must have the same shape, got {x.shape} and {ref.shape}")
    sigmas = (0,) * (x.ndim - 2) + (sigma, sigma)
    detail_x, detail_ref = x - ndimage.gaussian_filter(x, sigmas), ref - ndimage.gaussian_filter(ref, sigmas)
    region = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
    return float(np.sqrt((detail_x[region] ** 2).mean() / (detail_ref[region] ** 2).mean()))


def _soft_tissue(labels: np.ndarray) -> np.ndarray:
    from glassbox.data.phantoms import TISSUE_LABELS

    return np.isin(labels, [TISSUE_LABELS[k] for k in ("liver", "spleen", "muscle", "kidney")])


def restoration_scores(estimates_hu: np.ndarray, full_hu: np.ndarray, phantom_labels: np.ndarray | None = None,
                       ) -> dict[str, float]:
    """PSNR / SSIM in the abdomen window (data range 1), MAE in HU, and fine-detail ratio in soft tissue."""
    rows = per_slice_scores(estimates_hu, full_hu, phantom_labels)
    return {name: float(rows[name].mean()) for name in rows.columns}


def per_slice_scores(estimates_hu: np.ndarray, full_hu: np.ndarray, phantom_labels: np.ndarray | None = None,
                     ) -> pd.DataFrame:
    """:func:`restoration_scores` for every slice (the unit of the intervals over test slices)."""
    x, ref = window(estimates_hu), window(full_hu)
    rows = []
    for i in range(len(x)):
        mask = _soft_tissue(phantom_labels[i]) if phantom_labels is not None else None
        rows.append({"PSNR [dB]": image_metrics.psnr(x[i], ref[i], 1.0), "SSIM": image_metrics.ssim(x[i], ref[i], 1.0),
                     "MAE [HU]": image_metrics.mae(estimates_hu[i], full_hu[i]),
                     "detail ratio": high_frequency_ratio(estimates_hu[i], full_hu[i], mask=mask)})
    return pd.DataFrame(rows)


def denoise(result: Mapping[str, Any], low_hu: np.ndarray) -> np.ndarray:
    """Apply a trained denoiser to low-dose images in HU (N, H, W); returns HU."""
    inputs = torch.from_numpy((np.asarray(low_hu) / feature_nets.HU_SCALE).astype(np.float32))[:, None]
    return rst.apply_regressor(result, inputs)[:, 0].numpy().astype(np.float64) * feature_nets.HU_SCALE


@dataclass
class RestorationStudy:
    """The three CT denoisers, their outputs on held-out slices and the scores (mean table and per slice)."""

    feature_record: dict[str, Any]
    restorers: dict[str, dict[str, Any]]
    outputs: dict[str, np.ndarray]
    table: pd.DataFrame
    per_slice: dict[str, pd.DataFrame]

    def paired(self, a: str, b: str, column: str) -> np.ndarray:
        """Per held-out slice: ``a``'s score minus ``b``'s."""
        return (self.per_slice[a][column] - self.per_slice[b][column]).to_numpy()


def restoration_study(config: PixelwiseConfig, seed: int, examples: Mapping[str, np.ndarray],
                      device: str | torch.device = "cpu", progress: bool = True) -> RestorationStudy:
    """The feature network, then the denoiser with each restoration loss, scored on ``examples``."""
    _, record = featurenet_job(config, seed).get(device, progress)
    restorers = {job.loss: fetch(job, device, progress) for job in restorer_jobs(config, seed)}
    outputs = {"low dose": np.asarray(examples["low"])} | {name: denoise(result, examples["low"])
                                                            for name, result in restorers.items()}
    per_slice = {name: per_slice_scores(images, examples["full"], examples["labels"]) for name, images in outputs.items()}
    table = pd.DataFrame({name: frame.mean() for name, frame in per_slice.items()}).T
    return RestorationStudy(record, restorers, outputs, table, per_slice)


# ------------------------------------------------------------------------------------------------
# Section 6: imputing a missing sequence

def fit_intensity_map(source: np.ndarray, target: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The best pixel-wise imputation without context: the mean target in each of ``bins`` source-intensity bins.

    Returns (bin edges, mean target per bin); empty bins take the nearest filled bin's value.
    """
    s, t = np.asarray(source, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    edges[-1] += 1e-9
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    means = np.bincount(index, t, bins) / np.maximum(counts, 1)
    filled = np.flatnonzero(counts)
    means = np.interp(np.arange(bins), filled, means[filled])
    return edges, means


def apply_intensity_map(source: np.ndarray, edges: np.ndarray, means: np.ndarray) -> np.ndarray:
    index = np.clip(np.searchsorted(edges, np.asarray(source, np.float64), side="right") - 1, 0, len(means) - 1)
    return means[index]


@dataclass
class ImputationStudy:
    """A missing sequence imputed three ways, scored against the clean target on held-out patients."""

    rows: pd.DataFrame                 # method, seed, MAE, PSNR [dB], SSIM (means over test slices)
    per_slice: dict[str, np.ndarray]   # method -> MAE per test slice (first replicate for the U-Net)
    example: dict[str, np.ndarray]

    def unet_minus(self, method: str, column: str = "MAE") -> np.ndarray:
        """Per replicate: the U-Net's score minus ``method``'s (which does not depend on the replicate)."""
        unet = self.rows[self.rows.method == "U-Net (L1)"][column].to_numpy()
        return unet - float(self.rows[self.rows.method == method][column].iloc[0])


def _image_scores(estimate: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {"MAE": image_metrics.mae(estimate, clean),
            "PSNR [dB]": float(np.mean([image_metrics.psnr(e, c, 1.0) for e, c in zip(estimate, clean)])),
            "SSIM": float(np.mean([image_metrics.ssim(e, c, 1.0) for e, c in zip(estimate, clean)]))}


def imputation_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                     progress: bool = True) -> ImputationStudy:
    """Impute the T1 scan without fat suppression from the fat-suppressed one: copy, intensity map, U-Net."""
    data = sequences_data(config, seed).build()
    source, clean = data["test_input"][:, 0].numpy(), data["test_clean_target"][:, 0].numpy()
    edges, means = fit_intensity_map(data["train_input"].numpy(), data["train_target"].numpy(), config.mapping_bins)
    baselines = {"copy the source": source, "pixel-wise intensity map": apply_intensity_map(source, edges, means)}
    rows, per_slice = [], {}
    for name, estimate in baselines.items():
        rows.append({"method": name, "seed": None, **_image_scores(estimate, clean)})
        per_slice[name] = np.array([image_metrics.mae(e, c) for e, c in zip(estimate, clean)])
    example = {"source": source[0], "target (clean)": clean[0], "intensity map": baselines["pixel-wise intensity map"][0]}
    for job in imputation_jobs(config, seed):
        estimate = rst.apply_regressor(fetch(job, device, progress), data["test_input"])[:, 0].numpy()
        rows.append({"method": "U-Net (L1)", "seed": job.seed, **_image_scores(estimate, clean)})
        if job.seed == replicate_seed(seed, 0):
            per_slice["U-Net (L1)"] = np.array([image_metrics.mae(e, c) for e, c in zip(estimate, clean)])
            example["U-Net"] = estimate[0]
    return ImputationStudy(pd.DataFrame(rows), per_slice, example)


# ------------------------------------------------------------------------------------------------
# The chapter's result, checks and claims

@dataclass
class PixelwiseResult:
    """Everything the chapter computes, section by section (what :func:`claims` and :func:`checks` read)."""

    shares: LossShares
    losses: LossStudy
    soft: SoftLabelStudy
    binary: BinaryStudy
    architectures: ArchitectureStudy
    curve: LearningCurve
    reference_check: pd.DataFrame
    gallery: pd.DataFrame
    disagreements: pd.DataFrame
    n_pairs: int
    pixel_losses: PixelLossStudy
    restoration: RestorationStudy
    imputation: ImputationStudy


def run(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu", progress: bool = True
        ) -> PixelwiseResult:
    """Every experiment of the chapter, in its order (the chapter calls the same functions one by one)."""
    examples = ct_examples(config, seed)
    low_w, full_w = window(examples["low"][0]), window(examples["full"][0])
    typical = degradation_table(full_w, seed=seed)
    return PixelwiseResult(
        loss_shares(config, seed), loss_study(config, seed, device, progress),
        soft_label_study(config, seed, device, progress), binary_study(config, seed, device, progress),
        architecture_study(config, seed, device, progress), learning_curve(config, seed, device, progress),
        metric_reference_check(low_w, full_w), equal_mse_gallery(full_w, config.gallery_mse, seed=seed)[0],
        rank_disagreements(typical), len(typical) * (len(typical) - 1) // 2,
        pixel_loss_study(config, seed, device, progress), restoration_study(config, seed, examples, device, progress),
        imputation_study(config, seed, device, progress))


def checks(result: PixelwiseResult, config: PixelwiseConfig) -> list[Check]:
    """Invariants (raise when broken) and quality checks (shown; a failed one makes its claims inconclusive)."""
    from glassbox.measure.claims import require

    arch = result.architectures.rows
    curve_full = result.curve.rows[result.curve.rows.volumes == max(config.curve_volumes)]
    low_psnr = result.restoration.table.loc["low dose", "PSNR [dB]"]
    pixel = result.pixel_losses.rows
    impute = result.imputation.rows
    copy_mae = float(impute[impute.method == "copy the source"]["MAE"].iloc[0])
    soft_sums = result.soft.example.soft.sum(1)
    record = result.restoration.feature_record
    return [
        require("metrics-match-skimage", "our MSE, NMSE, PSNR and SSIM equal scikit-image's to 1e-9",
                bool((result.reference_check["|difference|"] < 1e-9).all()),
                float(result.reference_check["|difference|"].max()), "< 1e-9"),
        require("gallery-equal-psnr", "the equal-MSE gallery has one PSNR (bisection tolerance)",
                float(np.ptp(result.gallery["PSNR [dB]"])) < 0.2, float(np.ptp(result.gallery["PSNR [dB]"])), "< 0.2 dB"),
        require("sigmoid-is-two-class-softmax", "sigmoid(a1 - a0) equals the two-class softmax, BCE equals CE",
                result.binary.identity_error < 1e-12, result.binary.identity_error, "< 1e-12"),
        require("soft-labels-are-distributions", "the raters' p(y = k) sum to 1 at every pixel",
                bool(torch.allclose(soft_sums, torch.ones_like(soft_sums))), float((soft_sums - 1).abs().max()),
                "0 up to rounding"),
        require("matched-sizes", "matched networks have parameter counts within 5 % of each other",
                _spread(arch[arch["size"] == "matched"].parameters) < 0.05,
                _spread(arch[arch["size"] == "matched"].parameters), "< 0.05 (max / min - 1)"),
        quality_check("loss-nets-learn-large", "every loss-section network segments the large structure "
                      "(held-out Dice of the large structure, lowest network)",
                      float(result.losses.table.dice_large.min()), above=0.7,
                      margin_note=_margin_note(result.losses.table.dice_large, 0.7)),
        quality_check("soft-nets-learn-large", "soft and majority networks segment the large structure (lowest)",
                      float(result.soft.rows.dice_large.min()), above=0.7,
                      margin_note=_margin_note(result.soft.rows.dice_large, 0.7)),
        quality_check("binary-nets-learn", "binary networks segment the large structure (lowest Dice)",
                      float(result.binary.rows.dice_large.min()), above=0.7,
                      margin_note=_margin_note(result.binary.rows.dice_large, 0.7)),
        quality_check("arch-nets-learn-large", "every architecture, size and seed segments the large structure "
                      "(lowest held-out Dice)", float(arch.dice_large.min()), above=0.7,
                      margin_note=_margin_note(arch.dice_large, 0.7)),
        quality_check("curve-full-learns", "the largest training set gives a working network (lowest Dice of the "
                      "large structure over seeds)", float(curve_full.dice_large.min()), above=0.7,
                      margin_note=_margin_note(curve_full.dice_large, 0.7)),
        quality_check("pixel-nets-train", "every L1 and L2 network lowered its training loss (largest ratio of the "
                      "last epoch's loss to the first's)",
                      float(pixel[pixel.loss != "noisy input"]["loss last / first epoch"].max()), below=0.9,
                      margin_note=_margin_note(pixel[pixel.loss != "noisy input"]["loss last / first epoch"], 0.9,
                                               "highest")),
        quality_check("featurenet-beats-chance", "the CT feature network labels tissue above the majority-class rate "
                      "(accuracy minus chance)", float(record["pixel_accuracy"] - record["chance"]), above=0.05),
        quality_check("mse-denoiser-helps", "the MSE denoiser raises PSNR over the low-dose input (dB)",
                      float(result.restoration.table.loc["mse", "PSNR [dB]"] - low_psnr), above=0.0),
        quality_check("imputation-learns", "the U-Net imputes better than copying the source (largest MAE ratio)",
                      float(impute[impute.method == "U-Net (L1)"]["MAE"].max() / copy_mae), below=1.0),
    ]


def _reference(source: str) -> str:
    """The notes' BibTeX key for a claim whose source is the notes; empty for the chapter's own claims."""
    return REFERENCE if source.startswith(SOURCE) else ""


def _spread(values: pd.Series) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(values.max() / values.min() - 1) if len(values) else 0.0


def _margin_note(values: Sequence[float], threshold: float, worst: str = "lowest") -> str:
    """The worst value of this run beside the threshold: how close the check came to failing."""
    values = np.asarray(values, dtype=np.float64)
    value = values.min() if worst == "lowest" else values.max()
    return f"{worst} of {len(values)} networks {value:.3f}; threshold {threshold:g}"


def _interval_claim(id: str, section: str, source: str, statement: str, test: str, values: Sequence[float], *,
                    above: float | None = None, below: float | None = None, unit: str = "", interval_kind: str,
                    depends_on: Sequence[str] = (), paper: float | str | None = None, note: str = "",
                    chance: float | None = None, what: str = "the difference") -> Claim:
    mean, lo, hi = interval_of(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict="inconclusive",
                     rule="needs at least two values for an interval", ours=mean, unit=unit, section=section,
                     note=(note + " " if note else "") + "Only one value: no interval.", depends_on=tuple(depends_on),
                     paper=paper, chance=chance, reference=_reference(source))
    verdict, rule = interval_rule((lo, hi), above=above, below=below, what=what)
    return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict=verdict, rule=rule,
                 ours=mean, interval=(lo, hi), interval_kind=interval_kind, unit=unit, section=section, note=note,
                 depends_on=tuple(depends_on), paper=paper, reference=_reference(source), chance=chance)


def _equivalence_claim(id: str, section: str, source: str, statement: str, test: str, values: Sequence[float], *,
                       margin: float, interval_kind: str, depends_on: Sequence[str] = (), unit: str = "",
                       note: str = "", paper: float | str | None = None, what: str = "the difference",
                       centre: float = 0.0) -> Claim:
    """A claim that ``values`` equal ``centre`` within ``margin`` (ours and its interval are reported as they are)."""
    mean, lo, hi = interval_of(values)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict="inconclusive",
                     rule="needs at least two values for an interval", ours=mean, unit=unit, section=section,
                     note="Only one value: no interval.", depends_on=tuple(depends_on), paper=paper,
                     reference=_reference(source))
    verdict, rule = equivalence_rule((lo - centre, hi - centre), margin, what=what)
    return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict=verdict, rule=rule,
                 ours=mean, interval=(lo, hi), interval_kind=interval_kind, unit=unit, section=section, note=note,
                 depends_on=tuple(depends_on), paper=paper, reference=_reference(source))


def claims(result: PixelwiseResult, config: PixelwiseConfig, checks_: Sequence[Check] = ()) -> list[Claim]:
    """The chapter's verdicts. Thresholds and margins are fields of :class:`PixelwiseConfig`, fixed in advance."""
    seeds = "95 % t interval over training seeds"
    slices = "95 % t interval over held-out CT slices (one network per loss)"
    k = result.shares.n_classes
    loss = result.losses
    small = loss.small_dice_per_image
    arch = result.architectures
    out = [
        _interval_claim(
            "ce-small-share", "pixelwise-loss-shares", f"{SOURCE}, challenge with the cross entropy",
            "L_Ω_small << L_Ω̄_small because |Ω_small| << |Ω̄_small|",
            f"the small structure's share of the cross-entropy in scenes of the training task, for a prediction "
            f"unsure at every boundary; '<<' read as below {config.ce_share_below:g}",
            result.shares.at_task_size("CE"), below=config.ce_share_below,
            interval_kind="95 % t interval over scenes", what="the share"),
        _interval_claim(
            "dice-share-size", "pixelwise-loss-shares", f"{SOURCE}, Sorensen-Dice coefficient",
            "each class DSC loss is equal in magnitude despite having different sizes",
            f"the small structure's share of the Dice loss in the same scenes is at least its equal part 1/K "
            f"(K = {k}), as it would be if its term did not shrink with its size", result.shares.at_task_size("Dice"),
            above=1 / k,
            interval_kind="95 % t interval over scenes", what="the share"),
        _interval_claim(
            "dice-loss-finds-small", "pixelwise-loss-training", f"{SOURCE}, Dice as the alternative to the cross entropy",
            "a Dice loss keeps small structures that the cross entropy lets drown",
            "held-out Dice of the small structure, Dice-loss network minus CE network (same weights at the start, "
            "same data order)", (small["dice"] - small["ce"]).ravel(), above=0.0,
            interval_kind="95 % t interval over held-out scenes" + (" (one training seed)" if config.loss_seeds == 1
                                                                     else f" and {config.loss_seeds} seeds"),
            depends_on=("loss-nets-learn-large",)),
        _interval_claim(
            "soft-labels-calibrate", "pixelwise-soft-labels", f"{SOURCE}, ambiguity in segmentation labels; CE with p(y = k)",
            "training on the raters' p(y = k) instead of one label per pixel gives probabilities that match the "
            "raters' disagreement", "calibration error against the raters on the pixels where they disagree, "
            "majority-vote network minus soft-target network", result.soft.paired("ece where raters disagree"),
            above=0.0, interval_kind=seeds, depends_on=("soft-nets-learn-large",)),
        _equivalence_claim(
            "soft-labels-keep-dice", "pixelwise-soft-labels", "this chapter",
            "soft targets cost no segmentation quality", "held-out Dice of the large structure against the "
            "majority vote, majority-vote network minus soft-target network", result.soft.paired("dice_large"),
            margin=config.soft_dice_margin, interval_kind=seeds, depends_on=("soft-nets-learn-large",)),
        _equivalence_claim(
            "binary-sigmoid-equals-softmax", "pixelwise-binary", f"{SOURCE}, binary segmentation (sigmoid output) and "
            "multi-class segmentation (softmax)",
            "for two classes, one sigmoid output with BCE is the softmax network with CE",
            "held-out Dice of the large structure, sigmoid + BCE minus softmax + CE (same architecture, seeds, data)",
            result.binary.paired("dice_large"), margin=config.binary_margin, interval_kind=seeds,
            depends_on=("binary-nets-learn",)),
    ]
    for name, label in (("fcn", "FCN"), ("unet-bilinear", "U-Net (bilinear up-sampling)"),
                        ("unet-transposed", "U-Net (transposed convolutions)")):
        if name in config.architectures and "naive" in config.architectures:
            out.append(_interval_claim(
                f"{name}-retains-detail", "pixelwise-matched-size", f"{SOURCE}, FCN and U-Net: 'skip connections can retain details'",
                f"{label} keeps detail the single up-sampling loses",
                f"boundary accuracy, {name} minus naive, at matched parameter counts",
                arch.paired("matched", name, "naive"), above=0.0, interval_kind=seeds,
                depends_on=("arch-nets-learn-large",)))
    if {"fcn", "unet-bilinear"} <= set(config.architectures):
        out.append(_interval_claim(
            "unet-beyond-fcn", "pixelwise-matched-size", "this chapter", "concatenated encoder features (U-Net) keep more detail than "
            "fused class scores (FCN)", "boundary accuracy, unet-bilinear minus fcn, at matched parameter counts",
            arch.paired("matched", "unet-bilinear", "fcn"), above=0.0, interval_kind=seeds,
            depends_on=("arch-nets-learn-large",)))
    if {"unet-bilinear", "unet-transposed"} <= set(config.architectures):
        out.append(_equivalence_claim(
            "up-modes-alike", "pixelwise-matched-size", f"{SOURCE}, U-Net up-sampling: bilinear + convolution OR transposed convolution",
            "the two up-sampling options are interchangeable", "boundary accuracy, bilinear minus transposed, at "
            "matched parameter counts", arch.paired("matched", "unet-bilinear", "unet-transposed"),
            margin=config.up_mode_margin, interval_kind=seeds, depends_on=("arch-nets-learn-large",)))
    out += [
        _equivalence_claim(
            "few-volumes-suffice", "pixelwise-labelled-data", f"{SOURCE}, dataset: how big a data set do we need?",
            "3 - 5 labelled volumes train a good U-Net for large structures",
            f"held-out Dice of the large structure with {config.notes_volumes} volumes minus with "
            f"{max(config.curve_volumes)} (equal optimiser steps)", result.curve.gap(config.notes_volumes),
            margin=config.curve_margin, interval_kind=seeds + " (each drawing its own volumes)",
            depends_on=("curve-full-learns",),
            note="Our volumes are synthetic 2-D stacks, not brain MRI; the test is whether the curve flattens by then."),
        _equivalence_claim(
            "few-volumes-small", "pixelwise-labelled-data", "this chapter", "the same few volumes suffice for the small structure",
            f"held-out Dice of the small structure with {config.notes_volumes} volumes minus with "
            f"{max(config.curve_volumes)}", result.curve.gap(config.notes_volumes, "dice_small"),
            margin=config.curve_margin, interval_kind=seeds + " (each drawing its own volumes)",
            depends_on=("curve-full-learns",)),
        _interval_claim(
            "psnr-ssim-disagree", "pixelwise-equal-mse", f"{SOURCE}, PSNR and SSIM",
            "SSIM (local luminance, contrast, structure) measures something other than the MSE behind PSNR",
            "SSIM range over five degradations of equal MSE (equal PSNR); deterministic, so the interval is a point",
            [float(np.ptp(result.gallery["SSIM"]))] * 2, above=0.1, interval_kind="no sampling: one image",
            what="the SSIM range"),
        _equivalence_claim(
            "l2-learns-mean", "pixelwise-l1-l2", f"{SOURCE}, MSE as a training loss",
            "minimising the MSE predicts the mean of the possible targets",
            f"slope of (output - clean) against (impulse value - clean) for the L2 network; the mean of the targets "
            f"has slope q = {config.impulse_fraction:g}", _slopes(result.pixel_losses, "l2"),
            margin=config.slope_margin, interval_kind=seeds, depends_on=("pixel-nets-train",),
            paper=config.impulse_fraction, what="the slope minus q", centre=config.impulse_fraction,
            note="The 'paper' value is the slope of the mean of the targets, not a number from the notes."),
        _equivalence_claim(
            "l1-learns-median", "pixelwise-l1-l2", f"{SOURCE}, MAE as a training loss",
            "minimising the MAE predicts the median of the possible targets",
            "the same slope for the L1 network; the median of the targets has slope 0",
            _slopes(result.pixel_losses, "l1"),
            margin=config.slope_margin, interval_kind=seeds, depends_on=("pixel-nets-train",), paper=0.0,
            what="the slope", note="The 'paper' value is the slope of the median of the targets."),
        _interval_claim(
            "mse-oversmooths", "pixelwise-perceptual-adversarial", f"{SOURCE}, advanced cost functions (motivation)",
            "an MSE-trained denoiser is smoother than the real image", "detail ratio of the MSE denoiser "
            "(fine-detail RMS relative to full dose, soft tissue)", result.restoration.per_slice["mse"]["detail ratio"],
            below=1.0, interval_kind=slices, depends_on=("mse-denoiser-helps",), what="the detail ratio"),
    ]
    for name, label in (("mse+perceptual", "perceptual"), ("mse+adversarial", "adversarial")):
        deps = ("mse-denoiser-helps", "featurenet-beats-chance") if label == "perceptual" else ("mse-denoiser-helps",)
        out += [
            _interval_claim(
                f"{label}-adds-texture", "pixelwise-perceptual-adversarial", f"{SOURCE}, advanced cost function ({label} loss)",
                f"a {label} term restores texture that the MSE smooths away",
                f"detail ratio, {name} minus mse", result.restoration.paired(name, "mse", "detail ratio"), above=0.0,
                interval_kind=slices, depends_on=deps),
            _interval_claim(
                f"{label}-costs-psnr", "pixelwise-perceptual-adversarial", "this chapter (the usual trade-off)",
                f"the {label} term costs PSNR", f"PSNR, {name} minus mse", result.restoration.paired(name, "mse",
                                                                                                  "PSNR [dB]"),
                below=0.0, unit="dB", interval_kind=slices, depends_on=deps),
        ]
    out.append(_interval_claim(
        "imputation-needs-context", "pixelwise-imputation", f"{SOURCE}, missing data in problems requiring multiple sequences",
        "a missing sequence can be imputed by pixel-wise prediction, better with context than pixel by pixel",
        "MAE against the clean target sequence, U-Net minus the best pixel-wise intensity map (held-out patients)",
        result.imputation.unet_minus("pixel-wise intensity map"), below=0.0, interval_kind=seeds,
        depends_on=("imputation-learns",)))
    return apply_checks(out, checks_) if checks_ else out


def _slopes(study: PixelLossStudy, loss: str) -> list[float]:
    return study.rows[study.rows.loss == loss]["slope"].tolist()


# ------------------------------------------------------------------------------------------------
# How this run departs from the notes

def deviations(config: PixelwiseConfig) -> list[Deviation]:
    """How this run's experiments depart from what the notes describe (data, networks, training, loss formulas)."""
    scenes = (f"synthetic scenes ({config.image_size} px; {config.repeat_image_size} px in the sections trained over "
              f"several seeds): a large ellipse and a small disk on a noisy background, {config.n_train} training "
              f"scenes; simulated low-dose CT ({config.ct_size} px, dose {config.dose:g}); simulated breast MRI")
    widths = sorted({config.width, config.soft_width, config.binary_width, config.curve_width})
    trainings = {"losses": config.seg_training, "soft labels": config.soft_training,
                 "binary": config.binary_training, "architectures": config.arch_training}
    lengths = ", ".join(f"{name} {t.epochs} epoch{'' if t.epochs == 1 else 's'}" for name, t in trainings.items())
    seeds = sorted({config.loss_seeds, config.soft_seeds, config.binary_seeds, config.arch_seeds, config.curve_seeds,
                    config.pixel_seeds, config.impute_seeds})
    return [
        Deviation("pixelwise.data", CHAPTER, REFERENCE, "data",
                  "medical images (brain MRI, CT, multi-sequence MRI); the notes name no data set", scenes,
                  "every answer is known by construction, and no medical data can be downloaded at build time"),
        Deviation("pixelwise.volumes", CHAPTER, REFERENCE, "labelled volumes",
                  "3 - 5 labelled 3-D brain MRI volumes (T1w MPRAGE) for large anatomical structures",
                  f"stacks of {config.volume_slices} 2-D slices of {config.repeat_image_size} px, one large and one "
                  f"small synthetic structure, {', '.join(map(str, config.curve_volumes))} training volumes, "
                  f"{config.curve_steps} optimiser steps each, a 2-D U-Net",
                  "no labelled brain MRI offline; a 3-D network on real volumes needs a GPU"),
        Deviation("pixelwise.networks", CHAPTER, REFERENCE, "network size",
                  "the binary network's 32, 128 and 256 channels (I -> 32 -> 128 -> 256 -> 128 -> 32 -> O)",
                  f"the notes' channel counts times {', '.join(f'{w:g}' for w in widths)}; architectures also at a "
                  f"matched parameter count", "the profile's compute budget (CPU on smoke and quick)"),
        Deviation("pixelwise.training", CHAPTER, REFERENCE, "training length and repeats",
                  "not specified (trained to convergence)",
                  f"{lengths}; {' to '.join(map(str, (seeds[0], seeds[-1]))) if len(seeds) > 1 else seeds[0]} "
                  f"training seeds per comparison", "the profile's compute budget; the quick profile's networks are "
                  "not converged"),
        Deviation("pixelwise.loss-formulas", CHAPTER, REFERENCE, "loss formulas",
                  "losses summed over pixels; the Dice ratios summed over classes, without smoothing",
                  "losses averaged over pixels; Dice loss 1 - mean over classes of DSC_k with smoothing 1; logits "
                  "in, the sigmoid or softmax inside the loss", "the same minimisers with a gradient that does not "
                  "grow with the image size, and a defined value for an empty class"),
        Deviation("pixelwise.imputation", CHAPTER, REFERENCE, "missing sequence",
                  "imputing a missing sequence of a real multi-sequence examination",
                  f"two simulated T1-like contrasts (with and without fat suppression) of the same simulated breast "
                  f"anatomy, {config.impute_patients} training and {config.impute_test_patients} test patients, "
                  f"Rician noise {config.impute_noise:g}", "no multi-sequence MRI offline; the clean target is known"),
    ]


def headline_numbers(result: PixelwiseResult) -> dict[str, Any]:
    """The numbers ``results/pixelwise.json`` keeps (tables as lists of records)."""
    return {
        "loss_share_vs_size": result.shares.by_radius, "loss_share_at_task_size": result.shares.task,
        "missed_structure": result.shares.missed,
        "segmentation_by_loss": result.losses.table, "first_epoch_small_dice": result.losses.first_reach,
        "small_probability_inside": result.losses.small_probability_inside,
        "soft_labels": result.soft.rows, "binary_network": result.binary.rows,
        "architectures": result.architectures.rows, "architectures_summary": result.architectures.summary(),
        "learning_curve": result.curve.summary(),
        "metrics_vs_skimage_max_abs_difference": float(result.reference_check["|difference|"].max()),
        "equal_mse_gallery": result.gallery, "psnr_ssim_disagreements": len(result.disagreements),
        "pixel_losses": result.pixel_losses.rows, "restoration": result.restoration.table.reset_index(names="method"),
        "featurenet_pixel_accuracy": float(result.restoration.feature_record["pixel_accuracy"]),
        "featurenet_chance": float(result.restoration.feature_record["chance"]),
        "imputation": result.imputation.rows,
    }


# ------------------------------------------------------------------------------------------------
# Exercise answer checks: each tests a student's function on fresh inputs and says what is wrong

def _attempt(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except NotImplementedError as exc:
        raise AssertionError(f"not done yet: {function.__name__} raises NotImplementedError ({exc})") from None


def check_weighted_cross_entropy(function: Callable[[Tensor, Tensor, Tensor], Tensor], seed: int = 12345) -> str:
    """Exercise 1: ``function(logits, labels, class_weights)`` against torch's weighted cross-entropy."""
    g = torch.Generator().manual_seed(seed)
    for shape in ((2, 3, 5, 7), (1, 4, 6, 6)):
        logits = torch.randn(shape, generator=g, dtype=torch.float64)
        labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        weights = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.1
        expected = F.cross_entropy(logits, labels, weight=weights, reduction="none").mean()
        got = _attempt(function, logits, labels, weights)
        assert isinstance(got, Tensor) and got.ndim == 0, f"return one number (a 0-d tensor), got {got!r:.80}"
        assert torch.allclose(got.double(), expected, rtol=1e-6), (
            f"for logits of shape {shape} the weighted loss should be {float(expected):.6f}, got {float(got):.6f}; "
            "weight each pixel's loss by the weight of its true class, then average over all pixels")
        unweighted = _attempt(function, logits, labels, torch.ones(shape[1], dtype=torch.float64))
        assert torch.allclose(unweighted.double(), F.cross_entropy(logits, labels)), \
            "with all weights 1 the result must be the ordinary cross-entropy"
    return "Exercise 1: correct."


def check_transposed_upsample(function: Callable[[Tensor, Tensor], Tensor], seed: int = 12345) -> str:
    """Exercise 2: ``function(x (H, W), kernel (2, 2))`` against ``conv_transpose2d`` with stride 2."""
    g = torch.Generator().manual_seed(seed)
    for h, w in ((3, 4), (5, 5)):
        x = torch.randn(h, w, generator=g, dtype=torch.float64)
        kernel = torch.randn(2, 2, generator=g, dtype=torch.float64)
        expected = F.conv_transpose2d(x[None, None], kernel[None, None], stride=2)[0, 0]
        got = _attempt(function, x, kernel)
        assert isinstance(got, Tensor) and got.shape == expected.shape, \
            f"a {h}x{w} input must give a {2 * h}x{2 * w} output, got {getattr(got, 'shape', type(got).__name__)}"
        assert torch.allclose(got.double(), expected), \
            "output block (2i, 2j)..(2i+1, 2j+1) must be x[i, j] times the kernel"
    return "Exercise 2: correct."


def check_ssim_friendly_degradation(function: Callable[[np.ndarray], degrade.Degradation], config: PixelwiseConfig,
                                    seed: int = 54321) -> str:
    """Exercise 3: on fresh CT slices, the degradation keeps SSIM > 0.8 and costs more PSNR than noise σ 0.04."""
    fresh = ct_examples(dataclasses.replace(config, n_ct_test=2), seed)
    for i, full_hu in enumerate(fresh["full"]):
        reference = window(full_hu)
        chosen = _attempt(function, reference)
        assert isinstance(chosen, degrade.Degradation), f"return a degrade.Degradation, got {type(chosen).__name__}"
        noise = image_metrics.restoration_metrics(degrade.degrade(reference, degrade.Degradation(noise=0.04), seed),
                                                  reference, 1.0)
        mine = image_metrics.restoration_metrics(degrade.degrade(reference, chosen, seed), reference, 1.0)
        assert mine["SSIM"] > 0.8, f"slice {i}: SSIM {mine['SSIM']:.3f} must stay above 0.8"
        assert mine["PSNR [dB]"] < noise["PSNR [dB]"], \
            f"slice {i}: PSNR {mine['PSNR [dB]']:.1f} dB must be below noise σ 0.04's {noise['PSNR [dB]']:.1f} dB"
    return "Exercise 3: correct."


def check_per_layer_perceptual(function: Callable[[Tensor, Tensor, Mapping[str, Any]], Mapping[str, float]],
                               feature_record: Mapping[str, Any], seed: int = 12345) -> str:
    """Exercise 4: one distance per layer, each >= 0, zero for equal inputs, summing to the all-layer loss."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, 32, 32, generator=g)
    y = x + 0.3 * torch.randn(3, 1, 32, 32, generator=g)
    got = _attempt(function, x, y, feature_record)
    assert isinstance(got, Mapping) and list(got) == list(feature_nets.FEATURE_LAYERS), \
        f"return a dict with one entry per layer in {feature_nets.FEATURE_LAYERS}, got {got!r:.120}"
    values = np.array([float(v) for v in got.values()])
    assert (values >= 0).all(), "distances cannot be negative"
    total = float(losses.perceptual_loss(x, y, feature_net_from_state(feature_record)))
    assert math.isclose(values.sum(), total, rel_tol=1e-4), \
        f"the per-layer distances must add up to the all-layer perceptual loss {total:.5g}, got {values.sum():.5g}"
    same = _attempt(function, x, x.clone(), feature_record)
    assert all(abs(float(v)) < 1e-10 for v in same.values()), "identical images must be at distance 0 in every layer"
    return "Exercise 4: correct."


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
