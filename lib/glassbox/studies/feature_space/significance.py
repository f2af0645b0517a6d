"""The tests behind the feature-space verdicts: per-layer tests, the up/down relabelling tests, the sign-flip test."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from glassbox.measure import chance as chance_mod
from glassbox.measure import similarity as sim
from glassbox.measure.stats import holm
from glassbox.studies.feature_space.config import ALPHA
from glassbox.studies.feature_space.layer_similarity import _pair_keys
from glassbox.training.unet_grid import (
    QuConfig,
    model_label,
)

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
