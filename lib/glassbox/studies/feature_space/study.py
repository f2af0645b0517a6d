"""The feature-space chapter's entry point: :func:`run`, its :class:`FeatureResult`, and :func:`plan`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from glassbox.core.tasks import Task
from glassbox.studies.feature_space.clustering import clustering_table, permuted_copy
from glassbox.studies.feature_space.layer_similarity import (
    _pair_keys,
    compare_layers,
    feature_inputs,
    floor_table,
    grid_features,
    similarity_long,
)
from glassbox.studies.feature_space.significance import layer_tests
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.loop import CONTROL_SEEDING, SEEDING_MODES
from glassbox.training.unet_grid import (
    QuConfig,
    model_label,
)

# --- the chapter's run ---------------------------------------------------------------------------------------


@dataclass
class FeatureResult:
    """Everything the feature-space chapter shows, computed by :func:`run`."""

    config: QuConfig
    seed: int
    deepest: int
    n_rows: int
    image_px: int
    channels: dict[str, int]
    feats: dict[tuple[int, str, int], dict[str, np.ndarray]] = field(repr=False)
    long: pd.DataFrame = field(repr=False)
    floors: pd.DataFrame = field(repr=False)
    tests: pd.DataFrame = field(repr=False)
    clusters: pd.DataFrame = field(repr=False)
    control_long: pd.DataFrame = field(repr=False)
    permuted: dict[str, np.ndarray] = field(repr=False)
    gains: dict[str, float]
    fully_fixed_identical: bool


def run(config: QuConfig, *, seed: int, device: torch.device | str = "cpu", data_dir: Path | str | None = None,
        progress: bool = True) -> FeatureResult:
    """Load (or train) the grid, extract every model's features on the test images and compute every table."""
    pairs, identity = unet_grid.load_data(config, seed, data_dir, progress=progress)
    split = unet_denoiser.prepare_data(unet_grid.denoiser_config(config, max(config.depths), seed), pairs,
                                       identity=identity).split
    models = unet_grid.train_grid(config, pairs, seed=seed, device=device, progress=progress, identity=identity)
    inputs = feature_inputs(config, pairs, split["test"], seed)
    feats = grid_features(models, inputs, device=device)
    deepest = max(config.depths)
    trial1 = feats[(deepest, "random", 0)]
    permuted = permuted_copy(trial1, seed=seed)
    pairs_to_cluster = {model_label(d, s): (feats[(d, s, 0)], feats[(d, s, 1)]) for d, s in _pair_keys(feats)}
    pairs_to_cluster["permuted copy"] = (trial1, permuted)
    floor = unet_denoiser.slice_psnrs(None, pairs, split["test"]).mean()
    gains = {model_label(*key[:2]) + f"-trial{key[2] + 1}": float(
        unet_denoiser.slice_psnrs(m.model, pairs, split["test"]).mean() - floor)
        for key, m in models.items() if key[1] in SEEDING_MODES and not (key[1] == "fixed" and key[2] == 0)}
    identical = all(unet_grid.weights_identical(models[(d, CONTROL_SEEDING, 0)].model,
                                                models[(d, CONTROL_SEEDING, 1)].model)
                    for d in config.depths if CONTROL_SEEDING in config.seedings)
    return FeatureResult(
        config=config, seed=seed, deepest=deepest, n_rows=int(inputs.shape[0]), image_px=int(inputs.shape[-1]),
        channels={layer: x.shape[1] for layer, x in trial1.items()}, feats=feats,
        long=similarity_long(feats, config, seed=seed), floors=floor_table(feats),
        tests=layer_tests(feats, config, seed=seed), clusters=clustering_table(pairs_to_cluster, config, seed=seed),
        control_long=compare_layers(trial1, permuted, config, seed=seed + 1), permuted=permuted, gains=gains,
        fully_fixed_identical=identical)


def plan(config: QuConfig, *, seed: int, device: torch.device | str, data_dir: Path | str | None = None) -> list[Task]:
    """The data and every training of the grid (the features themselves take seconds and are not stored)."""
    return unet_grid.grid_tasks(config, seed=seed, device=device, data_dir=data_dir, control=False)
