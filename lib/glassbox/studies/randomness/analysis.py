"""How far two trials end up apart: distances, per-layer and per-step frames, chance tests, correlations."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from glassbox.core import checks as argcheck
from glassbox.measure import chance as chance_mod
from glassbox.measure import similarity as sim
from glassbox.measure.stats import interval, spearman_bootstrap
from glassbox.studies.randomness.conditions import CONDITIONS, SEED_LEVEL
from glassbox.studies.randomness.trials import Experiment
from glassbox.training import unet_denoiser


def relative_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||a|| in float64 (0 exactly when the arrays are equal)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(a64))
    if norm == 0:
        raise ValueError("relative_distance: the reference array is all zeros")
    return float(np.linalg.norm(a64 - b64)) / norm


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _psnr_from_rms(rms: float) -> float:
    return math.inf if rms == 0 else 20.0 * math.log10(unet_denoiser.PSNR_RANGE_HU / rms)


def _safe(metric: Callable[[], Any]) -> float:
    try:
        return float(metric())
    except sim.SimilarityInputError:
        return math.nan


def _one_blas_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with one BLAS thread: its matrices are small (N x C with N in the hundreds), where extra
    threads only cost (on a busy 2-core machine, 30x slower with two OpenBLAS threads, measured)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


@_one_blas_thread
def pair_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per (condition, pair): final weight distance, output agreement, PSNRs and mean similarities."""
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        a, b = experiment.trials[ia], experiment.trials[ib]
        psnr_a, psnr_b = a["test_scores"]["psnr"], b["test_scores"]["psnr"]
        rms = _rms(a["test_outputs"], b["test_outputs"])
        fa, fb = a["final_features"], b["final_features"]
        cka = [_safe(lambda n=n: sim.linear_cka(fa[n], fb[n], debiased=True)) for n in fa]
        cos = [_safe(lambda n=n: sim.matched_cosine(fa[n], fb[n])) for n in fa]
        rows.append({"condition": condition, "pair": k,
                     "weights_identical": unet_denoiser.states_identical(a["state_dict"], b["state_dict"]),
                     "weight_distance": relative_distance(a["weights"][-1], b["weights"][-1]),
                     "psnr_a": psnr_a, "psnr_b": psnr_b, "psnr_mean": (psnr_a + psnr_b) / 2,
                     "psnr_diff": abs(psnr_a - psnr_b), "input_psnr": a["test_scores"]["input_psnr"],
                     "output_rms_diff_hu": rms, "output_psnr_between": _psnr_from_rms(rms),
                     "cka": float(np.nanmean(cka)), "feature_dissimilarity": 1.0 - float(np.nanmean(cka)),
                     "matched_cosine": float(np.nanmean(cos))})
    return pd.DataFrame(rows)


@_one_blas_thread
def layer_frame(experiment: Experiment, *, chance_draws: int | None = None) -> pd.DataFrame:
    """One row per (condition, pair, layer): debiased CKA and matched cosine of the final features, each
    with its permutation chance level (mean and SD over ``chance_draws`` re-pairings of samples)."""
    draws = experiment.config.chance_draws if chance_draws is None else argcheck.integer(chance_draws, "chance_draws", 2)
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        a, b = experiment.trials[ia], experiment.trials[ib]
        for depth, name in enumerate(a["final_features"]):
            x, y = a["final_features"][name], b["final_features"][name]
            row: dict[str, Any] = {"condition": condition, "pair": k, "layer": name, "layer_index": depth,
                                   "channels": x.shape[1]}
            for metric, fn in (("cka", lambda u, v: sim.linear_cka(u, v, debiased=True)),
                               ("matched_cosine", sim.matched_cosine)):
                row[metric] = _safe(lambda: fn(x, y))
                try:
                    rng = np.random.default_rng([experiment.seed, k, depth])
                    null = chance_mod.permutation_chance(fn, x, y, n_draws=draws, seed=rng)
                    row[f"{metric}_chance"], row[f"{metric}_chance_sd"] = null.mean, null.std
                except sim.SimilarityInputError:
                    row[f"{metric}_chance"] = row[f"{metric}_chance_sd"] = math.nan
            rows.append(row)
    return pd.DataFrame(rows)


@_one_blas_thread
def chance_tests(experiment: Experiment, conditions: Sequence[str] = SEED_LEVEL, *,
                 n_draws: int | None = None) -> pd.DataFrame:
    """One row per (condition, pair, layer) of ``conditions``: debiased CKA of the final features, its
    permutation chance and one-sided p-value from ``n_draws`` (default ``config.cka_test_draws``) re-pairings."""
    draws = experiment.config.cka_test_draws if n_draws is None else argcheck.integer(n_draws, "n_draws", 2)
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        if condition not in conditions:
            continue
        a, b = experiment.trials[ia], experiment.trials[ib]
        for depth, name in enumerate(a["final_features"]):
            rng = np.random.default_rng([experiment.seed, k, depth, 0xC4A])
            try:
                value, null, p = chance_mod.linear_cka_permutation_test(
                    a["final_features"][name], b["final_features"][name], n_draws=draws, debiased=True, seed=rng)
                chance = null.mean
            except sim.SimilarityInputError:
                value = chance = p = math.nan
            rows.append({"condition": condition, "pair": k, "layer": name, "cka": value, "chance": chance,
                         "p_value": p})
    return pd.DataFrame(rows)


@_one_blas_thread
def curve_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per (condition, pair, snapshot step): weight distance, output agreement and debiased CKA
    (mean over layers and the lowest layer) between the two trials at that step."""
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        a, b = experiment.trials[ia], experiment.trials[ib]
        if a["steps"] != b["steps"]:
            raise ValueError(f"{condition} pair {k}: the two trials kept weights at different steps")
        for s, step in enumerate(a["steps"]):
            cka = [_safe(lambda n=n: sim.linear_cka(a["features"][n][s], b["features"][n][s], debiased=True))
                   for n in a["features"]]
            rms = _rms(a["curve_outputs"][s], b["curve_outputs"][s])
            rows.append({"condition": condition, "pair": k, "step": step, "epoch": step / a["steps_per_epoch"],
                         "weight_distance": relative_distance(a["weights"][s], b["weights"][s]),
                         "output_rms_diff_hu": rms, "output_psnr_between": _psnr_from_rms(rms),
                         "cka": float(np.nanmean(cka)), "cka_lowest": float(np.nanmin(cka)),
                         "feature_dissimilarity": 1.0 - float(np.nanmean(cka))})
    return pd.DataFrame(rows)


_BOUNDS: dict[str, tuple[float, float]] = {"cka": (-1.0, 1.0), "matched_cosine": (-1.0, 1.0),
                                           "output_rms_diff_hu": (0.0, math.inf), "psnr_diff": (0.0, math.inf),
                                           "weight_distance": (0.0, math.inf)}


def condition_table(pairs: pd.DataFrame, layers: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per condition: means over pairs with 95 % t-intervals, and the chance levels of the similarities.

    ``cka`` and ``matched_cosine`` are first averaged over layers within a pair; their chance columns are
    the mean permutation chance over pairs and layers. Interval bounds are clipped to each metric's range.
    """
    order = list(order) if order is not None else list(dict.fromkeys(pairs["condition"]))
    per_pair = layers.groupby(["condition", "pair"])[["cka", "matched_cosine", "cka_chance", "matched_cosine_chance",
                                                      "cka_chance_sd"]].mean()
    rows = []
    for condition in order:
        p = pairs[pairs["condition"] == condition]
        lp = per_pair.loc[condition]
        row: dict[str, Any] = {"condition": condition, "what differs": CONDITIONS[condition], "pairs": len(p),
                               "identical pairs": int(p["weights_identical"].sum())}
        for column, values in (("cka", lp["cka"]), ("matched_cosine", lp["matched_cosine"]),
                               ("output_rms_diff_hu", p["output_rms_diff_hu"]), ("psnr_diff", p["psnr_diff"]),
                               ("weight_distance", p["weight_distance"])):
            mean, lo, hi = interval(values)
            low, high = _BOUNDS[column]  # a t-interval of 3 values can cross the metric's own range
            row[column], row[f"{column}_lo"], row[f"{column}_hi"] = mean, max(lo, low), min(hi, high)
        row["cka_chance"], row["cka_chance_sd"] = float(lp["cka_chance"].mean()), float(lp["cka_chance_sd"].mean())
        row["matched_cosine_chance"] = float(lp["matched_cosine_chance"].mean())
        row["psnr_mean"] = float(p["psnr_mean"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def correlations(pairs: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Spearman's rho (bootstrap interval) of feature dissimilarity (1 - mean CKA) with the PSNR difference to
    the target and with the RMS difference between the two outputs, over two sets of trial pairs: every pair
    whose weights differ, and the seed-level pairs only (:data:`SEED_LEVEL`, the differences Qu's trials had)."""
    scopes = {"all differing pairs": ~pairs["weights_identical"],
              "seed-level pairs": pairs["condition"].isin(SEED_LEVEL) & ~pairs["weights_identical"]}
    rows = []
    for scope, mask in scopes.items():
        chosen = pairs[mask]
        for target, label in (("psnr_diff", "|PSNR_A - PSNR_B| (dB)"),
                              ("output_rms_diff_hu", "RMS(out_A - out_B) (HU)")):
            try:
                r = spearman_bootstrap(chosen["feature_dissimilarity"], chosen[target], n_boot=n_boot, seed=seed)
            except ValueError:
                r = {"rho": math.nan, "p": math.nan, "lo": math.nan, "hi": math.nan, "n": len(chosen), "n_valid": 0}
            rows.append({"pairs": scope, "against": label, "target": target} | r)
    return pd.DataFrame(rows)


def ulp_growth(curve: pd.DataFrame, measure: str = "weight_distance", reference: str = "init",
               fraction: float = 0.5) -> dict[str, float]:
    """How fast the ``ulp`` difference grows towards the ``reference`` condition's (mean over pairs per step).

    Returns the ratio ulp/reference at the first kept step > 0 and at the end, and the first step at which
    the ratio reaches ``fraction`` (NaN if it never does within the run).
    """
    means = curve.groupby(["condition", "step"])[measure].mean()
    if "ulp" not in means.index.get_level_values(0) or reference not in means.index.get_level_values(0):
        raise ValueError(f"ulp_growth needs the 'ulp' and {reference!r} conditions in the curve")
    ratio = (means.loc["ulp"] / means.loc[reference]).dropna()
    ratio = ratio[ratio.index > 0]
    reached = ratio[ratio >= fraction]
    return {"first_step": float(ratio.index[0]), "ratio_first_step": float(ratio.iloc[0]),
            "ratio_end": float(ratio.iloc[-1]), "last_step": float(ratio.index[-1]),
            "step_reaching_fraction": float(reached.index[0]) if len(reached) else math.nan,
            "ulp_first_step": float(means.loc["ulp"][ratio.index[0]]),
            "ulp_end": float(means.loc["ulp"].iloc[-1]), "reference_end": float(means.loc[reference].iloc[-1])}
