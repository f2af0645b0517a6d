"""The feature-space chapter's checks, claims, deviations from Qu et al., glued values and headline numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from glassbox.measure import chance as chance_mod
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
from glassbox.studies.feature_space.config import ALPHA, CHAPTER, PAPER_N
from glassbox.studies.feature_space.layer_similarity import _pair_keys, paper_k_table, tidy
from glassbox.studies.feature_space.significance import (
    _paper_values,
    by_model,
    signflip_test,
    updown_joint_test,
    updown_test,
)
from glassbox.studies.feature_space.study import FeatureResult
from glassbox.studies.feature_space.tables import cluster_summary, table2, table3
from glassbox.training import unet_grid
from glassbox.training.loop import CONTROL_SEEDING
from glassbox.training.unet_grid import (
    PAPER_TABLE2_SVCCA,
    PAPER_TABLE3_COSINE,
    QuConfig,
    model_label,
)


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
