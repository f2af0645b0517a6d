"""The U-Net grid of Qu et al., "Beware the Black-Box of Medical Image Generation" (seed 000).

The paper trains U-Net-5, -7 and -9 for low-dose CT denoising with ``random`` and with ``fixed``
seeding, twice each (12 models), and reports (Table I) that PSNR is stable across the two trials
while per-layer SVCCA (Table II) and cosine similarity (Table III) are low. This module is what the book's
two chapters on it share (``unet_training`` and ``feature_space``, :mod:`glassbox.studies`):

- data: :data:`PAPER_TABLE1`, :data:`PAPER_TABLE2_SVCCA`, :data:`PAPER_TABLE3_COSINE` (the paper's
  numbers, as printed, including its inconsistent "Average" rows), :data:`PROFILES` (one
  :class:`QuConfig` per profile, for both chapters);
- the grid: :func:`train_grid` (the 12 models through the artifact store), :func:`train_control`
  (the paper's exact recipe at the profile's size), :func:`table1`; :func:`weights_identical`.

**Deviations on smaller profiles.** ``paper`` is the paper's protocol (full width, whole slices,
200 epochs, plain U-Net, RMSprop lr 0.01, batch 8, L1 + L2). ``quick`` and ``smoke`` shrink the
width, train on crops for few epochs, and -- because a plain U-Net with lr 0.01 ends worse than the
noisy input on such short budgets -- use a residual output whose last convolution starts at zero
(the network starts as the identity) with lr 1e-3; :func:`train_control` trains one U-Net-9 with the
paper's exact recipe at the quick size to show that.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from glassbox.data import lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES
from glassbox.models.unet import DEPTHS, UNet, levels_of
from glassbox.training import unet_denoiser
from glassbox.training.loop import SEEDING_MODES, History, TrialSeeds, trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig, layer_features

__all__ = [
    "PAPER_TABLE1",
    "PAPER_TABLE2_SVCCA",
    "PAPER_TABLE3_COSINE",
    "PAPER_LAYERS",
    "QuConfig",
    "PROFILES",
    "TrainedModel",
    "model_label",
    "denoiser_config",
    "train_grid",
    "train_control",
    "weights_identical",
    "max_weight_difference",
    "table1",
    "layer_features",
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


@dataclass(frozen=True)
class QuConfig:
    """Knobs of both Qu chapters: data, the denoiser recipe, the grid, and the feature analysis.

    ``denoiser.depth`` is replaced by each of ``depths``; its ``split_seed`` by the chapter's seed.
    ``control`` is the paper's exact training recipe at this profile's size (None: no control run,
    e.g. on ``paper`` where the grid itself uses it). Features are computed on ``n_feature_images``
    test images: ``feature_patch_size`` crops of the test slices, or whole test slices when None.
    """

    data: lowdose_ct.CTDataConfig
    denoiser: DenoiserConfig
    depths: tuple[int, ...] = DEPTHS
    seedings: tuple[str, ...] = SEEDING_MODES
    n_trials: int = 2
    control: DenoiserConfig | None = None
    feature_patch_size: int | None = None
    n_feature_images: int | None = None
    svcca_keep: float = 0.99
    chance_draws: int = 50
    cluster_samples: int = 200
    cluster_permutations: int = 499
    test_permutations: int = 9999

    def __post_init__(self) -> None:
        if not self.depths or any(levels_of(d) < 1 for d in self.depths):
            raise ValueError(f"depths must be a non-empty tuple of {DEPTHS}, got {self.depths!r}")
        if not self.seedings or any(s not in SEEDING_MODES for s in self.seedings):
            raise ValueError(f"seedings must be a non-empty tuple of {SEEDING_MODES}, got {self.seedings!r}")
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 2:
            raise ValueError(f"n_trials must be an integer >= 2 (trials are compared in pairs), got {self.n_trials!r}")
        divisor = 2 ** max(levels_of(d) for d in self.depths)
        if self.feature_patch_size is not None and self.feature_patch_size % divisor:
            raise ValueError(f"feature_patch_size ({self.feature_patch_size}) must be divisible by {divisor} "
                             f"for U-Net-{max(self.depths)}")
        if self.feature_patch_size is not None and self.n_feature_images is None:
            raise ValueError("feature_patch_size is set, so n_feature_images (how many crops) is required")
        for name in ("chance_draws", "cluster_permutations", "test_permutations"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)!r}")
        if self.cluster_samples < 4:
            raise ValueError(f"cluster_samples must be >= 4, got {self.cluster_samples!r}")
        if not 0 < self.svcca_keep <= 1:
            raise ValueError(f"svcca_keep must be in (0, 1], got {self.svcca_keep!r}")


_QUICK_RECIPE = dict(width=0.125, residual=True, zero_head=True, lr=1e-3, batch_size=8)


PROFILES: dict[str, QuConfig] = {
    "smoke": QuConfig(
        data=lowdose_ct.CTDataConfig(n=32, n_patients=3, slices_per_patient=2),
        denoiser=DenoiserConfig(**_QUICK_RECIPE, patch_size=16, n_patches=32, epochs=2),
        control=DenoiserConfig(depth=9, width=0.125, patch_size=16, n_patches=32, epochs=2),
        feature_patch_size=16, n_feature_images=300, chance_draws=20, cluster_samples=24,
        cluster_permutations=19, test_permutations=199),
    "quick": QuConfig(
        data=DATA_PROFILES["quick"],
        denoiser=DenoiserConfig(**_QUICK_RECIPE, patch_size=32, n_patches=1600, epochs=10),
        control=DenoiserConfig(depth=9, width=0.125, patch_size=32, n_patches=1600, epochs=10),
        feature_patch_size=32, n_feature_images=600, chance_draws=50, cluster_samples=150,
        cluster_permutations=199),
    "paper": QuConfig(  # simulated 512 x 512 slices, the Grand Challenge's matrix (or real ones with data_dir)
        data=dataclasses.replace(DATA_PROFILES["paper"], n=512),
        denoiser=DenoiserConfig(depth=9, width=1.0, residual=False, epochs=200, batch_size=8, lr=0.01),
        control=None,
        feature_patch_size=128, n_feature_images=2604, chance_draws=100, cluster_samples=300,
        cluster_permutations=999),
}
"""One configuration per profile, shared by ``unet_training`` and ``feature_space``."""


def model_label(depth: int, seeding: str) -> str:
    """The paper's column label: ``U9-R`` (random seeding) or ``U9-NR`` (fixed, "non-random")."""
    levels_of(depth)
    if seeding not in SEEDING_MODES:
        raise ValueError(f"seeding must be one of {SEEDING_MODES}, got {seeding!r}")
    return f"U{depth}-{'R' if seeding == 'random' else 'NR'}"


def denoiser_config(config: QuConfig, depth: int, seed: int) -> DenoiserConfig:
    """The grid's recipe for U-Net-``depth``; patients are split and patches cut with ``seed``."""
    return dataclasses.replace(config.denoiser, depth=depth, split_seed=seed)


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


def train_grid(config: QuConfig, pairs: unet_denoiser.Pairs, *, seed: int, device: torch.device | str = "cpu",
               progress: bool = True) -> dict[tuple[int, str, int], TrainedModel]:
    """Every ``(depth, seeding, trial)`` of the grid, trained or loaded through the store.

    Seeds come from :func:`glassbox.training.loop.trial_seeds` ``(seeding, trial, seed)``: ``fixed`` gives
    both trials the same init and data-order seeds, ``random`` each its own. All trials of one depth
    share the same data (:func:`glassbox.training.unet_denoiser.prepare_data`), as in the paper.
    """
    models: dict[tuple[int, str, int], TrainedModel] = {}
    for depth in config.depths:
        recipe = denoiser_config(config, depth, seed)
        data = unet_denoiser.prepare_data(recipe, pairs)
        for seeding in config.seedings:
            for trial in range(config.n_trials):
                seeds = trial_seeds(seeding, trial, seed)
                model, history = unet_denoiser.trained_denoiser(
                    recipe, pairs, seeds, trial=trial, device=device, progress=progress, data=data,
                    desc=f"{model_label(depth, seeding)} trial {trial + 1}")
                models[(depth, seeding, trial)] = TrainedModel(depth, seeding, trial, seeds, model, history)
    return models


def train_control(config: QuConfig, pairs: unet_denoiser.Pairs, *, seed: int, device: torch.device | str = "cpu",
                  progress: bool = True) -> TrainedModel | None:
    """``config.control`` (the paper's recipe at this size), trial 1 with random seeding; None if unset."""
    if config.control is None:
        return None
    recipe = dataclasses.replace(config.control, split_seed=seed)
    seeds = trial_seeds("random", 0, seed)
    model, history = unet_denoiser.trained_denoiser(recipe, pairs, seeds, trial=0, device=device, progress=progress,
                                                desc=f"control U{recipe.depth} (paper recipe)")
    return TrainedModel(recipe.depth, "random", 0, seeds, model, history)


def max_weight_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Largest absolute difference between corresponding parameters and buffers of two equal models."""
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        raise ValueError("the two models have different parameters; compare trials of one architecture")
    return max((sa[k].detach().double().cpu() - sb[k].detach().double().cpu()).abs().max().item()
               for k in sa if sa[k].numel())


def weights_identical(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """True when every parameter and buffer is bit-identical."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def table1(models: Mapping[tuple[int, str, int], TrainedModel], pairs: unet_denoiser.Pairs, ids: Sequence[str]
           ) -> pd.DataFrame:
    """Table I: per architecture and seeding, PSNR of each trial, mean, |difference|, the input's PSNR
    (floor), SSIM, whether the trials' weights are bit-identical, and the paper's numbers."""
    scores = {key: unet_denoiser.evaluate_denoiser(m.model, pairs, ids) for key, m in models.items()}
    rows = []
    for depth, seeding in dict.fromkeys((k[0], k[1]) for k in models):
        trials = sorted(k for k in models if k[:2] == (depth, seeding))
        psnrs = [scores[k]["psnr"] for k in trials]
        first, second = models[trials[0]].model, models[trials[1]].model
        paper = PAPER_TABLE1.get(f"U-Net-{depth}", {}).get(seeding, {})
        rows.append({
            "model": f"U-Net-{depth}", "seeding": seeding, "label": model_label(depth, seeding),
            **{f"psnr_trial{i + 1}": p for i, p in enumerate(psnrs)},
            "mean_psnr": float(np.mean(psnrs)), "difference": float(abs(psnrs[0] - psnrs[1])),
            "input_psnr": scores[trials[0]]["input_psnr"],
            "psnr_gain": float(np.mean(psnrs)) - scores[trials[0]]["input_psnr"],
            "mean_ssim": float(np.mean([scores[k]["ssim"] for k in trials])),
            "input_ssim": scores[trials[0]]["input_ssim"],
            "max_weight_difference": max_weight_difference(first, second),
            "identical_weights": weights_identical(first, second),
            "paper_mean_psnr": paper.get("mean_psnr", math.nan), "paper_difference": paper.get("difference", math.nan),
        })
    return pd.DataFrame(rows)
