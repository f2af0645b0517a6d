"""The randomness chapter's checks, claims, deviations from Qu et al., glued values and headline numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from glassbox.measure.claims import (
    Check,
    Claim,
    Deviation,
    apply_checks,
    count_rule,
    equivalence_rule,
    interval_rule,
    p_value_rule,
    quality_check,
    require,
)
from glassbox.measure.stats import interval
from glassbox.studies.randomness.analysis import ulp_growth
from glassbox.studies.randomness.conditions import ROUNDING_LEVEL, SEED_LEVEL
from glassbox.studies.randomness.config import PROFILES, RandomnessConfig, conditions_for
from glassbox.studies.randomness.study import RandomnessResult
from glassbox.training import unet_grid

# --- the chapter's surface -------------------------------------------------------------------------------------

CHAPTER = "randomness"

PAPER_VALUES: dict[str, Any] = {
    "Table I, U-Net-7: PSNR difference between the two trials (dB)": {"random seeding": 0.97, "fixed seeding": 5.12},
    "Table III, U-Net-7: average cosine similarity": {"random seeding": 0.6366, "fixed seeding": 0.6846},
    "Sec. V": "fixed seeding (the same initial weights) does not lead to a more stable feature space",
    "Discussion": "feature space inconsistency might not be coupled with performance differences (no test given)",
}
"""What Qu et al. report that this chapter speaks to (their numbers, labelled)."""

ALPHA = 0.05
"""Significance level of every test behind a verdict."""

WEAK_CORRELATION = 0.3
"""|Spearman rho| below this is a weak correlation (Cohen 1988's conventional bound), fixed before looking:
the margin of the equivalence test of "not coupled"."""


def _paired(result: RandomnessResult, first: str, second: str, column: str = "cka") -> np.ndarray:
    p = result.pairs.set_index(["condition", "pair"])[column]
    return np.array([p[(first, k)] - p[(second, k)] for k in range(result.config.n_pairs)])


def _difference_interval(d: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Mean of paired CKA differences and its 95 % t-interval, within the range a difference can take ([-2, 2];
    the whole range when the interval is undefined, e.g. for one pair)."""
    mean, lo, hi = interval(d)
    lo, hi = (lo, hi) if np.isfinite(lo) else (-math.inf, math.inf)
    return mean, (max(lo, -2.0), min(hi, 2.0))


def checks(result: RandomnessResult) -> list[Check]:
    """Invariants (raise when broken) and quality checks of the run."""
    first = next(iter(result.experiment.trials.values()))
    pairs, layers = result.pairs, result.layers
    control = pairs[pairs["condition"] == "identical"]
    out = [
        require("snapshot-steps", "weights are kept at step 0 and after the first update",
                first["steps"][0] == 0 and first["steps"][1] > 0),
        require("identical-bit-identical", "trials with the same seeds on one device end bit-identical in every "
                "parameter and buffer", bool(control["weights_identical"].all()), int(control["weights_identical"].sum()),
                f"= {len(control)}"),
        require("similarity-bounded", "debiased CKA and matched cosine are at most 1",
                bool((layers["cka"].dropna() <= 1 + 1e-9).all() and (layers["matched_cosine"].dropna() <= 1 + 1e-9).all())),
    ]
    seed_level = pairs[pairs["condition"].isin(SEED_LEVEL)]
    out.append(require("seeds-change-weights", "a different seed gives different weights",
                       not bool(seed_level["weights_identical"].any())))
    if "ulp" in result.conditions:
        start = result.curve[(result.curve["condition"] == "ulp") & (result.curve["step"] == 0)]["weight_distance"]
        out.append(require("one-ulp-start", "the ulp pairs start one float32 ulp apart in one weight (relative "
                           "distance in (0, 1e-6))", bool(((start > 0) & (start < 1e-6)).all()), float(start.max()),
                           "in (0, 1e-6)"))
    if "noise" in result.conditions:
        same = all(np.array_equal(result.experiment.trial("noise", k, "A")["patch_positions"],
                                  result.experiment.trial("noise", k, "B")["patch_positions"])
                   for k in range(result.config.n_pairs))
        out.append(require("noise-same-patches", "a new noise draw trains on the same patch positions (chosen on "
                           "the noise-free phantoms)", same))
    chance = float(layers["cka_chance"].mean())
    out.append(quality_check("chance-centred", "mean permutation chance of debiased CKA over all layers and pairs "
                             "(0 in expectation)", abs(chance), below=0.02,
                             margin_note="threshold 0.02; the permutation null of debiased CKA has mean 0"))
    gains = result.scores["psnr"] - result.scores["input_psnr"]
    out.append(quality_check("trained-beyond-input", "mean test PSNR gain of the trials over the low-dose input (dB)",
                             float(gains.mean()), above=0.0,
                             margin_note=f"threshold 0 dB: the recipe makes denoisers; smallest single trial "
                                         f"{float(gains.min()):+.2f} dB"))
    return out


def claims(result: RandomnessResult, run_checks: Sequence[Check] = ()) -> list[Claim]:
    """The chapter's verdicts (:mod:`glassbox.measure.claims`), every threshold stated in its rule."""

    cfg, conditions, out = result.config, set(result.conditions), []
    trained = ("trained-beyond-input",)
    if {"data_order", "init_and_order"} <= conditions:
        mean, bounds = _difference_interval(_paired(result, "data_order", "init_and_order"))
        verdict, rule = interval_rule(bounds, below=0.0,
                                      what="CKA(fixed) - CKA(random)")
        out.append(Claim(
            id="qu-fixed-seeding", chapter=CHAPTER, source="Qu et al., Sec. V", reference=unet_grid.REFERENCE,
            statement="Fixed seeding (the same initial weights for both trials) does not make the trials' features "
                      "more alike than random seeding.",
            test=f"per pair: debiased CKA (mean over layers) of the data_order pair (same initial weights, own data "
                 f"order) minus that of the init_and_order pair (own weights and order), same trial A; 95 % t-interval "
                 f"over {cfg.n_pairs} pairs",
            verdict=verdict, rule=rule + " (contradicted: fixed seeding does make the trials more alike)",
            ours=mean, interval=bounds, interval_kind="95 % t over pairs",
            section="randomness-sources", depends_on=trained))
    tests = result.tests.dropna(subset=["p_value"])
    if len(tests):
        p_max = float(tests["p_value"].max())
        verdict, rule = p_value_rule(p_max, alpha=ALPHA, direction="every layer above its chance level")
        out.append(Claim(
            id="seed-features-above-chance", chapter=CHAPTER, source="this book",
            statement="Two trials that differ in a seed learn features related beyond chance in every layer.",
            test=f"per (seed-level condition, pair, layer): debiased CKA against {cfg.cka_test_draws} re-pairings of "
                 f"the {cfg.n_feature_images} test crops, one-sided permutation p; the claim needs every one of the "
                 f"{len(tests)} tests (an intersection-union test: p = the largest p); shown: the smallest CKA",
            verdict=verdict, rule=rule, ours=float(tests["cka"].min()), p_value=p_max,
            chance=float(tests["chance"].mean()), section="randomness-sources",
            depends_on=trained))
    if "ulp" in conditions:
        ulp = result.pairs[result.pairs["condition"] == "ulp"]
        separated = int((~ulp["weights_identical"]).sum())
        verdict, rule = count_rule(separated, len(ulp), supported_when="all", what="ulp pairs")
        out.append(Claim(
            id="ulp-separates", chapter=CHAPTER, source="this book",
            statement="One float32 ulp in one initial weight is enough to make two trials end with different weights.",
            test=f"ulp pairs whose final parameters and buffers are not bit-identical: {separated} of {len(ulp)}",
            verdict=verdict, rule=rule, ours=float(separated), section="randomness-drift"))
    if {"ulp", "init_and_order"} <= conditions:
        mean, bounds = _difference_interval(_paired(result, "ulp", "init_and_order"))
        verdict, rule = interval_rule(bounds, above=0.0, what="CKA(ulp) - CKA(random)")
        out.append(Claim(
            id="ulp-closer-than-seeds", chapter=CHAPTER, source="this book",
            statement="In a run this short, trials one ulp apart end with features closer than trials with different "
                      "seeds (Qu's random seeding).",
            test=f"per pair: debiased CKA (mean over layers) of the ulp pair minus that of the init_and_order pair; "
                 f"95 % t-interval over {cfg.n_pairs} pairs",
            verdict=verdict, rule=rule, ours=mean, interval=bounds,
            interval_kind="95 % t over pairs", section="randomness-drift", depends_on=trained))
    seed_rows = result.corr[(result.corr["pairs"] == "seed-level pairs") & (result.corr["target"] == "psnr_diff")]
    if len(seed_rows) and np.isfinite(seed_rows["lo"].iloc[0]):
        r = seed_rows.iloc[0]
        verdict, rule = equivalence_rule((r["lo"], r["hi"]), WEAK_CORRELATION, what="Spearman's rho")
        out.append(Claim(
            id="qu-not-coupled", chapter=CHAPTER, source="Qu et al., Sec. V (Discussion)", reference=unet_grid.REFERENCE,
            statement="The degree of feature-space inconsistency might not be coupled with performance differences.",
            test=f"Spearman's rho between 1 - CKA and |PSNR_A - PSNR_B| over the {int(r['n'])} seed-level pairs, 95 % "
                 f"bootstrap interval; 'not coupled' = |rho| < {WEAK_CORRELATION} (a weak correlation)",
            verdict=verdict, rule=rule, ours=float(r["rho"]), interval=(float(r["lo"]), float(r["hi"])),
            interval_kind="95 % bootstrap over pairs", p_value=float(r["p"]),
            section="randomness-performance", depends_on=trained,
            note="Pairs share their trial A within a replicate, so the interval is, if anything, too narrow."))
    return apply_checks(out, run_checks)


def _growth(result: RandomnessResult, measure: str, reference: str = "init") -> dict[str, float] | None:
    return ulp_growth(result.curve, measure, reference) if {"ulp", reference} <= set(result.conditions) else None


def glue_values(result: RandomnessResult) -> dict[str, Any]:
    """Every number (and every number-derived word) the chapter's prose quotes, by glue name."""
    cfg, pairs, t = result.config, result.pairs, result.table.set_index("condition")
    steps = result.curve.groupby(["condition", "step"])[["weight_distance", "feature_dissimilarity",
                                                         "output_rms_diff_hu"]].mean()
    first = next(iter(result.experiment.trials.values()))
    values: dict[str, Any] = {
        "n_pairs": cfg.n_pairs, "alt_threads": cfg.alt_threads,
        "threads": cfg.torch_threads if cfg.torch_threads is not None else "default", "n_crops": cfg.n_feature_images,
        "n_trials": len(result.experiment.trials), "total_steps": first["steps"][-1], "epochs": cfg.denoiser.epochs,
        "paper_profile_epochs": PROFILES["paper"].denoiser.epochs,
        "psnr_trials": float(result.scores["psnr"].mean()), "psnr_trials_min": float(result.scores["psnr"].min()),
        "psnr_trials_max": float(result.scores["psnr"].max()), "psnr_input": float(result.scores["input_psnr"].iloc[0]),
        "identical_pairs": int(pairs.loc[pairs["condition"] == "identical", "weights_identical"].sum()),
        "identical_total": int((pairs["condition"] == "identical").sum()),
        "cka_chance_sd": float(result.table["cka_chance_sd"].max()),
        "mcos_chance": float(result.table["matched_cosine_chance"].mean()),
    }
    for c in t.index:
        values |= {f"cka_{c}": t.loc[c, "cka"], f"cka_{c}_lo": t.loc[c, "cka_lo"], f"cka_{c}_hi": t.loc[c, "cka_hi"],
                   f"fd_end_{c}": float(steps.loc[c, "feature_dissimilarity"].iloc[-1]),
                   f"w_end_{c}": float(steps.loc[c, "weight_distance"].iloc[-1]),
                   f"w_first_{c}": float(steps.loc[c, "weight_distance"].iloc[1])}
    singles = [c for c in ("init", "data_order", "noise") if c in t.index]
    if singles:
        strongest = min(singles, key=lambda c: t.loc[c, "cka"])
        values["strongest_source"] = {"init": "initialisation", "data_order": "data order", "noise": "noise"}[strongest]
    growth, growth_fd = _growth(result, "weight_distance"), _growth(result, "feature_dissimilarity")
    if growth is not None:
        ulp = steps.loc["ulp"]
        reached = growth_fd["step_reaching_fraction"]
        values |= {
            "ulp_absorbed": int(pairs.loc[pairs["condition"] == "ulp", "weights_identical"].sum()),
            "ulp_w0": float(ulp["weight_distance"].iloc[0]), "ulp_w1": growth["ulp_first_step"],
            "ulp_jump": growth["ulp_first_step"] / float(ulp["weight_distance"].iloc[0]),
            "ulp_ratio_w": growth["ratio_end"], "ulp_ratio_fd": growth_fd["ratio_end"],
            "ulp_reaches": f"reaches half of it at step {int(reached)}" if np.isfinite(reached)
            else "does not reach half of it within the run",
            "ulp_out_end": float(ulp["output_rms_diff_hu"].iloc[-1]),
        }
    rounding = [c for c in ROUNDING_LEVEL if c in t.index]
    seeds = [c for c in SEED_LEVEL if c in t.index]
    if rounding and seeds:
        def orders(column: str, index: int) -> float:
            return math.log10(min(float(steps.loc[c, column].iloc[index]) for c in seeds)
                              / max(float(steps.loc[c, column].iloc[index]) for c in rounding))
        values |= {"orders_first": orders("weight_distance", 1), "orders_end": orders("weight_distance", -1),
                   "orders_fd_end": orders("feature_dissimilarity", -1)}
    if {"threads", "kernel_noise"} <= set(t.index):
        values["kernel_over_threads"] = values["fd_end_kernel_noise"] / values["fd_end_threads"]
    if {"threads", "ulp"} <= set(t.index):
        values["ulp_over_threads"] = values["fd_end_ulp"] / values["fd_end_threads"]
    if "init" in t.index:
        init = steps.loc["init"]
        out0, out_end = float(init["output_rms_diff_hu"].iloc[0]), float(init["output_rms_diff_hu"].iloc[-1])
        fd0, fd_end = float(init["feature_dissimilarity"].iloc[0]), float(init["feature_dissimilarity"].iloc[-1])
        values |= {"init_out0": out0, "init_out_end": out_end, "init_fd0": fd0, "init_fd_end": fd_end,
                   "init_out_trend": "fall" if out_end < out0 else "rise",
                   "init_fd_trend": "rises" if fd_end > fd0 else "falls"}
    by_layer = result.layers[result.layers["condition"].isin(SEED_LEVEL)].groupby("layer")["cka"].mean()
    if len(by_layer):
        values |= {"layer_most": by_layer.idxmax(), "layer_most_cka": float(by_layer.max()),
                   "layer_least": by_layer.idxmin(), "layer_least_cka": float(by_layer.min())}
    tests = result.tests.dropna(subset=["p_value"])
    values |= {"min_seed_cka": float(tests["cka"].min()) if len(tests) else math.nan,
               "max_seed_p": float(tests["p_value"].max()) if len(tests) else math.nan, "n_seed_tests": len(tests)}
    for row in result.corr.itertuples():
        key = ("all" if row.pairs.startswith("all") else "seed") + ("_psnr" if row.target == "psnr_diff" else "_out")
        values |= {f"rho_{key}": row.rho, f"rho_{key}_lo": row.lo, f"rho_{key}_hi": row.hi, f"rho_{key}_n": row.n}
    return values


def drift_table(result: RandomnessResult) -> pd.DataFrame:
    """1 - CKA (mean over pairs) per condition at the first kept steps, the middle one and the end of training."""
    steps = result.curve.groupby(["condition", "step"])["feature_dissimilarity"].mean().unstack(0)
    return steps.iloc[[0, 1, len(steps) // 2, -1]]


def deviations(config: RandomnessConfig, *, device: torch.device | str = "cpu") -> list[Deviation]:
    """How this run departs from Qu et al.'s training protocol (the recipe, :func:`unet_grid.recipe_deviations`)
    and from their design (two trials per seeding mode and model)."""
    den = config.denoiser
    models = f"U-Net-{den.depth}, {config.n_pairs} pairs of trials per condition"
    out = unet_grid.recipe_deviations(CHAPTER, den, n_px=config.data.n, device=device, models=models)
    out.append(Deviation(
        f"{CHAPTER}.{unet_grid.REFERENCE}.design", CHAPTER, unet_grid.REFERENCE, "design",
        "two trials per seeding mode (random, fixed) of each of three U-Nets; no condition isolates a source",
        f"{config.n_pairs} independent pairs of one U-Net-{den.depth} per condition "
        f"({', '.join(conditions_for(config, device))}), trial B changing one source of randomness",
        "the chapter asks which source moves the features, which the paper's two modes cannot separate"))
    return out


def numbers(result: RandomnessResult) -> dict[str, Any]:
    """The headline numbers of ``results/randomness.json``."""
    layers = result.layers.groupby(["condition", "layer"])[["cka", "cka_chance", "cka_chance_sd", "matched_cosine",
                                                            "matched_cosine_chance"]].mean().reset_index()
    curve = result.curve.groupby(["condition", "step"])[["weight_distance", "feature_dissimilarity",
                                                         "output_rms_diff_hu"]].mean().reset_index()
    return {"conditions": result.table, "layers": layers, "pairs": result.pairs, "curve": curve,
            "correlations": result.corr, "chance_tests": result.tests, "n_pairs": result.config.n_pairs, "n_trials": len(result.experiment.trials),
            "test_psnr_mean": float(result.scores["psnr"].mean()),
            "input_psnr": float(result.scores["input_psnr"].iloc[0]),
            "ulp_growth_weights": _growth(result, "weight_distance"),
            "ulp_growth_features": _growth(result, "feature_dissimilarity"),
            "gpu_measured": "gpu_nondeterministic" in result.conditions}
