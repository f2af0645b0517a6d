"""Data specifications and jobs of the pixel-wise chapter: every trained network comes from the store through a
:class:`Job`; :func:`plan` lists them all so a grid can train them before the chapter runs."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from glassbox.core import dryrun
from glassbox.core.store import get_or_compute
from glassbox.core.tasks import Task
from glassbox.data import degrade, mri, mri_sequences, shapes, tissue_crops
from glassbox.models import feature_nets, segnets
from glassbox.studies.pixelwise.config import (
    RESTORATION_LOSSES,
    SIMULATED_ONLY,
    PixelwiseConfig,
    PixelwiseError,
    replicate_seed,
)
from glassbox.training import restoration as rst
from glassbox.training import segmentation as seg
from glassbox.training.tissue_features import FeatureNetConfig, pretrained_feature_net

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
