"""Features per layer of the U-Net grid's models and every similarity metric with its chance levels, in the
paper's Table II / III layout."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from glassbox.data import lowdose_ct
from glassbox.measure import chance as chance_mod
from glassbox.measure import similarity as sim
from glassbox.studies.feature_space.config import LAYER_ORDER, METRICS, PAPER_N
from glassbox.training import unet_denoiser
from glassbox.training.loop import CONTROL_SEEDING, SEEDING_MODES
from glassbox.training.unet_denoiser import layer_features
from glassbox.training.unet_grid import (
    PAPER_TABLE2_SVCCA,
    PAPER_WIDTHS,
    QuConfig,
    TrainedModel,
    model_label,
)

# --- features ---------------------------------------------------------------------------------------------


def feature_inputs(config: QuConfig, pairs: unet_denoiser.Pairs, ids: Sequence[str], seed: int) -> torch.Tensor:
    """The test images every model sees, ``(N, 1, h, w)`` normalised low dose: whole test slices
    (``feature_patch_size`` None) or the non-overlapping tiles holding >= 25 % body (full-dose image)."""
    ids = list(ids)
    if not ids:
        raise ValueError("ids is empty: name the test patients whose slices feed the feature analysis")
    low = np.concatenate([np.asarray(pairs[i][0], dtype=np.float32) for i in ids])
    full = np.concatenate([np.asarray(pairs[i][1], dtype=np.float32) for i in ids])
    if config.feature_patch_size is None:
        images = low if config.n_feature_images is None else low[: config.n_feature_images]
    else:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFEA7]))
        tiles = lowdose_ct.grid_tiles(full, config.feature_patch_size, min_foreground=0.25,
                                      max_tiles=config.n_feature_images, rng=rng)
        images = lowdose_ct.crop(low, tiles, config.feature_patch_size)
    if len(images) < 4:
        raise ValueError(f"only {len(images)} test images for the feature analysis; add test slices")
    return torch.from_numpy(lowdose_ct.normalize(images)[:, None].astype(np.float32))


def grid_features(models: Mapping[tuple[int, str, int], TrainedModel], inputs: torch.Tensor, *,
                  device: torch.device | str | None = None) -> dict[tuple[int, str, int], dict[str, np.ndarray]]:
    """:func:`layer_features` of every model of the grid on the same inputs."""
    return {key: layer_features(m.model, inputs, device=device) for key, m in models.items()}


# --- similarity tables ------------------------------------------------------------------------------------


def _metric_fn(metric: str, keep: float):
    if metric == "svcca":
        return lambda x, y: sim.svcca(x, y, keep)
    if metric not in chance_mod.METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    return chance_mod.METRICS[metric]


def compare_features(x: np.ndarray, y: np.ndarray, metric: str, *, keep: float = 0.99, chance_draws: int = 50,
                     seed: int = 0) -> dict[str, Any]:
    """One metric between two N x M feature matrices: value, kept dimensions, permutation chance and p-value,
    and for SVCCA / CCA the Gaussian chance at the kept dimensions (``chance_kept``).

    A metric that cannot be computed on these features (too few samples for CCA, an all-zero
    sample for cosine) gives NaN and the reason in ``note`` -- never a silent number.
    """
    fn = _metric_fn(metric, keep)
    empty = {"value": math.nan, "chance": math.nan, "chance_std": math.nan, "p_value": math.nan,
             "kept_x": math.nan, "kept_y": math.nan, "chance_kept": math.nan}
    try:
        result = fn(x, y)
        null = chance_mod.permutation_chance(fn, x, y, n_draws=chance_draws, seed=seed)
    except sim.SimilarityInputError as exc:
        return empty | {"note": f"{type(exc).__name__}: {exc}"}
    value = float(result)
    exceed = int(np.sum(null.draws >= value - 1e-12))
    kept_chance = math.nan
    if metric in ("svcca", "cca") and result.kept_x:
        kept_chance = chance_mod.chance_level("cca", result.n, result.kept_x, result.kept_y, seed=seed).mean
    return {"value": value, "chance": null.mean, "chance_std": null.std,
            "p_value": (1 + exceed) / (1 + len(null.draws)),
            "kept_x": math.nan if result.kept_x is None else result.kept_x,
            "kept_y": math.nan if result.kept_y is None else result.kept_y, "chance_kept": kept_chance, "note": ""}


def _pair_keys(models_or_features: Mapping[tuple[int, str, int], Any],
               seedings: Sequence[str] = SEEDING_MODES) -> list[tuple[int, str]]:
    return [k for k in dict.fromkeys((k[0], k[1]) for k in models_or_features) if k[1] in seedings]


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
    """Trial 1 vs trial 2 of every model of the paper's two seeding modes, every layer and metric."""
    frames = []
    for depth, seeding in _pair_keys(feats):
        frame = compare_layers(feats[(depth, seeding, 0)], feats[(depth, seeding, 1)], config,
                               seed=int(np.random.SeedSequence([seed, depth]).generate_state(1)[0]), metrics=metrics)
        frame.insert(0, "seeding", seeding)
        frame.insert(0, "depth", depth)
        frame.insert(0, "model", model_label(depth, seeding))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def floor_table(feats: Mapping[tuple[int, str, int], Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """The fully fixed control per architecture: the largest feature difference between its two trials and
    linear CKA / cosine of their features (no chance level: the trials are the same computation)."""
    rows = []
    for depth, _ in _pair_keys(feats, (CONTROL_SEEDING,)):
        f1, f2 = feats[(depth, CONTROL_SEEDING, 0)], feats[(depth, CONTROL_SEEDING, 1)]
        rows.append({"model": model_label(depth, CONTROL_SEEDING),
                     "max feature difference": max(float(np.abs(f1[l] - f2[l]).max()) for l in f1),
                     "linear CKA (min over layers)": min(float(sim.linear_cka(f1[l], f2[l])) for l in f1),
                     "cosine (min over layers)": min(float(sim.cosine(f1[l], f2[l])) for l in f1)})
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def _layer_order(layers: Sequence[str]) -> list[str]:
    order = {name: i for i, name in enumerate(LAYER_ORDER)}
    return sorted(layers, key=lambda name: order.get(name, 99))


def paper_table(long: pd.DataFrame, metric: str, paper: Mapping[str, Mapping[str, float]] | None = None,
                columns: Sequence[tuple[str, str]] = (("ours", "value"), ("chance", "chance"))) -> pd.DataFrame:
    """Table II / III layout for ``metric``: rows are layers (+ ``Average`` of the Down/Up layers),
    columns ``(model label, what)`` for each ``(what, source column)`` of ``columns``, then ``paper``."""
    part = long[long["metric"] == metric]
    if part.empty:
        raise ValueError(f"no rows for metric {metric!r} in the table; metrics present: {sorted(set(long['metric']))}")
    labels = list(dict.fromkeys(part["model"]))
    layers = _layer_order(list(dict.fromkeys(part["layer"])))
    out = {}
    for label in labels:
        rows = part[part["model"] == label].set_index("layer")
        for what, source in columns:
            values = rows[source].reindex(layers).astype(float)
            values.loc["Average"] = values[[l for l in layers if l != "Bottleneck"]].mean()
            out[(label, what)] = values
        if paper is not None:
            out[(label, "paper")] = pd.Series({l: paper.get(label, {}).get(l, math.nan) for l in [*layers, "Average"]})
    table = pd.DataFrame(out)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["model", ""])
    table.index.name = "layer"
    return table


SVCCA_COLUMNS = (("ours", "value"), ("k", "kept_min"), ("chance at k", "chance_kept"), ("chance", "chance"))
"""Table II's columns: our SVCCA, the smaller kept dimension, the Gaussian chance at (kx, ky), the re-paired chance."""


def tidy(table: pd.DataFrame) -> pd.DataFrame:
    """A :func:`paper_table` as plain rows ``layer, model, ours, chance[, paper]`` (for results files)."""
    return table.stack(level="model", future_stack=True).reset_index()


def paper_k_table(long: pd.DataFrame, *, n: int = PAPER_N) -> pd.DataFrame:
    """For every SVCCA value of the paper's Table II: the layer's width M at the paper's scale, the kept
    dimension k* (kx = ky) at which that value is the chance level of N = ``n`` images, and what our
    models' SVCCA kept at the same layer of the same model (label), as a fraction of its width -- the evidence
    for or against the hypothesis that the paper's values sit below chance."""
    curve = chance_mod.cca_chance_curve(n, 600)
    ours = long[long["metric"] == "svcca"].dropna(subset=["value"])
    fraction = (np.minimum(ours["kept_x"], ours["kept_y"]) / ours["channels"]).groupby(
        [ours["model"], ours["layer"]]).first()
    rows = []
    for label, column in PAPER_TABLE2_SVCCA.items():
        for layer, value in column.items():
            if layer == "Average":
                continue
            width = PAPER_WIDTHS[label][layer]
            k_star = chance_mod.k_at_chance(value, n, curve=curve)
            ours_fraction = float(fraction.get((label, layer), math.nan))
            k_like_ours = ours_fraction * width if np.isfinite(ours_fraction) else math.nan
            rows.append({"model": label, "layer": layer, "paper SVCCA": value, "M": width,
                         "k at chance": k_star if k_star is not None else math.nan,
                         "our kept fraction": ours_fraction, "k if kept like ours": k_like_ours,
                         "below chance if kept like ours": bool(k_star is not None and np.isfinite(k_like_ours)
                                                                and k_like_ours >= k_star)})
    return pd.DataFrame(rows)
