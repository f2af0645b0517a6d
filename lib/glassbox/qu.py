"""Reproduction of Qu et al., "Beware the Black-Box of Medical Image Generation" -- and tests of its claims.

The paper trains U-Net-5, -7 and -9 for low-dose CT denoising with ``random`` and with ``fixed``
seeding, twice each (12 models), and reports (Table I) that PSNR is stable across the two trials
while per-layer SVCCA (Table II) and cosine similarity (Table III) are low and a hierarchical
clustering of the two trials' features separates the trials (Fig. 1, 4). This module is the driver
of the book's two chapters on it, ``unet_training`` and ``feature_space``:

- data: :data:`PAPER_TABLE1`, :data:`PAPER_TABLE2_SVCCA`, :data:`PAPER_TABLE3_COSINE` (the paper's
  numbers, as printed, including its inconsistent "Average" rows), :data:`PROFILES` (one
  :class:`QuConfig` per profile, for both chapters);
- the grid: :func:`train_grid` (the 12 models through the artifact store), :func:`train_control`
  (the paper's exact recipe at the profile's size), :func:`table1`;
- features: :func:`feature_inputs` (the same test images for every model), :func:`layer_features`
  (spatial mean per channel -- the paper's N x M matrix per layer), :func:`similarity_long` (every
  metric per model and layer, with its permutation chance level and p-value), :func:`paper_table`
  (Table II / III layout: ours, chance, paper), :func:`clustering_table`, :func:`permuted_copy`;
- the verdicts on the paper's three claims: :func:`verdicts`, built from :func:`updown_test` and
  :func:`signflip_test`.

**Metric conventions** (:mod:`glassbox.similarity` has the details): features of a layer are the
spatial mean of each channel over each test image (N x M, "reduction=mean"); ``svcca`` keeps the
principal components holding 99 % of the variance, then the mean canonical correlation; ``cosine``
is the paper's per-sample cosine of channel-aligned vectors; ``matched_cosine`` the same after a
Hungarian channel matching; ``linear_cka`` / ``linear_cka_debiased`` are Kornblith et al.'s.
**Chance** is the metric on re-paired samples (rows of trial 2 shuffled, ``chance_draws`` draws):
the value two unrelated representations with these very spectra would get. The p-value is the
fraction of draws at or above the observed value, (1 + #) / (1 + draws).

**Deviations on smaller profiles.** ``paper`` is the paper's protocol (full width, whole slices,
200 epochs, plain U-Net, RMSprop lr 0.01, batch 8, L1 + L2). ``quick`` and ``smoke`` shrink the
width, train on crops for few epochs, and -- because a plain U-Net with lr 0.01 ends worse than the
noisy input on such short budgets -- use a residual output whose last convolution starts at zero
(the network starts as the identity) with lr 1e-3; :func:`train_control` trains one U-Net-9 with the
paper's exact recipe at the quick size to show that. (Measured on ``quick`` under load: without the
zero start, residual U-Nets at lr 1e-3 or 1e-4 ended 1-30 dB *below* the input in some trials.)
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from glassbox import chance as chance_mod
from glassbox import clustering, ctdata, denoising
from glassbox import similarity as sim
from glassbox.denoising import DenoiserConfig, layer_features
from glassbox.train import SEEDING_MODES, History, TrialSeeds, trial_seeds
from glassbox.unet import DEPTHS, UNet, levels_of

__all__ = [
    "PAPER_TABLE1", "PAPER_TABLE2_SVCCA", "PAPER_TABLE3_COSINE", "PAPER_LAYERS", "METRICS", "QuConfig", "PROFILES",
    "TrainedModel", "model_label", "denoiser_config", "train_grid", "train_control", "weights_identical",
    "max_weight_difference", "table1", "feature_inputs", "layer_features", "grid_features", "compare_features",
    "compare_layers", "similarity_long", "paper_table", "tidy", "permuted_copy", "clustering_table", "updown_test",
    "signflip_test",
    "verdicts", "thread_count_experiment", "plot_training_curves", "plot_examples", "plot_layer_profiles",
    "plot_cluster_heatmaps",
]

# --- the paper's numbers, as printed ------------------------------------------------------------------

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

METRICS: tuple[str, ...] = ("svcca", "linear_cka", "linear_cka_debiased", "cosine", "matched_cosine")
"""The metrics of the feature tables (see the module docstring)."""


# --- configuration ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuConfig:
    """Knobs of both Qu chapters: data, the denoiser recipe, the grid, and the feature analysis.

    ``denoiser.depth`` is replaced by each of ``depths``; its ``split_seed`` by the chapter's seed.
    ``control`` is the paper's exact training recipe at this profile's size (None: no control run,
    e.g. on ``paper`` where the grid itself uses it). Features are computed on ``n_feature_images``
    test images: ``feature_patch_size`` crops of the test slices, or whole test slices when None.
    """

    data: ctdata.CTDataConfig
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
        data=ctdata.CTDataConfig(n=32, n_patients=3, slices_per_patient=2),
        denoiser=DenoiserConfig(**_QUICK_RECIPE, patch_size=16, n_patches=32, epochs=2),
        control=DenoiserConfig(depth=9, width=0.125, patch_size=16, n_patches=32, epochs=2),
        feature_patch_size=16, n_feature_images=300, chance_draws=20, cluster_samples=24,
        cluster_permutations=19, test_permutations=199),
    "quick": QuConfig(
        data=ctdata.PROFILES["quick"],
        denoiser=DenoiserConfig(**_QUICK_RECIPE, patch_size=32, n_patches=1600, epochs=10),
        control=DenoiserConfig(depth=9, width=0.125, patch_size=32, n_patches=1600, epochs=10),
        feature_patch_size=32, n_feature_images=600, chance_draws=50, cluster_samples=150,
        cluster_permutations=199),
    "paper": QuConfig(  # simulated 512 x 512 slices, the Grand Challenge's matrix (or real ones with data_dir)
        data=dataclasses.replace(ctdata.PROFILES["paper"], n=512),
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


# --- the 12 models ---------------------------------------------------------------------------------------------


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


def train_grid(config: QuConfig, pairs: denoising.Pairs, *, seed: int, device: torch.device | str = "cpu",
               progress: bool = True) -> dict[tuple[int, str, int], TrainedModel]:
    """Every ``(depth, seeding, trial)`` of the grid, trained or loaded through the store.

    Seeds come from :func:`glassbox.train.trial_seeds` ``(seeding, trial, seed)``: ``fixed`` gives
    both trials the same init and data-order seeds, ``random`` each its own. All trials of one depth
    share the same data (:func:`glassbox.denoising.prepare_data`), as in the paper.
    """
    models: dict[tuple[int, str, int], TrainedModel] = {}
    for depth in config.depths:
        recipe = denoiser_config(config, depth, seed)
        data = denoising.prepare_data(recipe, pairs)
        for seeding in config.seedings:
            for trial in range(config.n_trials):
                seeds = trial_seeds(seeding, trial, seed)
                model, history = denoising.trained_denoiser(
                    recipe, pairs, seeds, trial=trial, device=device, progress=progress, data=data,
                    desc=f"{model_label(depth, seeding)} trial {trial + 1}")
                models[(depth, seeding, trial)] = TrainedModel(depth, seeding, trial, seeds, model, history)
    return models


def train_control(config: QuConfig, pairs: denoising.Pairs, *, seed: int, device: torch.device | str = "cpu",
                  progress: bool = True) -> TrainedModel | None:
    """``config.control`` (the paper's recipe at this size), trial 1 with random seeding; None if unset."""
    if config.control is None:
        return None
    recipe = dataclasses.replace(config.control, split_seed=seed)
    seeds = trial_seeds("random", 0, seed)
    model, history = denoising.trained_denoiser(recipe, pairs, seeds, trial=0, device=device, progress=progress,
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


def table1(models: Mapping[tuple[int, str, int], TrainedModel], pairs: denoising.Pairs, ids: Sequence[str]
           ) -> pd.DataFrame:
    """Table I: per architecture and seeding, PSNR of each trial, mean, |difference|, the input's PSNR
    (floor), SSIM, whether the trials' weights are bit-identical, and the paper's numbers."""
    scores = {key: denoising.evaluate_denoiser(m.model, pairs, ids) for key, m in models.items()}
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


# --- features -------------------------------------------------------------------------------------------------


def feature_inputs(config: QuConfig, pairs: denoising.Pairs, ids: Sequence[str], seed: int) -> torch.Tensor:
    """The test images every model sees: ``(N, 1, h, w)`` normalised low-dose crops or whole slices."""
    ids = list(ids)
    if not ids:
        raise ValueError("ids is empty: name the test patients whose slices feed the feature analysis")
    low = np.concatenate([np.asarray(pairs[i][0], dtype=np.float32) for i in ids])
    full = np.concatenate([np.asarray(pairs[i][1], dtype=np.float32) for i in ids])
    if config.feature_patch_size is None:
        images = low if config.n_feature_images is None else low[: config.n_feature_images]
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFEA7]))
        images, _ = ctdata.random_patches(low, full, config.feature_patch_size, config.n_feature_images, rng,
                                          min_foreground=0.25)
    return torch.from_numpy(ctdata.normalize(images)[:, None].astype(np.float32))


def grid_features(models: Mapping[tuple[int, str, int], TrainedModel], inputs: torch.Tensor, *,
                  device: torch.device | str | None = None) -> dict[tuple[int, str, int], dict[str, np.ndarray]]:
    """:func:`layer_features` of every model of the grid on the same inputs."""
    return {key: layer_features(m.model, inputs, device=device) for key, m in models.items()}


def _metric_fn(metric: str, keep: float):
    if metric == "svcca":
        return lambda x, y: sim.svcca(x, y, keep)
    if metric not in chance_mod.METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    return chance_mod.METRICS[metric]


def compare_features(x: np.ndarray, y: np.ndarray, metric: str, *, keep: float = 0.99, chance_draws: int = 50,
                     seed: int = 0) -> dict[str, Any]:
    """One metric between two N x M feature matrices, its permutation chance level and p-value.

    A metric that cannot be computed on these features (too few samples for CCA, an all-zero
    sample for cosine) gives NaN and the reason in ``note`` -- never a silent number.
    """
    fn = _metric_fn(metric, keep)
    try:
        result = fn(x, y)
        null = chance_mod.permutation_chance(fn, x, y, n_draws=chance_draws, seed=seed)
    except sim.SimilarityInputError as exc:
        return {"value": math.nan, "chance": math.nan, "chance_std": math.nan, "p_value": math.nan,
                "kept": None, "note": f"{type(exc).__name__}: {exc}"}
    value = float(result)
    exceed = int(np.sum(null.draws >= value - 1e-12))
    kept = None if result.kept_x is None else f"{result.kept_x}x{result.kept_y}"
    return {"value": value, "chance": null.mean, "chance_std": null.std,
            "p_value": (1 + exceed) / (1 + len(null.draws)), "kept": kept, "note": ""}


def _pair_keys(models_or_features: Mapping[tuple[int, str, int], Any]) -> list[tuple[int, str]]:
    return list(dict.fromkeys((k[0], k[1]) for k in models_or_features))


def compare_layers(f1: Mapping[str, np.ndarray], f2: Mapping[str, np.ndarray], config: QuConfig, *, seed: int = 0,
                   metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """:func:`compare_features` for every layer of two feature sets and every metric: one row each."""
    rows = []
    for layer_index, layer in enumerate(f1):
        for metric_index, metric in enumerate(metrics):
            draw_seed = int(np.random.SeedSequence([seed, layer_index, metric_index]).generate_state(1)[0])
            rows.append({"layer": layer, "metric": metric, "n": f1[layer].shape[0], "channels": f1[layer].shape[1],
                         **compare_features(f1[layer], f2[layer], metric, keep=config.svcca_keep,
                                            chance_draws=config.chance_draws, seed=draw_seed)})
    return pd.DataFrame(rows)


def similarity_long(feats: Mapping[tuple[int, str, int], Mapping[str, np.ndarray]], config: QuConfig, *,
                    seed: int = 0, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Trial 1 vs trial 2 of every model, every layer and metric: one row each (value, chance, p_value...)."""
    frames = []
    for depth, seeding in _pair_keys(feats):
        frame = compare_layers(feats[(depth, seeding, 0)], feats[(depth, seeding, 1)], config,
                               seed=int(np.random.SeedSequence([seed, depth]).generate_state(1)[0]), metrics=metrics)
        frame.insert(0, "seeding", seeding)
        frame.insert(0, "depth", depth)
        frame.insert(0, "model", model_label(depth, seeding))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _layer_order(layers: Sequence[str]) -> list[str]:
    order = {name: i for i, name in enumerate(("Down1", "Down2", "Down3", "Down4", "Bottleneck",
                                               "Up1", "Up2", "Up3", "Up4"))}
    return sorted(layers, key=lambda name: order.get(name, 99))


def paper_table(long: pd.DataFrame, metric: str, paper: Mapping[str, Mapping[str, float]] | None = None
                ) -> pd.DataFrame:
    """Table II / III layout for ``metric``: rows are layers (+ ``Average`` of the Down/Up layers),
    columns ``(model label, ours | chance | paper)``."""
    part = long[long["metric"] == metric]
    if part.empty:
        raise ValueError(f"no rows for metric {metric!r} in the table; metrics present: {sorted(set(long['metric']))}")
    labels = list(dict.fromkeys(part["model"]))
    layers = _layer_order(list(dict.fromkeys(part["layer"])))
    columns = {}
    for label in labels:
        rows = part[part["model"] == label].set_index("layer")
        for what, source in (("ours", "value"), ("chance", "chance")):
            values = rows[source].reindex(layers)
            values.loc["Average"] = values[[l for l in layers if l != "Bottleneck"]].mean()
            columns[(label, what)] = values
        if paper is not None:
            columns[(label, "paper")] = pd.Series({l: paper.get(label, {}).get(l, math.nan)
                                                   for l in [*layers, "Average"]})
    table = pd.DataFrame(columns)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["model", ""])
    table.index.name = "layer"
    return table


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`paper_table` as plain rows ``layer, model, ours, chance[, paper]`` (for results files)."""
    return table.stack(level="model", future_stack=True).reset_index()


def permuted_copy(feats: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each layer's features with their channels shuffled (seeded): the same information as the input,
    so every permutation-invariant similarity is exactly 1 -- the control for cosine and clustering."""
    rng = np.random.default_rng(seed)
    return {layer: x[:, rng.permutation(x.shape[1])] for layer, x in feats.items()}


def clustering_table(pairs_of_features: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                     config: QuConfig, *, seed: int = 0) -> pd.DataFrame:
    """:func:`glassbox.clustering.cluster_trials` for every ``{name: (trial-1 features, trial-2 features)}``
    and layer, on the same ``cluster_samples`` images per trial: ARI of the 2-cluster cut vs the trial
    labels, its p-value, and how often a sample's nearest neighbour is its twin (with chance)."""
    rows = []
    for name, (f1, f2) in pairs_of_features.items():
        for layer in f1:
            n = f1[layer].shape[0]
            idx = np.sort(np.random.default_rng(seed).choice(n, size=min(n, config.cluster_samples), replace=False))
            try:
                result = clustering.cluster_trials(f1[layer][idx], f2[layer][idx],
                                                   n_permutations=config.cluster_permutations, seed=seed)
            except sim.SimilarityInputError as exc:
                rows.append({"pair": name, "layer": layer, "ari": math.nan, "p_value": math.nan,
                             "twin_nn_fraction": math.nan, "twin_nn_chance": math.nan, "note": str(exc)})
                continue
            rows.append({"pair": name, "layer": layer, "ari": result.ari, "p_value": result.p_value,
                         "twin_nn_fraction": result.twin_nn_fraction, "twin_nn_chance": result.twin_nn_chance,
                         "cluster_sizes": f"{result.cluster_sizes[0]}/{result.cluster_sizes[1]}", "note": ""})
    return pd.DataFrame(rows)


# --- tests of the claims ------------------------------------------------------------------------------------


def updown_test(values: Mapping[str, Mapping[str, float]], *, n_permutations: int = 9999, seed: int = 0
                ) -> dict[str, float]:
    """Is the decoder (Up*) more similar than the encoder (Down*)? ``values[model][layer]``.

    Statistic: mean over models of (mean of Up layers - mean of Down layers). Null: within each model
    the Down/Up labels are exchangeable (layers relabelled at random, keeping the counts). One-sided
    p-value (1 + #{null >= observed}) / (1 + n); exact enumeration when there are few relabellings.
    Layers of one network are not independent, so read p as a descriptive check, not a proof.
    """
    blocks = []
    for model, layers in values.items():
        down = [v for k, v in layers.items() if k.startswith("Down") and np.isfinite(v)]
        up = [v for k, v in layers.items() if k.startswith("Up") and np.isfinite(v)]
        if down and up:
            blocks.append((np.array(down + up, dtype=float), len(down)))
    if not blocks:
        raise ValueError("updown_test needs, for at least one model, finite values of Down* and Up* layers")

    def statistic(assignments: Sequence[np.ndarray]) -> float:
        return float(np.mean([v[~mask].mean() - v[mask].mean() for (v, _), mask in zip(blocks, assignments)]))

    observed_masks = [np.arange(len(v)) < n_down for v, n_down in blocks]
    observed = statistic(observed_masks)
    choices = [list(itertools.combinations(range(len(v)), n_down)) for v, n_down in blocks]
    total = math.prod(len(c) for c in choices)
    if total <= n_permutations:
        def masks_of(combo: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
            out = []
            for (v, _), picked in zip(blocks, combo):
                mask = np.zeros(len(v), dtype=bool)
                mask[list(picked)] = True
                out.append(mask)
            return out
        null = np.array([statistic(masks_of(combo)) for combo in itertools.product(*choices)])
        p = float(np.mean(null >= observed - 1e-12))
        method = f"exact over {total} relabellings"
    else:
        rng = np.random.default_rng(seed)
        null = np.array([statistic([rng.permutation(len(v)) < n_down for v, n_down in blocks])
                         for _ in range(n_permutations)])
        p = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
        method = f"{n_permutations} random relabellings"
    return {"difference": observed, "p_value": p, "n_models": len(blocks), "method": method}


def signflip_test(differences: Sequence[float], *, n_permutations: int = 9999, seed: int = 0) -> dict[str, float]:
    """One-sided paired test that the mean of ``differences`` is > 0 (random signs as the null).

    Exact over all 2**k sign patterns when that is at most ``n_permutations``; else Monte Carlo.
    """
    d = np.asarray([x for x in differences if np.isfinite(x)], dtype=float)
    if d.size == 0:
        raise ValueError("signflip_test needs at least one finite difference")
    observed = float(d.mean())
    if 2 ** d.size <= n_permutations:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        null = (signs * d).mean(1)
        p = float(np.mean(null >= observed - 1e-12))
    else:
        rng = np.random.default_rng(seed)
        null = (rng.choice((1.0, -1.0), size=(n_permutations, d.size)) * d).mean(1)
        p = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
    return {"mean_difference": observed, "p_value": p, "n": int(d.size)}


def _by_model(long: pd.DataFrame, metric: str, seeding: str | None = None) -> dict[str, dict[str, float]]:
    part = long[long["metric"] == metric]
    if seeding is not None:
        part = part[part["seeding"] == seeding]
    return {label: dict(zip(rows["layer"], rows["value"])) for label, rows in part.groupby("model", sort=False)}


STABLE_PSNR_DB = 0.5
"""Between-trial PSNR differences up to this many dB count as "stable" in the verdict on claim 1."""


def verdicts(t1: pd.DataFrame, long: pd.DataFrame, clusters: pd.DataFrame | None = None, *,
             n_permutations: int = 9999, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """The verdict table on the paper's three claims, from Table I, the similarity rows and clustering.

    1. PSNR is stable while features differ: max |delta PSNR| of random seeding (stable if <=
       :data:`STABLE_PSNR_DB`), and how many layers of random-seeding models have a linear CKA above
       its permutation chance (p < ``alpha``) -- "features differ" in the paper's sense would be "at chance".
    2. The decoder is more consistent than the encoder: :func:`updown_test` on our SVCCA and CKA of
       random seeding, and on the paper's own Table II.
    3. Fixed seeding is not more stable than random: bit-identical fixed trials, and
       :func:`signflip_test` of (fixed - random) linear CKA over corresponding layers.
    """
    rows = []
    random_t1 = t1[t1["seeding"] == "random"]
    fixed_t1 = t1[t1["seeding"] == "fixed"]

    # claim 1
    cka_random = long[(long["metric"] == "linear_cka") & (long["seeding"] == "random")].dropna(subset=["value"])
    above = int((cka_random["p_value"] < alpha).sum())
    max_diff = float(random_t1["difference"].max()) if len(random_t1) else math.nan
    psnr_stable = bool(max_diff <= STABLE_PSNR_DB)
    features_at_chance = above == 0
    mean_cka = float(cka_random["value"].mean()) if len(cka_random) else math.nan
    mean_chance = float(cka_random["chance"].mean()) if len(cka_random) else math.nan
    ari = ""
    if clusters is not None and len(clusters):
        real = clusters[clusters["pair"].str.endswith("-R")]
        ari = (f"; clustering: twin is nearest neighbour for {real['twin_nn_fraction'].mean():.2f} of images "
               f"(chance {real['twin_nn_chance'].mean():.3f}), ARI {real['ari'].mean():.2f}") if len(real) else ""
    verdict1 = ("holds" if psnr_stable and features_at_chance else
                "PSNR part holds, 'features differ' does not: features are far above chance" if psnr_stable else
                "does not hold: PSNR itself differs between trials" + ("" if features_at_chance else
                                                                       ", and features are far above chance"))
    rows.append({
        "claim": "1. PSNR is stable across trials while the features differ",
        "paper": "PSNR differences 0.97-1.85 dB (random); SVCCA 0.05-0.18, cosine 0.55-0.76; trials separable",
        "ours": f"max |dPSNR| (random) {max_diff:.2f} dB; linear CKA {mean_cka:.3f} vs chance {mean_chance:.3f}{ari}",
        "test": f"linear CKA vs re-paired images, per layer: {above}/{len(cka_random)} layers above chance "
                f"(p < {alpha}; the largest p is shown)",
        "p_value": float(cka_random["p_value"].max()) if len(cka_random) else math.nan,
        "verdict": verdict1,
    })

    # claim 2
    ours_svcca = updown_test(_by_model(long, "svcca", "random"), n_permutations=n_permutations, seed=seed)
    ours_cka = updown_test(_by_model(long, "linear_cka", "random"), n_permutations=n_permutations, seed=seed)
    paper_svcca = updown_test({k: {l: v for l, v in col.items() if l != "Average"}
                               for k, col in PAPER_TABLE2_SVCCA.items()}, n_permutations=n_permutations, seed=seed)
    supported = ours_svcca["difference"] > 0 and ours_svcca["p_value"] < alpha and ours_cka["difference"] > 0 \
        and ours_cka["p_value"] < alpha
    rows.append({
        "claim": "2. The decoder (Up) is more consistent than the encoder (Down)",
        "paper": f"Table II: mean Up - Down = {paper_svcca['difference']:+.3f} (p = {paper_svcca['p_value']:.2f} "
                 "by the same test on the paper's numbers)",
        "ours": f"Up - Down (random seeding): SVCCA {ours_svcca['difference']:+.3f}, CKA {ours_cka['difference']:+.3f}",
        "test": f"within-model relabelling of Down/Up ({ours_svcca['method']})",
        "p_value": max(ours_svcca["p_value"], ours_cka["p_value"]),
        "verdict": "supported" if supported else "not supported",
    })

    # claim 3
    cka = long[long["metric"] == "linear_cka"]
    pivot = cka.pivot_table(index=["depth", "layer"], columns="seeding", values="value")
    differences = (pivot["fixed"] - pivot["random"]).to_numpy() if {"fixed", "random"} <= set(pivot.columns) else []
    flip = signflip_test(differences, n_permutations=n_permutations, seed=seed) if len(differences) else \
        {"mean_difference": math.nan, "p_value": math.nan, "n": 0}
    identical = bool(len(fixed_t1)) and bool(fixed_t1["identical_weights"].all())
    fixed_diff = float(fixed_t1["difference"].max()) if len(fixed_t1) else math.nan
    if identical:
        verdict3 = "refuted on deterministic hardware: fixed-seed trials are bit-identical"
    elif flip["p_value"] < alpha:
        verdict3 = "refuted: fixed seeding gives more similar trials"
    else:
        verdict3 = "holds: fixed seeding is not detectably more stable"
    rows.append({
        "claim": "3. Fixed seeding is not more stable than random seeding",
        "paper": "fixed: PSNR differences 0.50-5.59 dB, average SVCCA 0.06-0.10 (random 0.09-0.18)",
        "ours": f"fixed: max |dPSNR| {fixed_diff:.3g} dB, bit-identical weights: {identical}; "
                f"CKA fixed - random {flip['mean_difference']:+.3f} over {flip['n']} layers",
        "test": "sign-flip test of (fixed - random) linear CKA over corresponding layers",
        "p_value": flip["p_value"],
        "verdict": verdict3,
    })
    return pd.DataFrame(rows)


# --- the thread-count experiment ----------------------------------------------------------------------------


def thread_count_experiment(recipe: DenoiserConfig, pairs: denoising.Pairs, *, seed: int,
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
    data = denoising.prepare_data(short, pairs)
    if data.n_train > max_samples:
        keep = list(range(max_samples))
        data = dataclasses.replace(data, train=torch.utils.data.Subset(data.train, keep))
    seeds = trial_seeds("fixed", 0, seed)
    before = torch.get_num_threads()
    trained = []
    try:
        for n in (threads[0], threads[0], threads[1]):
            torch.set_num_threads(n)
            model, _ = denoising.train_denoiser(short, pairs, seeds, device="cpu", progress=False, data=data)
            trained.append(model)
    finally:
        torch.set_num_threads(before)
    psnr = [denoising.evaluate_denoiser(m, pairs, data.split["test"])["psnr"] for m in trained]
    return {"threads_a": threads[0], "threads_b": threads[1],
            "same_threads_max_weight_difference": max_weight_difference(trained[0], trained[1]),
            "other_threads_max_weight_difference": max_weight_difference(trained[0], trained[2]),
            "other_threads_psnr_difference": abs(psnr[0] - psnr[2]), "epochs": short.epochs,
            "samples": data.n_train}


# --- figures ---------------------------------------------------------------------------------------------------


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


def plot_examples(pairs: denoising.Pairs, patient: str, slice_index: int, outputs: Mapping[str, torch.nn.Module],
                  *, window: str = "abdomen"):
    """Low-dose input, full-dose target and each model's output for one test slice, PSNR in the titles."""
    from glassbox import metrics
    from glassbox.plotting import image_grid

    low, full = (np.asarray(a[slice_index], dtype=np.float32) for a in pairs[patient])
    images, titles = [low, full], [f"low dose\n{metrics.psnr(low, full, denoising.PSNR_RANGE_HU):.2f} dB",
                                   "full dose (target)"]
    for name, model in outputs.items():
        out = denoising.denoise(model, low)
        images.append(out)
        titles.append(f"{name}\n{metrics.psnr(out, full, denoising.PSNR_RANGE_HU):.2f} dB")
    return image_grid(images, titles, window=window, size=2.4)


def plot_layer_profiles(long: pd.DataFrame, metric: str, paper: Mapping[str, Mapping[str, float]] | None = None):
    """``metric`` per layer for every model (lines), its chance level (grey) and the paper's values (crosses)."""
    import matplotlib.pyplot as plt

    part = long[long["metric"] == metric]
    labels = list(dict.fromkeys(part["model"]))
    fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels), 3.0), sharey=True, squeeze=False)
    for ax, label in zip(axes[0], labels):
        rows = part[part["model"] == label].set_index("layer")
        layers = _layer_order(list(rows.index))
        x = np.arange(len(layers))
        ax.plot(x, rows["value"].reindex(layers), "o-", label="ours")
        ax.plot(x, rows["chance"].reindex(layers), "s-", color="grey", markersize=3, label="chance")
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
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from scipy.cluster.hierarchy import leaves_list

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
