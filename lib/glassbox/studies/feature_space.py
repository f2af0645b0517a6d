"""The feature-space chapter: do two training runs of the same U-Net learn the same features? (Qu et al.)

On the models of :mod:`glassbox.training.unet_grid`: features per layer (:func:`feature_inputs`,
:func:`grid_features`), every similarity metric with its chance levels (:func:`compare_layers`,
:func:`similarity_long`), the paper's Table II / III layout (:func:`paper_table`), the kept dimension of SVCCA
against the paper's values (:func:`paper_k_table`), the clustering of the two trials' features with a
permuted-copy control (:func:`clustering_table`, :func:`permuted_copy`), the tests behind the verdicts
(:func:`layer_tests`, :func:`updown_test`, :func:`updown_joint_test`, :func:`signflip_test`) and
:func:`claims` / :func:`checks`. :func:`run` computes everything (:class:`FeatureResult`); :func:`plan` lists
the trainings it needs.

**Metric conventions** (:mod:`glassbox.measure.similarity` has the details): features of a layer are the
spatial mean of each channel over each test image (N x M, "reduction=mean"); ``svcca`` keeps the principal
components holding 99 % of the variance on each side (kx, ky kept), then the mean canonical correlation;
``pwcca`` is Morcos et al.'s projection-weighted CCA over all live channels; ``cosine`` is the paper's
per-sample cosine of channel-aligned vectors; ``matched_cosine`` the same after a Hungarian channel
matching; ``linear_cka`` / ``linear_cka_debiased`` are Kornblith et al.'s.

**Rows and N.** On ``paper`` a row is a whole test slice (the paper's N test images); on ``quick`` and
``smoke`` a non-overlapping crop of a test slice (disjoint pixels). N, the number of rows, is the N of every
chance level.

**Chance.** ``chance`` is the metric on re-paired samples (rows of trial 2 shuffled, ``chance_draws`` draws):
the value two unrelated representations with these very spectra would get; the p-value is the fraction of
draws at or above the observed value, (1 + #) / (1 + draws). For SVCCA (and CCA) ``chance_kept`` is the
chance level of independent Gaussian data at the kept dimensions (kx, ky) and N
(:func:`glassbox.measure.chance.chance_level`): SVCCA's floor depends on how many directions it keeps, not on
the layer's width.

**Claim 2's combination rule** (fixed before any number was computed in this module's tests): the paper reads
its claim off Tables II and III together, so one joint test decides it -- :func:`updown_joint_test`, whose
statistic is the sum over the tables of (mean over models of mean Up - mean Down) / (SD of the table's
values), with the same within-model relabelling of layers applied to every table. The single-table tests
are shown beside it.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.measure import chance as chance_mod
from glassbox.measure import clustering
from glassbox.measure import similarity as sim
from glassbox.measure.claims import (
    Check,
    Claim,
    Deviation,
    apply_checks,
    count_rule,
    p_value_rule,
    quality_check,
    require,
)
from glassbox.measure.stats import holm
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.loop import CONTROL_SEEDING, SEEDING_MODES
from glassbox.training.unet_denoiser import layer_features
from glassbox.training.unet_grid import (
    PAPER_TABLE2_SVCCA,
    PAPER_TABLE3_COSINE,
    PAPER_WIDTHS,
    QuConfig,
    TrainedModel,
    model_label,
)

CHAPTER = "feature_space"
PROFILES = unet_grid.PROFILES
"""This chapter runs on the U-Net grid's profiles (:data:`glassbox.training.unet_grid.PROFILES`)."""

METRICS: tuple[str, ...] = ("svcca", "pwcca", "linear_cka", "linear_cka_debiased", "cosine", "matched_cosine")
"""The metrics of the feature tables (see the module docstring)."""

PAPER_N = 2604
"""The paper's number of test images (Sec. IV-A)."""

ALPHA = 0.05
"""Significance level of every test behind a verdict (family-wise, with Holm's correction, for families)."""

LAYER_ORDER = ("Down1", "Down2", "Down3", "Down4", "Bottleneck", "Up1", "Up2", "Up3", "Up4")


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


# --- clustering --------------------------------------------------------------------------------------------


def permuted_copy(feats: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each layer's features with their channels shuffled (seeded): the same information as the input,
    so every permutation-invariant similarity is exactly 1 -- the control for cosine and clustering."""
    rng = np.random.default_rng(seed)
    return {layer: x[:, rng.permutation(x.shape[1])] for layer, x in feats.items()}


def clustering_table(pairs_of_features: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]],
                     config: QuConfig, *, seed: int = 0) -> pd.DataFrame:
    """:func:`glassbox.measure.clustering.cluster_trials` for every ``{name: (trial-1 features, trial-2 features)}``
    and layer, on the same ``cluster_samples`` images per trial: ARI of the 2-cluster cut vs the trial
    labels and its p-value, how often a sample's nearest neighbour is its twin (chance, p-value)."""
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
                             "twin_nn_fraction": math.nan, "twin_nn_chance": math.nan, "twin_nn_p_value": math.nan,
                             "note": str(exc)})
                continue
            rows.append({"pair": name, "layer": layer, "ari": result.ari, "p_value": result.p_value,
                         "twin_nn_fraction": result.twin_nn_fraction, "twin_nn_chance": result.twin_nn_chance,
                         "twin_nn_p_value": result.twin_nn_p_value,
                         "cluster_sizes": f"{result.cluster_sizes[0]}/{result.cluster_sizes[1]}", "note": ""})
    return pd.DataFrame(rows)


# --- tests --------------------------------------------------------------------------------------------------


def layer_tests(feats: Mapping[tuple[int, str, int], Mapping[str, np.ndarray]], config: QuConfig, *,
                seed: int = 0) -> pd.DataFrame:
    """Linear CKA and the paper's cosine of trial 1 vs trial 2 of every model of the paper's modes and every
    Down/Up layer, each with its permutation chance and one-sided p-value from ``config.cka_test_draws``
    re-pairings; ``above_chance`` / ``cosine_above_chance`` are Holm's decisions over the whole family at
    :data:`ALPHA`."""
    rows = []
    for depth, seeding in _pair_keys(feats):
        f1, f2 = feats[(depth, seeding, 0)], feats[(depth, seeding, 1)]
        for index, layer in enumerate(f1):
            if layer == "Bottleneck":  # the paper's tables have no bottleneck values
                continue
            draw_seed = int(np.random.SeedSequence([seed, depth, index, 0xC4A]).generate_state(1)[0])
            row: dict[str, Any] = {"model": model_label(depth, seeding), "depth": depth, "seeding": seeding,
                                   "layer": layer}
            for metric, test, prefix in ((("linear_cka", chance_mod.linear_cka_permutation_test, "")),
                                         ("cosine", chance_mod.cosine_permutation_test, "cosine_")):
                try:
                    value, null, p = test(f1[layer], f2[layer], n_draws=config.cka_test_draws, seed=draw_seed)
                    chance = null.mean
                except sim.SimilarityInputError:
                    value = chance = p = math.nan
                row |= {metric: value, f"{prefix}chance": chance, f"{prefix}p_value": p}
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["above_chance"] = holm(frame["p_value"].to_numpy(), ALPHA)
    frame["cosine_above_chance"] = holm(frame["cosine_p_value"].to_numpy(), ALPHA)
    return frame


def _blocks(values: Mapping[str, Mapping[str, float]]) -> dict[str, tuple[list[str], np.ndarray, int]]:
    out = {}
    for model, layers in values.items():
        down = [k for k, v in layers.items() if k.startswith("Down") and np.isfinite(v)]
        up = [k for k, v in layers.items() if k.startswith("Up") and np.isfinite(v)]
        if down and up:
            out[model] = (down + up, np.array([layers[k] for k in down + up], dtype=float), len(down))
    return out


def _relabel_test(tables: Sequence[Mapping[str, Mapping[str, float]]], n_permutations: int, seed: int
                  ) -> dict[str, Any]:
    """Within-model relabelling of Down/Up layers, the same relabelling in every table; the statistic is the
    sum over tables of (mean over models of Up - Down) / (SD of the table's values)."""
    per_table = [_blocks(t) for t in tables]
    models = [m for m in per_table[0] if all(m in b and b[m][0] == per_table[0][m][0] for b in per_table)]
    if not models:
        raise ValueError("updown_test needs, for at least one model, finite values of Down* and Up* layers "
                         "(the same layers in every table)")
    scales = [float(np.std(np.concatenate([b[m][1] for m in models]), ddof=1)) if len(tables) > 1 else 1.0
              for b in per_table]
    if any(not s > 0 for s in scales):
        raise ValueError("a table's values have no spread; the joint statistic needs SD > 0")

    def statistic(masks: Sequence[np.ndarray]) -> tuple[float, list[float]]:
        parts = [float(np.mean([b[m][1][~mask].mean() - b[m][1][mask].mean() for m, mask in zip(models, masks)]))
                 for b in per_table]
        return sum(p / s for p, s in zip(parts, scales)), parts

    sizes = [(len(per_table[0][m][1]), per_table[0][m][2]) for m in models]
    observed, parts = statistic([np.arange(n) < n_down for n, n_down in sizes])
    choices = [list(itertools.combinations(range(n), n_down)) for n, n_down in sizes]
    total = math.prod(len(c) for c in choices)
    if total <= n_permutations:
        def masks_of(combo: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
            out = []
            for (n, _), picked in zip(sizes, combo):
                mask = np.zeros(n, dtype=bool)
                mask[list(picked)] = True
                out.append(mask)
            return out
        null = np.array([statistic(masks_of(combo))[0] for combo in itertools.product(*choices)])
        p_up, p_down = float(np.mean(null >= observed - 1e-12)), float(np.mean(null <= observed + 1e-12))
        method = f"exact over {total} relabellings"
    else:
        rng = np.random.default_rng(seed)
        null = np.array([statistic([rng.permutation(n) < n_down for n, n_down in sizes])[0]
                         for _ in range(n_permutations)])
        p_up = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
        p_down = float((1 + np.sum(null <= observed + 1e-12)) / (1 + n_permutations))
        method = f"{n_permutations} random relabellings"
    return {"statistic": observed, "differences": parts, "difference": parts[0] if len(parts) == 1 else math.nan,
            "p_value": p_up, "p_value_down": p_down, "n_models": len(models), "method": method}


def updown_test(values: Mapping[str, Mapping[str, float]], *, n_permutations: int = 9999, seed: int = 0
                ) -> dict[str, Any]:
    """Is the decoder (Up*) more similar than the encoder (Down*)? ``values[model][layer]``.

    Statistic: mean over models of (mean of Up layers - mean of Down layers). Null: within each model
    the Down/Up labels are exchangeable (layers relabelled at random, keeping the counts). One-sided
    p-values (1 + #{null >= observed}) / (1 + n) for Up > Down (``p_value``) and Up < Down
    (``p_value_down``); exact enumeration when there are few relabellings. Layers of one network are not
    independent, so read p as a descriptive check, not a proof.
    """
    return _relabel_test([values], n_permutations, seed)


def updown_joint_test(tables: Sequence[Mapping[str, Mapping[str, float]]], *, n_permutations: int = 9999,
                      seed: int = 0) -> dict[str, Any]:
    """Claim 2 on several tables at once (the paper's Tables II and III): one permutation test whose statistic
    is the sum over tables of the :func:`updown_test` statistic divided by the SD of that table's values, the
    same relabelling of each model's layers applied to every table (the module docstring states why)."""
    if len(tables) < 2:
        raise ValueError("updown_joint_test combines at least two tables; use updown_test for one")
    return _relabel_test(tables, n_permutations, seed)


def signflip_test(differences: Sequence[float], *, n_permutations: int = 9999, seed: int = 0) -> dict[str, float]:
    """One-sided paired tests that the mean of ``differences`` is > 0 (``p_value``) and < 0 (``p_value_below``),
    random signs as the null; exact over all 2**k sign patterns when that is at most ``n_permutations``."""
    d = np.asarray([x for x in differences if np.isfinite(x)], dtype=float)
    if d.size == 0:
        raise ValueError("signflip_test needs at least one finite difference")
    observed = float(d.mean())
    if 2 ** d.size <= n_permutations:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        null = (signs * d).mean(1)
        p = float(np.mean(null >= observed - 1e-12))
        p_below = float(np.mean(null <= observed + 1e-12))
    else:
        rng = np.random.default_rng(seed)
        null = (rng.choice((1.0, -1.0), size=(n_permutations, d.size)) * d).mean(1)
        p = float((1 + np.sum(null >= observed - 1e-12)) / (1 + n_permutations))
        p_below = float((1 + np.sum(null <= observed + 1e-12)) / (1 + n_permutations))
    return {"mean_difference": observed, "p_value": p, "p_value_below": p_below, "n": int(d.size)}


def by_model(long: pd.DataFrame, metric: str, seeding: str | None = None) -> dict[str, dict[str, float]]:
    """``{model label: {layer: value}}`` of one metric (optionally one seeding mode) of the long table."""
    part = long[long["metric"] == metric]
    if seeding is not None:
        part = part[part["seeding"] == seeding]
    return {label: dict(zip(rows["layer"], rows["value"])) for label, rows in part.groupby("model", sort=False)}


def _paper_values(table: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    return {k: {l: v for l, v in col.items() if l != "Average"} for k, col in table.items()}


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


def deviations(config: QuConfig, *, device: torch.device | str = "cpu") -> list[Deviation]:
    """How this run's feature analysis departs from Qu et al.'s: the images the features are computed on and the
    metric of Table II. The models' own deviations are the training chapter's (same grid)."""
    ref = unet_grid.REFERENCE
    rows = (f"whole {config.data.n} x {config.data.n} test slices" if config.feature_patch_size is None else
            f"{config.feature_rows} ({config.feature_patch_size} px, at least 25 % body)")
    return [
        Deviation(f"{CHAPTER}.{ref}.rows", CHAPTER, ref, "feature images",
                  "2,604 whole 512 x 512 test images of the Grand Challenge", rows,
                  "simulated data and the profile's compute budget; disjoint crops keep the rows independent"),
        Deviation(f"{CHAPTER}.{ref}.svcca", CHAPTER, ref, "metric",
                  "Table II's \"CCA\" without its variant, kept dimension or feature reduction stated",
                  f"SVCCA keeping {config.svcca_keep:.0%} of the variance on each side, on the spatial mean of "
                  "every channel per image, with the kept dimensions reported beside each value",
                  "the paper does not say; this is Raghu et al.'s SVCCA, the closest standard reading"),
    ]


# --- views ----------------------------------------------------------------------------------------------------


def table2(result: FeatureResult) -> pd.DataFrame:
    """Table II: our SVCCA, its kept dimension k = min(kx, ky), chance at (kx, ky), re-paired chance, the paper."""
    long = result.long.assign(kept_min=np.minimum(result.long["kept_x"], result.long["kept_y"]))
    return paper_table(long, "svcca", PAPER_TABLE2_SVCCA, SVCCA_COLUMNS)


def table3(result: FeatureResult) -> pd.DataFrame:
    """Table III: our cosine, its re-paired chance, the paper's."""
    return paper_table(result.long, "cosine", PAPER_TABLE3_COSINE)


def side_by_side(result: FeatureResult) -> pd.DataFrame:
    """Per layer of the deepest U-Net (random seeding): every metric for the real trials and for the copy."""
    label = model_label(result.deepest, "random")
    order = [l for l in LAYER_ORDER if l in result.channels]
    columns = ["svcca", "pwcca", "linear_cka", "linear_cka_debiased", "matched_cosine", "cosine"]
    real = result.long[result.long["model"] == label].pivot(index="layer", columns="metric", values="value")
    copy = result.control_long.pivot(index="layer", columns="metric", values="value")
    real, copy = real.reindex(index=order, columns=columns), copy.reindex(index=order, columns=columns)
    for side, pair in ((real, label), (copy, "permuted copy")):
        rows = result.clusters[result.clusters["pair"] == pair].set_index("layer")
        side["clustering ARI"] = rows["ari"].reindex(order)
        side["twin NN"] = rows["twin_nn_fraction"].reindex(order)
    return pd.concat({"real trials": real, "permuted copy": copy}, axis=1)


def cluster_summary(result: FeatureResult) -> pd.DataFrame:
    """Per pair of trials (and the copy): mean ARI and twin rate over layers, and in how many layers each is
    significant (Holm over that pair's layers at :data:`ALPHA`)."""
    rows = []
    for pair, part in result.clusters.groupby("pair", sort=False):
        part = part.dropna(subset=["ari"])
        rows.append({"pair": pair, "layers": len(part), "mean ARI": part["ari"].mean(),
                     "layers split by trial": int(holm(part["p_value"].to_numpy(), ALPHA).sum()),
                     "mean twin NN": part["twin_nn_fraction"].mean(), "twin NN chance": part["twin_nn_chance"].mean(),
                     "layers with twins above chance": int(holm(part["twin_nn_p_value"].to_numpy(), ALPHA).sum())})
    return pd.DataFrame(rows).set_index("pair")


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
        ax.plot(x, rows["chance"].reindex(layers), "s-", color="grey", markersize=3, label="chance (re-paired)")
        if "chance_kept" in rows and rows["chance_kept"].notna().any():
            ax.plot(x, rows["chance_kept"].reindex(layers), "^:", color="grey", markersize=3, label="chance at kept k")
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


def plot_fig4(result: FeatureResult):
    """The paper's Fig. 4 for the deepest U-Net: fixed seeding, random seeding and the permuted copy, one figure
    each, with ARI and twin rate under every layer's name. Returns the three figures."""
    deepest, trial1 = result.deepest, result.feats[(result.deepest, "random", 0)]
    layers = [l for l in trial1 if l != "Bottleneck"]
    figures = []
    for name, key, (a, b) in (
            ("fixed seeding", model_label(deepest, "fixed"),
             (result.feats[(deepest, "fixed", 0)], result.feats[(deepest, "fixed", 1)])),
            ("random seeding", model_label(deepest, "random"), (trial1, result.feats[(deepest, "random", 1)])),
            ("permuted copy of trial 1", "permuted copy", (trial1, result.permuted))):
        rows = result.clusters[result.clusters["pair"] == key].set_index("layer")
        notes = {layer: f"ARI {r.ari:.2f}, twin-NN {r.twin_nn_fraction:.2f}" for layer, r in rows.iterrows()}
        figures.append(plot_cluster_heatmaps(a, b, layers, n_samples=result.config.cluster_samples, seed=result.seed,
                                             title=f"U-Net-{deepest}, {name}", notes=notes))
    return figures


def plot_fig1(result: FeatureResult):
    """The paper's Fig. 1 for the last layer of the deepest U-Net (random seeding), beside its permuted copy."""
    label = model_label(result.deepest, "random")
    trial1 = result.feats[(result.deepest, "random", 0)]
    layer = list(trial1)[-1]
    ari = result.clusters.set_index(["pair", "layer"])["ari"]
    grids = []
    for other, labels, pair in ((result.feats[(result.deepest, "random", 1)][layer], ("trial 1", "trial 2"), label),
                                (result.permuted[layer], ("trial 1", "trial 1, channels shuffled"), "permuted copy")):
        grid = clustering.clustermap(trial1[layer], other, labels=labels, max_per_trial=result.config.cluster_samples,
                                     seed=result.seed, figsize=(4.6, 4.6))
        grid.figure.suptitle(f"{pair}, {layer} (ARI {ari[(pair, layer)]:.2f})", y=1.02)
        grids.append(grid)
    return grids


# --- checks and claims -----------------------------------------------------------------------------------------


def checks(result: FeatureResult) -> list[Check]:
    """Invariants (raise when broken) and quality checks of the run."""
    long, copy = result.long, result.control_long
    finite = long.dropna(subset=["value"])
    invariant_metrics = copy[copy["metric"].isin(["linear_cka", "svcca", "pwcca", "matched_cosine"])]["value"].dropna()
    out = [
        require("chance-below-one", "every chance level is a number below 1 (a similarity is at most 1)",
                bool((finite["chance"] < 1).all()), float(finite["chance"].max()), "< 1"),
        require("copy-order-invariant", "the permuted copy gets exactly 1 from every order-invariant metric "
                "(CKA, SVCCA, PWCCA, matched cosine)", bool(np.allclose(invariant_metrics, 1.0, atol=1e-6)),
                float(invariant_metrics.min()) if len(invariant_metrics) else None, "= 1 ± 1e-6"),
        require("rows-independent", "feature rows are whole images or disjoint crops, at least 4",
                result.n_rows >= 4, result.n_rows, ">= 4"),
    ]
    family = int(result.tests["p_value"].notna().sum())
    smallest = 1.0 / (result.config.cka_test_draws + 1)
    out.append(require("layer-tests-can-reject", "the smallest permutation p-value of the layer tests can pass Holm's "
                       "first threshold (else claim 1 could never be decided)", smallest < ALPHA / max(family, 1),
                       smallest, f"< {ALPHA} / {family}"))
    if CONTROL_SEEDING in result.config.seedings:
        diff = float(result.floors["max feature difference"].max())
        out.append(require("fully-fixed-features-identical", "fully fixed trials have identical weights and "
                           "features", result.fully_fixed_identical and diff == 0.0, diff, "= 0"))
    cos = copy[copy["metric"] == "cosine"]["value"].dropna()
    out.append(quality_check("copy-cosine-below-one", "largest cosine between trial 1 and its permuted copy (the "
                             "control can only tell cosine apart from the order-invariant metrics if it is < 1)",
                             float(cos.max()) if len(cos) else math.nan, below=1 - 1e-6,
                             margin_note="threshold 1 - 1e-6"))
    out.append(quality_check("trained-beyond-input", "smallest PSNR gain of any trial of the paper's modes over "
                             "the low-dose input (dB): the features are those of working denoisers",
                             min(result.gains.values()), above=0.0, margin_note="threshold 0 dB"))
    return out


def claims(result: FeatureResult, run_checks: Sequence[Check] = (), *, n_permutations: int | None = None
           ) -> list[Claim]:
    """The chapter's verdicts (:mod:`glassbox.measure.claims`), every threshold stated in its rule."""
    cfg = result.config
    n_perm = cfg.test_permutations if n_permutations is None else n_permutations
    long, tests, clusters = result.long, result.tests, result.clusters
    trained = ("trained-beyond-input",)
    out = []

    # claim 1: the features of two trials are unrelated
    valid = tests.dropna(subset=["p_value"])
    above = int(valid["above_chance"].sum())
    verdict, rule = count_rule(above, len(valid), supported_when="none", any_refutes=True,
                               what=f"Down/Up layers of the {len(_pair_keys(result.feats))} models")
    out.append(Claim(
        id="qu-claim1-features-unrelated", chapter=CHAPTER, source="Qu et al., Abstract, Sec. IV-C and V", reference=unet_grid.REFERENCE,
        statement="The two training trials of a U-Net do not learn a consistent feature space; read strongly, "
                  "their features are no more alike than unrelated features.",
        test=f"linear CKA of trial 1 vs trial 2 per Down/Up layer, permutation p-value from {cfg.cka_test_draws} "
             f"re-pairings of the {result.n_rows} rows, Holm over all layers at alpha {ALPHA}; shown: the mean "
             f"CKA, {above} of {len(valid)} layers above chance",
        verdict=verdict, rule=rule, ours=float(valid["linear_cka"].mean()), chance=float(valid["chance"].mean()),
        p_value=float(valid["p_value"].max()), paper="SVCCA 0.05-0.18, cosine 0.54-0.76",
        section="feature_space-metrics", depends_on=trained,
        note="The p-value shown is the largest over layers. CKA above chance does not make the features identical; "
             "it refutes only the strong reading."))

    # claim 2: the decoder is more consistent than the encoder
    paper = updown_joint_test([_paper_values(PAPER_TABLE2_SVCCA), _paper_values(PAPER_TABLE3_COSINE)],
                              n_permutations=n_perm, seed=result.seed)
    single = [updown_test(_paper_values(t), n_permutations=n_perm, seed=result.seed)
              for t in (PAPER_TABLE2_SVCCA, PAPER_TABLE3_COSINE)]
    verdict, rule = p_value_rule(paper["p_value"], paper["p_value_down"], alpha=ALPHA,
                                 direction="Up > Down in the joint test of Tables II and III")
    out.append(Claim(
        id="qu-claim2-paper-tables", chapter=CHAPTER, source="Qu et al., Sec. IV-C, Tables II and III", reference=unet_grid.REFERENCE,
        statement="The decoder (Up layers) is more consistent across trials than the encoder (Down layers).",
        test="on the paper's own numbers: within-model relabelling of Down/Up layers, one joint statistic over "
             "Tables II and III (each table's Up - Down difference divided by the SD of its values; "
             f"{paper['method']}). Single tables: SVCCA {single[0]['difference']:+.3f} (p = {single[0]['p_value']:.3f}), "
             f"cosine {single[1]['difference']:+.3f} (p = {single[1]['p_value']:.3f})",
        verdict=verdict, rule=rule, ours=paper["statistic"], p_value=paper["p_value"],
        section="feature_space-verdicts",
        note="A test of the paper's numbers: does its own evidence carry the claim? Layers of one network are not "
             "independent; the permutation keeps each model's values together."))
    ours = updown_joint_test([by_model(long, "svcca"), by_model(long, "cosine")], n_permutations=n_perm,
                             seed=result.seed)
    verdict, rule = p_value_rule(ours["p_value"], ours["p_value_down"], alpha=ALPHA,
                                 direction="Up > Down in the joint test of our SVCCA and cosine")
    out.append(Claim(
        id="qu-claim2-ours", chapter=CHAPTER, source="Qu et al., Sec. IV-C, Tables II and III", reference=unet_grid.REFERENCE,
        statement="The decoder (Up layers) is more consistent across trials than the encoder (Down layers).",
        test=f"the same joint test on our SVCCA and cosine of the {ours['n_models']} models "
             f"(differences SVCCA {ours['differences'][0]:+.3f}, cosine {ours['differences'][1]:+.3f})",
        verdict=verdict, rule=rule, ours=ours["statistic"], p_value=ours["p_value"],
        section="feature_space-verdicts", depends_on=trained))
    cka = updown_test(by_model(long, "linear_cka"), n_permutations=n_perm, seed=result.seed)
    verdict, rule = p_value_rule(cka["p_value"], cka["p_value_down"], alpha=ALPHA, direction="Up > Down (linear CKA)")
    out.append(Claim(
        id="qu-claim2-cka", chapter=CHAPTER, source="Qu et al., Sec. IV-C (tested with linear CKA)", reference=unet_grid.REFERENCE,
        statement="The decoder (Up layers) is more consistent across trials than the encoder (Down layers).",
        test=f"within-model relabelling test on our linear CKA, an order-invariant metric ({cka['method']})",
        verdict=verdict, rule=rule, ours=cka["difference"], p_value=cka["p_value"],
        section="feature_space-verdicts", depends_on=trained))

    # claim 3: fixed seeding is not more stable than random seeding
    pivot = tests.pivot_table(index=["depth", "layer"], columns="seeding", values="linear_cka")
    diffs = (pivot["fixed"] - pivot["random"]).to_numpy()
    flip = signflip_test(diffs, n_permutations=n_perm, seed=result.seed)
    verdict, rule = p_value_rule(flip["p_value_below"], flip["p_value"], alpha=ALPHA,
                                 direction="fixed-seeding pairs less similar than random-seeding pairs")
    out.append(Claim(
        id="qu-claim3-fixed-vs-random", chapter=CHAPTER, source="Qu et al., Sec. V", reference=unet_grid.REFERENCE,
        statement="Fixed seeding (the same initial weights for both trials) does not lead to a more stable feature "
                  "space than random seeding.",
        test=f"linear CKA of the fixed-seeding pair minus that of the random-seeding pair, per Down/Up layer of "
             f"the same architecture ({flip['n']} layers; trial 1 is the same training in both pairs); sign-flip "
             "tests in both directions",
        verdict=verdict, rule=rule, ours=flip["mean_difference"], p_value=flip["p_value_below"],
        paper="average SVCCA fixed 0.06-0.10, random 0.09-0.18", section="feature_space-verdicts",
        depends_on=trained,
        note=f"p (fixed more similar) = {flip['p_value']:.3g}. Contradicted means fixed seeding does make the "
             "trials more alike; the fully fixed control, bit-identical, is the floor of that scale."))

    # Fig. 4: one-trial clusters, and what a permuted copy does
    deepest_fixed = model_label(result.deepest, "fixed")
    fig4 = clusters[(clusters["pair"] == deepest_fixed) & (clusters["layer"] != "Bottleneck")].dropna(subset=["ari"])
    split = holm(fig4["p_value"].to_numpy(), ALPHA)
    verdict, rule = count_rule(int(split.sum()), len(fig4), supported_when="all", what="Down/Up layers")
    out.append(Claim(
        id="qu-fig4-separable", chapter=CHAPTER, source="Qu et al., Fig. 4 and Sec. IV-C", reference=unet_grid.REFERENCE,
        statement=f"For U-Net-{result.deepest} with fixed seeding, every layer's features cluster into large "
                  "one-trial clusters.",
        test=f"ARI of the two-cluster cut against the trial labels, permutation p ({cfg.cluster_permutations} "
             f"swaps), Holm over the layers at alpha {ALPHA}; shown: mean ARI, {int(split.sum())} of {len(fig4)} "
             "layers split by trial",
        verdict=verdict, rule=rule, ours=float(fig4["ari"].mean()), chance=0.0,
        section="feature_space-clustering"))
    copy = clusters[(clusters["pair"] == "permuted copy") & (clusters["layer"] != "Bottleneck")].dropna(subset=["ari"])
    copy_split = holm(copy["p_value"].to_numpy(), ALPHA)
    verdict, rule = count_rule(int(copy_split.sum()), len(copy), supported_when="none", any_refutes=True,
                               what="Down/Up layers")
    out.append(Claim(
        id="qu-fig4-premise", chapter=CHAPTER, source="Qu et al., Sec. III-B.2", reference=unet_grid.REFERENCE,
        statement="If two trials' feature spaces are similar, each image clusters with its twin and no one-trial "
                  "clusters appear; one-trial clusters therefore show different feature spaces.",
        test=f"the same clustering on trial 1 of U-Net-{result.deepest} against a copy of itself with its channels "
             f"shuffled (identical information); {int(copy_split.sum())} of {len(copy)} layers split by trial",
        verdict=verdict, rule=rule, ours=float(copy["ari"].mean()), chance=0.0,
        section="feature_space-clustering",
        note="Contradicted means the picture appears without any difference in the features."))
    cosine = tests.dropna(subset=["cosine_p_value"])
    cos_above = int(cosine["cosine_above_chance"].sum())
    copy_cos = result.control_long[result.control_long["metric"] == "cosine"]["value"]
    verdict, rule = count_rule(cos_above, len(cosine), supported_when="all",
                               what=f"Down/Up layers of the {len(_pair_keys(result.feats))} models")
    out.append(Claim(
        id="qu-table3-premise", chapter=CHAPTER, source="Qu et al., Sec. III-B.1 and Table III", reference=unet_grid.REFERENCE,
        statement="Cosine similarity of corresponding features measures how consistent two feature spaces are.",
        test=f"a measure of consistency rises above its chance level where two feature spaces are related (claim 1: "
             f"linear CKA above chance in {above} of {len(valid)} layers). Per Down/Up layer, the paper's cosine "
             f"against {cfg.cka_test_draws} re-pairings of the rows, Holm over all layers: {cos_above} of "
             f"{len(cosine)} above chance; shown: the mean cosine",
        verdict=verdict, rule=rule, ours=float(cosine["cosine"].mean()), chance=float(cosine["cosine_chance"].mean()),
        p_value=float(cosine["cosine_p_value"].min()), paper="0.54-0.76",
        section="feature_space-order-free", depends_on=trained,
        note=f"The p-value shown is the smallest over layers. Trial 1 against a copy of itself with its channels "
             f"shuffled (identical information) gets a cosine of {float(copy_cos.mean()):.3f} on average, not 1."))
    return apply_checks(out, run_checks)


# --- numbers ------------------------------------------------------------------------------------------------------


def averages(result: FeatureResult, seeding: str = "random") -> dict[str, float]:
    """Mean over the Down/Up layers of the models of ``seeding``: each metric and its chance level."""
    rows = result.long[(result.long["seeding"] == seeding) & (result.long["layer"] != "Bottleneck")]
    out = {}
    for metric, part in rows.groupby("metric"):
        out[metric] = float(part["value"].mean())
        out[f"{metric}_chance"] = float(part["chance"].mean())
    return out


def glue_values(result: FeatureResult) -> dict[str, Any]:
    """Every number the chapter's prose quotes, by glue name."""
    avg = averages(result)
    paper_svcca = [v for col in _paper_values(PAPER_TABLE2_SVCCA).values() for v in col.values()]
    paper_cos = [v for col in _paper_values(PAPER_TABLE3_COSINE).values() for v in col.values()]
    k_table = paper_k_table(result.long)
    summary = cluster_summary(result)
    deepest_random = model_label(result.deepest, "random")
    copy = result.control_long.set_index(["layer", "metric"])["value"]
    random_labels = [model_label(d, "random") for d in result.config.depths]
    fixed_labels = [model_label(d, "fixed") for d in result.config.depths]
    tests = result.tests.dropna(subset=["p_value"])
    return {
        "n_images": result.n_rows, "image_px": result.image_px, "rows": result.config.feature_rows,
        "deepest": result.deepest, "chance_draws": result.config.chance_draws,
        "svcca_random": avg["svcca"], "svcca_chance": avg["svcca_chance"],
        "cka_random": avg["linear_cka"], "cka_chance": avg["linear_cka_chance"],
        "cos_random": avg["cosine"], "cos_chance": avg["cosine_chance"],
        "cos_chance_share": avg["cosine_chance"] / avg["cosine"], "mcos_random": avg["matched_cosine"],
        "paper_svcca": float(np.mean(paper_svcca)), "paper_cos": float(np.mean(paper_cos)),
        "paper_svcca_min": min(paper_svcca), "paper_svcca_max": max(paper_svcca),
        "paper_cos_min": min(paper_cos), "paper_cos_max": max(paper_cos),
        "paper_u9r_average_printed": PAPER_TABLE2_SVCCA["U9-R"]["Average"],
        "paper_u9r_average_computed": float(np.mean(list(_paper_values(PAPER_TABLE2_SVCCA)["U9-R"].values()))),
        "perm_cka": float(copy.xs("linear_cka", level="metric").min()),
        "perm_cos": float(copy.xs("cosine", level="metric").mean()),
        "layers_above": int(tests["above_chance"].sum()), "layers_tested": len(tests),
        "cos_layers_above": int(tests["cosine_above_chance"].sum()),
        "real_ari": float(summary.loc[deepest_random, "mean ARI"]), "perm_ari": float(summary.loc["permuted copy", "mean ARI"]),
        "real_twin": float(summary.loc[random_labels, "mean twin NN"].mean()),
        "fixed_twin": float(summary.loc[fixed_labels, "mean twin NN"].mean()),
        "perm_twin": float(summary.loc["permuted copy", "mean twin NN"]),
        "twin_chance": float(summary["twin NN chance"].mean()),
        "twin_layers_above": int(summary.loc[random_labels + fixed_labels, "layers with twins above chance"].sum()),
        "twin_layers": int(summary.loc[random_labels + fixed_labels, "layers"].sum()),
        "split_layers": int(summary.loc[random_labels + fixed_labels, "layers split by trial"].sum()),
        "k_star_min": int(np.nanmin(k_table["k at chance"])), "k_star_max": int(np.nanmax(k_table["k at chance"])),
        "paper_values": len(k_table), "below_if_like_ours": int(k_table["below chance if kept like ours"].sum()),
        "ours_kept_fraction": float(np.nanmedian(k_table["our kept fraction"])),
        "chance_all_channels_64": chance_mod.chance_level("cca", PAPER_N, 64).mean,
        "chance_all_channels_512": chance_mod.chance_level("cca", PAPER_N, 512).mean,
    }


def numbers(result: FeatureResult) -> dict[str, Any]:
    """The headline numbers of ``results/feature_space.json``."""
    return {
        "n_images": result.n_rows, "rows": result.config.feature_rows, "reduction": "mean (spatial average per channel)",
        "similarity": result.long.drop(columns=["note"]), "table2_svcca": tidy(table2(result)),
        "table3_cosine": tidy(table3(result)), "layer_tests": result.tests, "fully_fixed_floor": result.floors,
        "paper_k_at_chance": paper_k_table(result.long), "clustering": result.clusters,
        "cluster_summary": cluster_summary(result), "permuted_copy_control": result.control_long.drop(columns=["note"]),
        "averages_random_seeding": averages(result), "averages_fixed_seeding": averages(result, "fixed"),
        "psnr_gain_over_input": result.gains,
    }
