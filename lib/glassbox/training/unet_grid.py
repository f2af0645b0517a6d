"""The U-Net grid of Qu et al., "Beware the Black-Box of Medical Image Generation" (seed 000).

The paper trains U-Net-5, -7 and -9 for low-dose CT denoising with ``random`` and with ``fixed``
seeding, twice each (12 models), and reports (Table I) that PSNR is stable across the two trials
while per-layer SVCCA (Table II) and cosine similarity (Table III) are low. This module is what the book's
two chapters on it share (``unet_training`` and ``feature_space``, :mod:`glassbox.studies`):

- data: :data:`PAPER_TABLE1`, :data:`PAPER_TABLE2_SVCCA`, :data:`PAPER_TABLE3_COSINE` (the paper's
  numbers, as printed, including its inconsistent "Average" rows), :data:`PAPER_WIDTHS` (each analysed
  layer's channels at the paper's width), :data:`PROFILES` (one :class:`QuConfig` per profile, for both
  chapters);
- the grid: :func:`load_data`, :func:`train_grid` (every model through the artifact store),
  :func:`train_control` (the paper's exact recipe at the profile's size), :func:`grid_tasks` (the same
  trainings as :class:`glassbox.core.tasks.Task` records), :func:`table1`; :func:`weights_identical`.

**Seeding** (:mod:`glassbox.training.loop`): ``random`` -- each trial its own initial weights and data
order; ``fixed`` -- the paper's definition ("all the training trials are initialized with the same set of
weights"): shared initial weights, each trial its own data order; on CUDA both train with PyTorch's
default non-deterministic kernels, as the paper's GPU runs did. The control ``fully_fixed`` shares every
seed and trains with deterministic algorithms: the two trials are the same computation, bit-identical,
the floor of every trial-to-trial difference. Trial 1 is one training shared by the three modes (the
store trains it once); the modes differ in how trial 2 departs from it.

**Deviations on smaller profiles.** ``paper`` is the paper's protocol (full width, whole slices,
200 epochs, plain U-Net, RMSprop lr 0.01, batch 8, L1 + L2). ``quick`` and ``smoke`` shrink the
width, train on crops for few epochs, and use a residual output whose last convolution starts at zero
(the network starts as the identity) with lr 1e-3; :func:`train_control` trains one U-Net-9 with the
paper's exact recipe at the profile's size, to show what that recipe does on such a budget.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES
from glassbox.measure.claims import Deviation
from glassbox.measure.stats import bootstrap_mean
from glassbox.models.unet import DEPTHS, PAPER_BASE_CHANNELS, UNet, levels_of
from glassbox.training import unet_denoiser
from glassbox.training.loop import ALL_SEEDINGS, CONTROL_SEEDING, SEEDING_MODES, History, TrialSeeds, trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig, layer_features

__all__ = [
    "PAPER_TABLE1", "PAPER_TABLE2_SVCCA", "PAPER_TABLE3_COSINE", "PAPER_LAYERS", "PAPER_WIDTHS", "QuConfig",
    "PROFILES", "TrainedModel", "model_label", "denoiser_config", "deterministic_for", "load_data", "grid_keys",
    "train_grid", "train_control", "grid_tasks", "weights_identical", "max_weight_difference", "table1",
    "layer_features", "recipe_deviations",
]


PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "U-Net-5": {"random": {"mean_psnr": 38.68, "difference": 1.85}, "fixed": {"mean_psnr": 35.96, "difference": 5.59}},
    "U-Net-7": {"random": {"mean_psnr": 40.33, "difference": 0.97}, "fixed": {"mean_psnr": 40.14, "difference": 5.12}},
    "U-Net-9": {"random": {"mean_psnr": 41.26, "difference": 1.16}, "fixed": {"mean_psnr": 40.65, "difference": 0.50}},
}
"""Qu et al. Table I: mean PSNR (dB) of the two trials and their difference, per architecture and seeding."""


PAPER_LAYERS: tuple[str, ...] = ("Down1", "Down2", "Down3", "Down4", "Up1", "Up2", "Up3", "Up4")


def _paper_columns(rows: Mapping[str, Sequence[float | None]], average: Sequence[float]) -> dict[str, dict[str, float]]:
    labels = ("U5-R", "U5-NR", "U7-R", "U7-NR", "U9-R", "U9-NR")
    table: dict[str, dict[str, float]] = {label: {} for label in labels}
    for layer, values in rows.items():
        for label, value in zip(labels, values):
            if value is not None:
                table[label][layer] = value
    for label, value in zip(labels, average):
        table[label]["Average"] = value
    return table


PAPER_TABLE2_SVCCA = _paper_columns({
    "Down1": (0.0706, 0.0943, 0.0766, 0.0894, 0.0976, 0.0798),
    "Down2": (0.0456, 0.0635, 0.1299, 0.0583, 0.0974, 0.0755),
    "Down3": (None, None, 0.1841, 0.0538, 0.1584, 0.0697),
    "Down4": (None, None, None, None, 0.1208, 0.1052),
    "Up1": (0.1191, 0.0599, 0.1515, 0.0534, 0.1235, 0.0754),
    "Up2": (0.1239, 0.1727, 0.1160, 0.0446, 0.0647, 0.0681),
    "Up3": (None, None, 0.1280, 0.1138, 0.1105, 0.0571),
    "Up4": (None, None, None, None, 0.1227, 0.1103),
}, average=(0.0898, 0.0974, 0.1310, 0.0599, 0.1794, 0.0801))
"""Qu et al. Table II ("CCA"), ``{model label: {layer: value}}``; -R random, -NR fixed seeding.
The printed "Average" row is kept as printed (U9-R's 0.1794 is not the column mean, 0.1120)."""


PAPER_TABLE3_COSINE = _paper_columns({
    "Down1": (0.6371, 0.5726, 0.5708, 0.5670, 0.5511, 0.5506),
    "Down2": (0.6876, 0.6141, 0.5950, 0.7157, 0.6031, 0.6510),
    "Down3": (None, None, 0.5882, 0.7257, 0.6016, 0.7220),
    "Down4": (None, None, None, None, 0.6258, 0.7039),
    "Up1": (0.6443, 0.7120, 0.6900, 0.7076, 0.5939, 0.7519),
    "Up2": (0.6335, 0.5392, 0.7138, 0.7571, 0.7014, 0.7058),
    "Up3": (None, None, 0.6614, 0.6364, 0.7133, 0.7562),
    "Up4": (None, None, None, None, 0.6665, 0.6375),
}, average=(0.6479, 0.6095, 0.6366, 0.6846, 0.6332, 0.6849))
"""Qu et al. Table III (cosine similarity), same layout as :data:`PAPER_TABLE2_SVCCA`."""


def _paper_widths() -> dict[str, dict[str, int]]:
    out = {}
    for depth in DEPTHS:
        levels = levels_of(depth)
        widths = {f"Down{i}": PAPER_BASE_CHANNELS * 2 ** (i - 1) for i in range(1, levels + 1)}
        widths |= {f"Up{j}": PAPER_BASE_CHANNELS * 2 ** (levels - j) for j in range(1, levels + 1)}
        for seeding in ("R", "NR"):
            out[f"U{depth}-{seeding}"] = widths
    return out


PAPER_WIDTHS: dict[str, dict[str, int]] = _paper_widths()
"""Channels M of every analysed layer at the paper's width (64 base channels, :mod:`glassbox.models.unet`):
``{model label: {layer: M}}``, e.g. U-Net-9's Down4 and Up1 have 512."""


@dataclass(frozen=True)
class QuConfig:
    """Knobs of both Qu chapters: data, the denoiser recipe, the grid, and the feature analysis.

    ``denoiser.depth`` is replaced by each of ``depths``; its ``split_seed`` by the chapter's seed.
    ``control`` is the paper's exact training recipe at this profile's size (None: no control run,
    e.g. on ``paper`` where the grid itself uses it). Features are computed on the test images: with
    ``feature_patch_size`` None, whole test slices (the paper's "N test images"); else the non-overlapping
    ``feature_patch_size`` tiles of the test slices that hold at least 25 % body, at most ``n_feature_images``
    of them. Either way the rows are independent images or disjoint crops, and their number is the N of
    every chance level. ``cka_test_draws`` re-pairings give the per-layer p-values behind claim 1 (enough
    for a Holm correction over every layer of the grid).
    """

    data: lowdose_ct.CTDataConfig
    denoiser: DenoiserConfig
    depths: tuple[int, ...] = DEPTHS
    seedings: tuple[str, ...] = ALL_SEEDINGS
    n_trials: int = 2
    control: DenoiserConfig | None = None
    feature_patch_size: int | None = None
    n_feature_images: int | None = None
    svcca_keep: float = 0.99
    chance_draws: int = 50
    cka_test_draws: int = 1999
    cluster_samples: int = 200
    cluster_permutations: int = 999
    test_permutations: int = 9999
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        if not self.depths or any(levels_of(d) < 1 for d in self.depths):
            raise ValueError(f"depths must be a non-empty tuple of {DEPTHS}, got {self.depths!r}")
        if not set(SEEDING_MODES) <= set(self.seedings) or any(s not in ALL_SEEDINGS for s in self.seedings):
            raise ValueError(f"seedings must hold the paper's {SEEDING_MODES} and may add {CONTROL_SEEDING!r}, "
                             f"got {self.seedings!r}")
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 2:
            raise ValueError(f"n_trials must be an integer >= 2 (trials are compared in pairs), got {self.n_trials!r}")
        divisor = 2 ** max(levels_of(d) for d in self.depths)
        if self.feature_patch_size is not None and self.feature_patch_size % divisor:
            raise ValueError(f"feature_patch_size ({self.feature_patch_size}) must be divisible by {divisor} "
                             f"for U-Net-{max(self.depths)}")
        if self.n_feature_images is not None and self.n_feature_images < 4:
            raise ValueError(f"n_feature_images must be >= 4 or None, got {self.n_feature_images!r}")
        for name in ("chance_draws", "cka_test_draws", "cluster_permutations", "test_permutations", "bootstrap"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)!r}")
        if self.cluster_samples < 4:
            raise ValueError(f"cluster_samples must be >= 4, got {self.cluster_samples!r}")
        if not 0 < self.svcca_keep <= 1:
            raise ValueError(f"svcca_keep must be in (0, 1], got {self.svcca_keep!r}")

    @property
    def feature_rows(self) -> str:
        """What one row of a feature matrix is, in words (table headers say it)."""
        if self.feature_patch_size is None:
            return "whole test slices"
        return f"non-overlapping {self.feature_patch_size}-px crops of the test slices"


_QUICK_RECIPE = dict(width=0.125, residual=True, zero_head=True, lr=1e-3, batch_size=8)


PROFILES: dict[str, QuConfig] = {
    "smoke": QuConfig(
        data=lowdose_ct.CTDataConfig(n=64, n_patients=4, slices_per_patient=12),
        denoiser=DenoiserConfig(**(_QUICK_RECIPE | {"width": 0.0625}), patch_size=16, n_patches=32, epochs=2),
        control=DenoiserConfig(depth=9, width=0.0625, patch_size=16, n_patches=32, epochs=2),
        feature_patch_size=16, n_feature_images=None, chance_draws=10, cka_test_draws=1999, cluster_samples=24,
        cluster_permutations=199, test_permutations=199, bootstrap=200),
    "quick": QuConfig(
        data=DATA_PROFILES["quick"],
        denoiser=DenoiserConfig(**_QUICK_RECIPE, patch_size=32, n_patches=800, epochs=4),
        control=DenoiserConfig(depth=9, width=0.125, patch_size=32, n_patches=800, epochs=4),
        feature_patch_size=32, n_feature_images=None, chance_draws=50, cka_test_draws=1999, cluster_samples=150),
    "paper": QuConfig(  # the data chapter's paper set: 256 x 256 simulated slices (or real ones with data_dir)
        data=DATA_PROFILES["paper"],
        denoiser=DenoiserConfig(depth=9, width=1.0, residual=False, epochs=200, batch_size=8, lr=0.01),
        control=None,
        feature_patch_size=None, n_feature_images=None, chance_draws=100, cka_test_draws=9999, cluster_samples=200,
        bootstrap=10000),
}
"""One configuration per profile, shared by ``unet_training`` and ``feature_space``."""


_LABEL_SUFFIX = {"random": "R", "fixed": "NR", "fully_fixed": "FF"}


def model_label(depth: int, seeding: str) -> str:
    """The paper's column label: ``U9-R`` (random seeding), ``U9-NR`` (fixed, "non-random"); ``U9-FF`` for the
    fully fixed control."""
    levels_of(depth)
    if seeding not in _LABEL_SUFFIX:
        raise ValueError(f"seeding must be one of {ALL_SEEDINGS}, got {seeding!r}")
    return f"U{depth}-{_LABEL_SUFFIX[seeding]}"


def denoiser_config(config: QuConfig, depth: int, seed: int) -> DenoiserConfig:
    """The grid's recipe for U-Net-``depth``; patients are split and patches cut with ``seed``."""
    return dataclasses.replace(config.denoiser, depth=depth, split_seed=seed)


def deterministic_for(seeding: str, device: torch.device | str) -> bool:
    """Whether a trial of ``seeding`` trains with deterministic algorithms: always on a CPU; on CUDA only the
    fully fixed control (the paper's random and fixed trials ran with PyTorch's non-deterministic default)."""
    if seeding not in ALL_SEEDINGS:
        raise ValueError(f"seeding must be one of {ALL_SEEDINGS}, got {seeding!r}")
    return torch.device(device).type != "cuda" or seeding == CONTROL_SEEDING


def load_data(config: QuConfig, seed: int, data_dir: Path | str | None = None, *, progress: bool = True
              ) -> tuple[unet_denoiser.Pairs, str]:
    """The chapter's pairs and their identity in store keys (:func:`glassbox.training.unet_denoiser.data_identity`)."""
    pairs = lowdose_ct.get_pairs(config.data, seed=seed, data_dir=data_dir, progress=progress)
    return pairs, unet_denoiser.data_identity(config.data, seed, pairs if data_dir is not None else None)


@dataclass
class TrainedModel:
    """One trained trial of the grid."""

    depth: int
    seeding: str
    trial: int
    seeds: TrialSeeds
    model: UNet = field(repr=False)
    history: History = field(repr=False)

    @property
    def label(self) -> str:
        return model_label(self.depth, self.seeding)


def grid_keys(config: QuConfig) -> list[tuple[int, str, int]]:
    """Every ``(depth, seeding, trial)`` of the grid, in the order the chapters show them."""
    return [(d, s, t) for d in config.depths for s in config.seedings for t in range(config.n_trials)]


def _trial_call(config: QuConfig, key: tuple[int, str, int], seed: int, device: torch.device | str
                ) -> tuple[DenoiserConfig, TrialSeeds, bool]:
    depth, seeding, trial = key
    return denoiser_config(config, depth, seed), trial_seeds(seeding, trial, seed), deterministic_for(seeding, device)


def train_grid(config: QuConfig, pairs: unet_denoiser.Pairs, *, seed: int, device: torch.device | str = "cpu",
               progress: bool = True, identity: str | None = None) -> dict[tuple[int, str, int], TrainedModel]:
    """Every ``(depth, seeding, trial)`` of the grid, trained or loaded through the store.

    Seeds come from :func:`glassbox.training.loop.trial_seeds` ``(seeding, trial, seed)``. All trials of one
    depth share the same data (:func:`glassbox.training.unet_denoiser.prepare_data`), as in the paper.
    ``identity`` names the pairs in store keys (:func:`load_data`; default: their content hash).
    """
    models: dict[tuple[int, str, int], TrainedModel] = {}
    data_by_depth = {}
    for key in grid_keys(config):
        depth, seeding, trial = key
        recipe, seeds, deterministic = _trial_call(config, key, seed, device)
        if depth not in data_by_depth:
            data_by_depth[depth] = unet_denoiser.prepare_data(recipe, pairs, identity=identity)
        model, history = unet_denoiser.trained_denoiser(
            recipe, pairs, seeds, trial=trial, device=device, progress=progress, data=data_by_depth[depth],
            deterministic=deterministic, desc=f"{model_label(depth, seeding)} trial {trial + 1}")
        models[key] = TrainedModel(depth, seeding, trial, seeds, model, history)
    return models


def _control_call(config: QuConfig, seed: int) -> tuple[DenoiserConfig, TrialSeeds]:
    return dataclasses.replace(config.control, split_seed=seed), trial_seeds("random", 0, seed)


def train_control(config: QuConfig, pairs: unet_denoiser.Pairs, *, seed: int, device: torch.device | str = "cpu",
                  progress: bool = True, identity: str | None = None) -> TrainedModel | None:
    """``config.control`` (the paper's recipe at this size), trial 1 with random seeding; None if unset."""
    if config.control is None:
        return None
    recipe, seeds = _control_call(config, seed)
    data = unet_denoiser.prepare_data(recipe, pairs, identity=identity)
    model, history = unet_denoiser.trained_denoiser(recipe, pairs, seeds, trial=0, device=device, progress=progress,
                                                    data=data, desc=f"control U{recipe.depth} (paper recipe)")
    return TrainedModel(recipe.depth, "random", 0, seeds, model, history)


def grid_tasks(config: QuConfig, *, seed: int, device: torch.device | str, data_dir: Path | str | None = None,
               control: bool = True) -> list[Task]:
    """The data set (if simulated), every distinct training of the grid and (``control``) the control run, as
    tasks whose ``run`` makes the very store call :func:`train_grid` / :func:`train_control` make.

    Computing the plan needs no simulation: simulated data are named by their store key. Real data
    (``data_dir``) are read to hash their content.
    """
    identity = (unet_denoiser.data_identity(config.data, seed) if data_dir is None else
                load_data(config, seed, data_dir, progress=False)[1])
    tasks: list[Task] = []
    deps: tuple[str, ...] = ()
    if data_dir is None:
        data_task = Task(*lowdose_ct.dataset_entry(config.data, seed),
                         lambda: lowdose_ct.build_dataset(config.data, seed, progress=False),
                         label=f"simulated data set (seed {seed})")
        tasks.append(data_task)
        deps = (data_task.key,)

    def train_one(key: tuple[int, str, int]) -> TrainedModel:
        pairs, ident = load_data(config, seed, data_dir, progress=False)
        recipe, seeds, deterministic = _trial_call(config, key, seed, device)
        model, history = unet_denoiser.trained_denoiser(
            recipe, pairs, seeds, trial=key[2], device=device, progress=False, deterministic=deterministic,
            data=unet_denoiser.prepare_data(recipe, pairs, identity=ident))
        return TrainedModel(key[0], key[1], key[2], seeds, model, history)

    seen: set[str] = set()
    for key in grid_keys(config):
        recipe, seeds, deterministic = _trial_call(config, key, seed, device)
        task = Task(unet_denoiser.STORE_ENTRY,
                    unet_denoiser.store_key(recipe, identity, seeds, trial=key[2], device=device,
                                            deterministic=deterministic),
                    lambda key=key: train_one(key), label=f"{model_label(key[0], key[1])} trial {key[2] + 1}",
                    deps=deps, gpu=True)
        if task.key not in seen:  # trial 1 is one training for every seeding mode
            seen.add(task.key)
            tasks.append(task)
    if control and config.control is not None:
        recipe, seeds = _control_call(config, seed)
        tasks.append(Task(unet_denoiser.STORE_ENTRY,
                          unet_denoiser.store_key(recipe, identity, seeds, trial=0, device=device),
                          lambda: train_control(config, *load_data(config, seed, data_dir, progress=False)[:1],
                                                seed=seed, device=device, progress=False,
                                                identity=identity),
                          label=f"control U{recipe.depth} (paper recipe)", deps=deps, gpu=True))
    return tasks


def max_weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest absolute difference between corresponding parameters and buffers of two equal models."""
    return unet_denoiser.max_state_difference(a.state_dict(), b.state_dict())


def weights_identical(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when every parameter and buffer is bit-identical."""
    return unet_denoiser.states_identical(a.state_dict(), b.state_dict())


def table1(models: Mapping[tuple[int, str, int], TrainedModel], pairs: unet_denoiser.Pairs, ids: Sequence[str], *,
           n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Table I: per architecture and seeding, PSNR of each trial, mean, |difference|, the input's PSNR
    (floor), SSIM, whether the trials' weights are bit-identical, and the paper's numbers.

    With the per-slice PSNRs of the test set: ``difference_lo``/``difference_hi`` -- a 95 % bootstrap
    interval (over test slices, paired) of trial 2 - trial 1; ``stability_margin`` -- the half-width of the
    95 % bootstrap interval of trial 1's own mean PSNR, i.e. how far that mean could move on another draw of
    test slices (the yardstick of "stable" in claim 1). ``gain_lo``/``gain_hi``: interval of the mean gain
    of trial 1 over the low-dose input.
    """
    floor = unet_denoiser.slice_psnrs(None, pairs, ids)
    per_slice = {key: unet_denoiser.slice_psnrs(m.model, pairs, ids) for key, m in models.items()}
    rows = []
    for depth, seeding in dict.fromkeys((k[0], k[1]) for k in models):
        trials = sorted(k for k in models if k[:2] == (depth, seeding))
        first, second = per_slice[trials[0]], per_slice[trials[1]]
        psnrs = [float(per_slice[k].mean()) for k in trials]
        diff, diff_lo, diff_hi = bootstrap_mean(second, first, n_boot=n_boot, seed=seed)
        _, lo1, hi1 = bootstrap_mean(first, n_boot=n_boot, seed=seed)
        gain, gain_lo, gain_hi = bootstrap_mean(first, floor, n_boot=n_boot, seed=seed)
        scores = [unet_denoiser.evaluate_denoiser(models[k].model, pairs, ids) for k in trials[:2]]
        paper = PAPER_TABLE1.get(f"U-Net-{depth}", {}).get(seeding, {})
        rows.append({
            "model": f"U-Net-{depth}", "seeding": seeding, "label": model_label(depth, seeding),
            **{f"psnr_trial{i + 1}": p for i, p in enumerate(psnrs)},
            "mean_psnr": float(np.mean(psnrs)), "difference": float(abs(psnrs[0] - psnrs[1])),
            "difference_signed": diff, "difference_lo": diff_lo, "difference_hi": diff_hi,
            "stability_margin": (hi1 - lo1) / 2,
            "input_psnr": float(floor.mean()), "psnr_gain": float(np.mean(psnrs)) - float(floor.mean()),
            "gain_trial1": gain, "gain_lo": gain_lo, "gain_hi": gain_hi,
            "mean_ssim": float(np.mean([s["ssim"] for s in scores])), "input_ssim": scores[0]["input_ssim"],
            "max_weight_difference": max_weight_difference(models[trials[0]].model, models[trials[1]].model),
            "identical_weights": weights_identical(models[trials[0]].model, models[trials[1]].model),
            "n_test_slices": int(floor.size),
            "paper_mean_psnr": paper.get("mean_psnr", math.nan), "paper_difference": paper.get("difference", math.nan),
        })
    return pd.DataFrame(rows)


REFERENCE = "qu2023beware"
"""BibTeX key of Qu et al. in ``book/references.bib``."""


def recipe_deviations(chapter: str, recipe: DenoiserConfig, *, n_px: int, models: str, device: torch.device | str
                      ) -> list[Deviation]:
    """How a training ``recipe`` (on ``n_px`` slices) departs from Qu et al.'s U-Net protocol, one
    :class:`~glassbox.measure.claims.Deviation` per aspect that differs (none on the paper's own recipe).

    ``models`` says in words which networks the chapter trains (e.g. "U-Net-5, -7 and -9, 2 trials each").
    """
    prefix = f"{chapter}.{REFERENCE}"
    out = []
    if recipe.width != 1.0:
        out.append(Deviation(f"{prefix}.width", chapter, REFERENCE, "model size",
                             f"{models} with 64 to 512 channels per level",
                             f"{models} with {recipe.width:g} x the channels "
                             f"({max(1, round(PAPER_BASE_CHANNELS * recipe.width))} base channels)",
                             "the profile's compute budget (a CPU in minutes; the paper profile is full width)"))
    if recipe.patch_size is not None or n_px != 512:
        ours = (f"{recipe.n_patches} crops of {recipe.patch_size} x {recipe.patch_size} px cut once from "
                f"{n_px} x {n_px} training slices" if recipe.patch_size else f"whole {n_px} x {n_px} slices")
        out.append(Deviation(f"{prefix}.images", chapter, REFERENCE, "training images",
                             "whole 512 x 512 slices of the Grand Challenge", ours,
                             "the profile's compute budget; crops keep the training set small on a CPU"))
    if recipe.epochs != 200:
        out.append(Deviation(f"{prefix}.epochs", chapter, REFERENCE, "training length", "200 epochs",
                             f"{recipe.epochs} epochs", "the profile's compute budget"))
    if recipe.residual or recipe.lr != 0.01 or recipe.batch_size != 8:
        output = ("residual output whose last convolution starts at zero (the untrained network is the identity)"
                  if recipe.zero_head else "residual output" if recipe.residual else "plain output")
        out.append(Deviation(f"{prefix}.recipe", chapter, REFERENCE, "training recipe",
                             "plain output, RMSprop, learning rate 0.01, batch 8, loss L1 + L2",
                             f"{output}, RMSprop, learning rate {recipe.lr:g}, batch {recipe.batch_size}, loss "
                             f"{recipe.l1_weight:g} L1 + {recipe.l2_weight:g} L2",
                             "on a short budget the paper's recipe at small width ends below its input (the "
                             "training chapter's control run measures this)"))
    if torch.device(device).type != "cuda":
        out.append(Deviation(f"{prefix}.device", chapter, REFERENCE, "device",
                             "GPU with PyTorch's default non-deterministic kernels",
                             f"{torch.device(device).type.upper()} with deterministic algorithms: fixed-seeding "
                             "trials differ only by their data order",
                             "no GPU on the book's build machine"))
    return out
