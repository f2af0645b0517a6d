"""The k-space chapter's checks, claims, deviations from the paper and headline numbers."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from glassbox.data.mri import (
    FACTORS,
    IMAGE_FACTORS,
    LINE_FACTORS,
    VENDOR_B_CALIBRATED,
    Vendor,
)
from glassbox.measure.claims import (
    Check,
    Claim,
    Deviation,
    apply_checks,
    equivalence_rule,
    interval_rule,
    not_testable,
    quality_check,
    require,
)
from glassbox.models.alexnet import SmallAlexNet
from glassbox.studies.kspace.config import (
    ABLATIONS,
    CHAPTER,
    PAPER_ROBUST_RATE,
    PAPER_TABLE1,
    PAPER_VENDOR_NAMES,
    PROTOCOLS,
    TRAIN_VENDORS,
    KSpaceConfig,
)
from glassbox.studies.kspace.study import Estimate, KSpaceResult
from glassbox.studies.kspace.tables import (
    _other,
    ablation_table,
    auc_table,
    baseline_table,
    gap,
    mask_table,
    relative_gap,
    table1,
)

# --------------------------------------------------------------------------------------------
# Checks and claims


def _learned_entries(result: KSpaceResult) -> list[dict[str, Any]]:
    return [m for m in result.models if m["spec"]["kind"] == "learned"]


def checks(result: KSpaceResult) -> list[Check]:
    """Invariants (raise when broken) and quality checks (shown; claims that depend on a failed one become
    inconclusive). Quality thresholds and their measured margins: see ``margin_note``."""
    cfg = result.config
    learned = _learned_entries(result)
    out = [
        require("exact_k", "every training draw of every learned mask kept exactly k lines",
                all(m["draw_count_range"] == [m["spec"]["k"]] * 2 for m in learned)),
        require("eval_mask_trained", "every learned model's evaluation (top-k) mask is the mask its classifier "
                "was trained on (and the only one)", all(m["seen_in_training"] and m["final_count_range"] ==
                                                         [m["spec"]["k"]] * 2 for m in learned)),
        require("eval_k", "every evaluation mask keeps exactly k lines",
                all(int(np.asarray(m["eval_units"]).sum()) == m["spec"]["k"] for m in result.models)),
        require("finite_scores", "every score is finite",
                all(np.isfinite(s).all() for m in result.models for s in [*m["scores"].values(),
                                                                           *m["sampled_scores"].values()])),
        require("same_patients", "every ablation scan holds A's test patients (same labels and tumours)",
                all(np.array_equal(result.data.test[n].labels, result.data.test["A"].labels)
                    and np.array_equal(result.data.test[n].tumour_masks, result.data.test["A"].tumour_masks)
                    for n in ABLATIONS)),
        require("seeds", f"{cfg.n_seeds} training seeds in every cell",
                all(len(result.entries(v, kind, k)) == cfg.n_seeds for v, kind, k in
                    {(m["spec"]["vendor"], m["spec"]["kind"], m["spec"]["k"]) for m in result.models})),
    ]
    for vendor in TRAIN_VENDORS:
        full = result.auc(vendor, "full", cfg.size, vendor)
        out.append(quality_check(f"learns_{vendor}", f"the fully sampled classifier trained on {vendor} beats chance "
                                 f"clearly on {vendor} (mean AUC over seeds)", full.value, above=0.75,
                                 margin_note=MARGIN_NOTES.get(f"learns_{vendor}", "")))
        shift = result.auc(vendor, "full", cfg.size, vendor) - result.auc(vendor, "full", cfg.size, _other(vendor))
        out.append(quality_check(f"shift_{vendor}", f"there is a cross-vendor gap to close: lower bound of "
                                 f"S_{vendor}{vendor}(1) - S_{_other(vendor)}{vendor}(1)", shift.low, above=0.0,
                                 margin_note=MARGIN_NOTES.get(f"shift_{vendor}", "")))
    masked = result.auc("A", "learned", cfg.lowest_k, "A")
    out.append(quality_check("learns_masked_A", f"the learned-mask classifier trained on A (k = {cfg.lowest_k}) beats "
                             "chance on A (lower bound of its AUC), so that the share of AUC it loses is defined",
                             masked.low, above=0.5, margin_note=MARGIN_NOTES.get("learns_masked_A", "")))
    for group in ("line", "image"):
        g = gap(result, "full", cfg.size, f"A+{group}")
        out.append(quality_check(f"gap_{group}", f"B's {group} factors alone open a gap for the model trained on A "
                                 "(lower bound of the gap at full sampling)", g.low, above=0.0,
                                 margin_note=MARGIN_NOTES.get(f"gap_{group}", "")))
    return out


_MEASURED = "quick, chapter seed 0, 3 training seeds, vendor_b 'first', 1 thread"
MARGIN_NOTES: dict[str, str] = {
    "learns_A": f"{_MEASURED}: mean 0.856, per-seed AUCs 0.852-0.862; margin >= 0.10",
    "learns_B": f"{_MEASURED}: mean 0.896, per-seed AUCs 0.859-0.957; margin >= 0.10",
    "shift_A": f"{_MEASURED}: lower bound 0.025, per-seed gaps 0.079-0.165; a thin margin",
    "shift_B": f"{_MEASURED}: lower bound 0.0051, per-seed gaps 0.064-0.107; a thin margin",
    "learns_masked_A": f"{_MEASURED}: lower bound 0.423, per-seed AUCs 0.440-0.642; fails there",
    "gap_line": f"{_MEASURED}: lower bound 0.0088, per-seed gaps 0.029-0.041; a thin margin",
    "gap_image": f"{_MEASURED}: lower bound 0.0091, per-seed gaps 0.034-0.160; a thin margin",
}
"""Measured margins of the quality checks (threshold: see :func:`checks`), shown beside each check."""


CALIBRATION_NOTE = ("Uses vendor B's calibrated contrast or coil profile (vendor_b = 'calibrated'), picked after the "
                    "chapter's first verdicts had been seen; the default, vendor_b = 'first', uses the values chosen "
                    "before.")
"""Appended, on ``vendor_b = "calibrated"``, to the note of every claim whose numbers use B's contrast or coil (B's
images, the A+contrast, A+coil, A+image and A+all scans)."""

SECTIONS: dict[str, str] = {"vendors": "kspace-vendors", "table1": "kspace-table1", "baselines": "kspace-baselines",
                            "ablation": "kspace-ablation"}
"""Claim topic -> the MyST label of the chapter section that tests it (``(label)=`` in ``book/kspace.ipynb``)."""

REFERENCE = "lu2023ksampling"
"""Lu's paper in ``book/references.bib``."""


def _uses_calibrated_b(cfg: KSpaceConfig, tests: Sequence[str], vendors: Sequence[str]) -> bool:
    """Whether numbers from models trained on ``vendors`` and scored on ``tests`` depend on B's changed factors."""
    changed = {"contrast", "coil"} if cfg.vendor_b == "calibrated" else set()
    scans = {"B": set(FACTORS)} | {name: set(f) for name, f in ABLATIONS.items()} | {"A": set()}
    return bool(changed) and ("B" in vendors or any(scans[t] & changed for t in tests))


def _claim(cfg: KSpaceConfig, id: str, source: str, statement: str, test: str, estimate: Estimate,
           rule: tuple[str, str], paper: float | str | None, depends_on: Sequence[str], *, section: str,
           data: tuple[Sequence[str], Sequence[str]], reference: str = REFERENCE, note: str = "",
           unit: str = "AUC") -> Claim:
    """A claim on ``estimate``; ``data`` = (test sets, training vendors) its numbers come from."""
    verdict, rule_text = rule
    if _uses_calibrated_b(cfg, *data):
        note = f"{note} {CALIBRATION_NOTE}".strip()
    return Claim(id=id, chapter=CHAPTER, source=source, statement=statement, test=test, verdict=verdict,
                 rule=rule_text, ours=estimate.value, interval=(estimate.low, estimate.high),
                 interval_kind="95% bootstrap over training seeds and test patients", paper=paper, unit=unit,
                 section=SECTIONS[section], note=note, depends_on=tuple(depends_on), reference=reference)


def claims(result: KSpaceResult, run_checks: Sequence[Check] | None = None) -> list[Claim]:
    """Lu's claims and the chapter's own (evaluation protocols, ablation), with verdicts from rules whose
    thresholds are the config's ``margin`` (near = within it) and zero; ``run_checks`` (default :func:`checks`)
    turn claims that depend on a failed quality check inconclusive."""
    cfg = result.config
    full, low, mid, m = cfg.size, cfg.lowest_k, cfg.claim_k, cfg.margin
    rate = lambda k: f"{k / full:.3f}"  # noqa: E731
    out: list[Claim] = []
    protocol_text = {"topk": "learned mask, top-k protocol (a classifier trained on the frozen mask)",
                     "sampled": "learned mask, sampled protocol (the end-to-end network, AUC averaged over drawn masks)"}
    for vendor in TRAIN_VENDORS:
        other, paper = _other(vendor), PAPER_TABLE1[vendor]
        name = PAPER_VENDOR_NAMES[vendor]
        i_rob = paper["rate"].index(PAPER_ROBUST_RATE[vendor])
        for protocol in PROTOCOLS:
            d = result.auc(vendor, "learned", mid, vendor, protocol) - result.auc(vendor, "full", full, vendor)
            out.append(_claim(
                cfg, f"robustness_{vendor}_{protocol}", "Lu, Results (first paragraph) and Conclusion",
                f"A sampling rate near {PAPER_ROBUST_RATE[vendor]} keeps near-baseline (fully sampled) AUC on the "
                f"training vendor ({name}): 'By employing a K-Sampling rate of approximately 0.2, we were able to "
                "achieve near-baseline accuracy for robustness'",
                f"S_{vendor}{vendor}(rate {rate(mid)}) - S_{vendor}{vendor}(1), {protocol_text[protocol]}", d,
                interval_rule((d.low, d.high), above=-m, what="the difference"),
                round(paper["own"][i_rob] - paper["own"][-1], 3), [f"learns_{vendor}"], section="table1",
                data=([vendor], [vendor]), note=f"'Near' means within {m} AUC (our reading)."))
        for protocol in PROTOCOLS:
            d = result.auc(vendor, "learned", low, other, protocol) - result.auc(vendor, "full", full, other)
            out.append(_claim(
                cfg, f"generalizability_{vendor}_{protocol}", "Lu, Results (first paragraph)",
                f"'Models with lower sampling rates exhibit higher AUC' on the other vendor, greater than 'in the "
                f"fully sampled cases' (trained on {name})",
                f"S_{other}{vendor}(rate {rate(low)}) - S_{other}{vendor}(1), {protocol_text[protocol]}", d,
                interval_rule((d.low, d.high), above=0.0, what="the difference"),
                round(paper["other"][0] - paper["other"][-1], 3), [f"learns_{vendor}", f"shift_{vendor}"],
                section="table1", data=([other], [vendor]),
                note=(f"The paper's own Table 1 gives {paper['other'][0]} at rate {paper['rate'][0]} "
                      f"and {paper['other'][-1]} at full sampling"
                      + (", so for this vendor the paper's own numbers go against the statement."
                         if paper["other"][0] < paper["other"][-1] else "."))))
    for vendor in TRAIN_VENDORS:
        other = _other(vendor)
        learned = result.auc(vendor, "learned", low, other)
        for base in ("random", "centre"):
            d = learned - result.auc(vendor, base, low, other)
            out.append(_claim(
                cfg, f"learned_vs_{base}_{vendor}",
                "Lu, Conclusion ('an optimized K-Sampling layer through automatic differentiation')",
                f"The optimised (learned) sampling layer generalises better than an unlearned {base} mask with as "
                f"many lines (trained on {PAPER_VENDOR_NAMES[vendor]})",
                f"S_{other}{vendor}, learned (top-k) minus {base}, k = {low} lines", d,
                interval_rule((d.low, d.high), above=0.0, what="the difference"), None,
                [f"learns_{vendor}", f"shift_{vendor}"], section="baselines", data=([other], [vendor]),
                note="Lu compares no fixed mask; this tests the premise that the optimisation is what helps."))
    d = result.auc("A", "learned", low, "A") - result.auc("A", "learned", low, "A", "sampled")
    out.append(_claim(
        cfg, "protocols_agree", "this chapter (evaluation protocol)",
        "The two evaluation protocols give the same AUC: a classifier trained on the frozen top-k mask, and the "
        "end-to-end network of the mask phase averaged over sampled masks",
        f"S_AA at k = {low}: top-k protocol minus sampled protocol", d,
        equivalence_rule((d.low, d.high), m, what="the difference"), None, ["learns_A"], section="table1",
        data=(["A"], ["A"]), reference=""))
    share_margin = m / 0.5
    for group, factors in (("line", LINE_FACTORS), ("image", IMAGE_FACTORS)):
        scan = f"A+{group}"
        d = relative_gap(result, "learned", low, scan) - relative_gap(result, "full", full, scan)
        if group == "line":
            statement = (f"A learned line mask shrinks the share of AUC that B's phase-encode-line factors "
                         f"({', '.join(factors)}) cost the model trained on A")
            rule = interval_rule((d.low, d.high), below=0.0, what="the change of the share")
        else:
            statement = (f"A learned line mask leaves the share of AUC lost to B's image-domain and readout factors "
                         f"({', '.join(factors)}) unchanged")
            rule = equivalence_rule((d.low, d.high), share_margin, what="the change of the share")
        out.append(_claim(
            cfg, f"ablation_{group}", "this chapter (simulation control)", statement,
            f"share lost on the {scan} scan of A's test patients, (AUC(A) - AUC(scan)) / (AUC(A) - 0.5): "
            f"learned mask at k = {low} minus full sampling", d, rule,
            None, ["learns_A", "learns_masked_A", f"gap_{group}"], section="ablation", data=(["A", scan], ["A"]),
            reference="", unit="share of above-chance AUC",
            note=("A share, not the AUC gap itself: a model with less AUC has less to lose, so its gap can shrink "
                  "for that reason alone." + (f" The margin {share_margin:g} is the AUC margin {m} relative to "
                                               "the largest above-chance AUC, 0.5." if group == "image" else ""))))
    out.append(not_testable(
        "scanner_shift", CHAPTER, "Lu, Conclusion",
        "'The performance of deep learning models can be impacted by variations in scanners and image quality levels'",
        "Our vendors differ by construction in seven factors, so a verdict that the difference can cost a model AUC "
        "would rest on the simulator's design, not on scanners. The fully sampled cross-vendor drop is a quality "
        "check (shift_A, shift_B) that the other claims depend on.", reference=REFERENCE, section=SECTIONS["vendors"]))
    out.append(not_testable(
        "table1_values", CHAPTER, "Lu, Table 1", "The AUC values of Table 1 (e.g. 0.878 on GE at rate 0.242)",
        "Our vendors are simulated; absolute AUCs depend on the simulator and the network, not on Duke's scanners. "
        "The table shows the paper's values beside ours for orientation only.", paper="Table 1",
        reference=REFERENCE, section=SECTIONS["table1"]))
    return apply_checks(out, checks(result) if run_checks is None else run_checks)


def _vendor_text(vendor: Vendor) -> str:
    c = vendor.contrast
    return (f"fgt {c.fgt:g}, fat {c.fat:g}, gamma {c.gamma:g}, coil {vendor.coil:g}, bias {vendor.bias:g}, "
            f"noise {vendor.noise_sigma:g}, readout {vendor.readout_keep:g}, phase {vendor.phase_keep:g}, "
            f"ghosts {vendor.ghost_strength[0]:g}-{vendor.ghost_strength[1]:g}")


def deviations(config: KSpaceConfig) -> list[Deviation]:
    """How a run on ``config`` departs from Lu's protocol (data, vendors, sampling layer, network, rates,
    training, seeds and intervals, evaluation), each with the reason."""
    cfg = config
    rates = ", ".join(f"{cfg.k(r) / cfg.size:.3f}" for r in sorted(cfg.rates))
    base = ", ".join(f"{cfg.k(r) / cfg.size:.3f}" for r in sorted(cfg.baseline_rates))
    params = sum(p.numel() for p in SmallAlexNet(width=cfg.width, dropout=cfg.dropout).parameters())
    b, calibrated = cfg.vendors["B"], VENDOR_B_CALIBRATED
    steps = cfg.mask_epochs * -(-cfg.n_train * cfg.slices_per_patient // cfg.batch_size)

    def d(aspect: str, paper: str, ours: str, reason: str) -> Deviation:
        return Deviation(f"kspace.{aspect.split()[0].lower()}", CHAPTER, REFERENCE, aspect, paper, ours, reason)

    return [
        d("data", "Duke-Breast-Cancer-MRI (922 patients, 1.5 T and 3 T scanners), GE and Siemens slices labelled "
                  "tumour present / absent; cohort sizes and splits not stated",
          f"simulated breast-like slices of {cfg.size} x {cfg.size}: {cfg.n_train} training and {cfg.n_test} test "
          f"patients per vendor (different patients), {cfg.slices_per_patient} slices each, half through the tumour",
          "the Duke data cannot be downloaded at build time; a simulator lets each vendor factor be switched alone"),
        d("vendors", "real GE and Siemens scanners; what differs between them is not measured",
          f"two simulated vendors in seven factors. A: {_vendor_text(cfg.vendors['A'])}. B ({cfg.vendor_b}): "
          f"{_vendor_text(b)}. "
          + (f"These are B's values chosen before the chapter's first verdicts; the option vendor_b = 'calibrated' (contrast "
             f"fgt {calibrated.contrast.fgt:g}, fat {calibrated.contrast.fat:g}, gamma {calibrated.contrast.gamma:g}, "
             f"coil {calibrated.coil:g}) was picked after the chapter's first verdicts had been seen and is not used"
             if cfg.vendor_b == "first" else
             "These contrast and coil values (vendor_b = 'calibrated') were picked after the chapter's first verdicts "
             "had been seen, by looking at fully sampled classifiers, to bring the cross-vendor drop to the paper's "
             "order (0.23 and 0.12); the default, vendor_b = 'first', uses the values chosen before"),
          "where a vendor difference sits in k-space decides whether a line mask can act on it, so each factor is a "
          "switch; values chosen after verdicts were seen are not the default, and claims that use them say so"),
        d("sampling layer", "a hard Gumbel-softmax per 'K-space vector' (logit [log(r/(1-r)), 0], 'second column'), "
                            "so the number of sampled vectors varies per draw and the rate is not held fixed",
          f"phase-encode lines; Gumbel top-k keeps exactly k of {cfg.size} lines in every draw (relaxed top-k "
          f"gradient, temperature {cfg.temperature:g}), achieved rate k / {cfg.size}",
          "a rate that drifts or varies per draw makes table rows incomparable; the paper's 'second column' samples "
          "with probability 1 - r, so its rate column has two readings (both shown)"),
        d("evaluation mask", "not stated (the mask at test time, and whether the classifier saw it, is not described)",
          f"top-k protocol: the mask frozen at its top-k lines and a fresh classifier trained on it for {cfg.epochs} "
          f"epochs; sampled protocol: the end-to-end network scored over {cfg.eval_draws} drawn masks per image",
          "a classifier scored on a mask it never saw is biased against the learned mask"),
        d("network", "AlexNet with a softmax output",
          f"SmallAlexNet at width {cfg.width:g} ({params:,} parameters), BatchNorm in place of local response "
          "normalisation, one logit and binary cross-entropy",
          "the budget of a CPU; torchvision's AlexNet has 57M parameters and trains at about 30 images/s there"),
        d("rates", "ten rates per vendor (Table 1: 0.148 to 1 for GE, 0.113 to 1 for Siemens)",
          f"learned masks at {rates} and 1 (full sampling); centre and random masks with the same k at {base}",
          "the profile's budget; the claims use the lowest rate and the one nearest the paper's 0.242 / 0.222"),
        d("training", "epochs, optimiser, batch size and learning rates not stated",
          f"Adam, {cfg.mask_epochs} epochs of mask phase ({steps} steps, logits at learning rate {cfg.logit_lr:g}) "
          f"then {cfg.epochs} epochs of classifier, learning rate {cfg.lr:g}, batch {cfg.batch_size}",
          "the profile's budget; every model of a cell trains as long as the others"),
        d("seeds and intervals", "one model per cell; no interval, seed or test-set size reported",
          f"{cfg.n_seeds} training seeds per cell; 95% percentile bootstrap over training seeds and test patients "
          f"({cfg.n_boot} resamples), paired for differences",
          "differences of the paper's size (0.03 AUC) are within a typical interval; a single run cannot show it"),
        d("baselines", "none: no fixed mask with as many lines is compared",
          f"a centre (low-pass) and a random (fastMRI layout) mask with exactly k lines, at {base}",
          "without them a gain from a learned mask cannot be told from a gain from fewer lines"),
    ]


def deviation_table(config: KSpaceConfig) -> pd.DataFrame:
    """:func:`deviations` as a table (aspect, paper, ours, reason)."""
    return pd.DataFrame([dv.as_dict() for dv in deviations(config)]).set_index("aspect")[["paper", "ours", "reason"]]


def numbers(result: KSpaceResult) -> dict[str, Any]:
    """Headline numbers for ``results/kspace.json``."""
    return {"auc": auc_table(result), "table1": table1(result),
            "baselines": baseline_table(result), "ablation": ablation_table(result), "masks": mask_table(result),
            "n_test_slices": {name: len(d) for name, d in result.data.test.items() if name in TRAIN_VENDORS},
            "n_models": len(result.models)}
