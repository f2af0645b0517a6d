"""The k-space chapter's tables: Table 1 beside the paper's, AUCs, baselines, the ablation and the masks."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from glassbox.data.mri import (
    FACTORS,
    LINE_FACTORS,
    vendor_separability,
)
from glassbox.models.kspace_sampler import (
    SAMPLE_COLUMN,
    centre_mask,
)
from glassbox.studies.kspace.config import (
    ABLATIONS,
    PAPER_TABLE1,
    PAPER_VENDOR_NAMES,
    PROTOCOLS,
    TRAIN_VENDORS,
    KSpaceConfig,
)
from glassbox.studies.kspace.study import Estimate, KSpaceResult, _estimate

# --------------------------------------------------------------------------------------------
# Tables


def _other(vendor: str) -> str:
    return "B" if vendor == "A" else "A"


def _fmt(e: Estimate) -> str:
    return f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]"


def _paper_rows(vendor: str, rate: float) -> dict[str, Any]:
    """The paper's rows nearest ``rate`` under both readings of its rate column."""
    t = PAPER_TABLE1[vendor]
    rates = np.asarray(t["rate"])
    i = int(np.argmin(np.abs(rates - rate)))
    under = np.flatnonzero(rates < 1.0)  # reading 2: the row "1" would sample nothing
    j = int(under[np.argmin(np.abs(1 - rates[under] - rate))])
    return {"paper rate (reading 1)": t["rate"][i], "paper own (1)": t["own"][i], "paper other (1)": t["other"][i],
            "paper 1-rate (reading 2)": round(1 - t["rate"][j], 3), "paper own (2)": t["own"][j],
            "paper other (2)": t["other"][j]}


def _learned_ks(cfg: KSpaceConfig) -> list[int]:
    return sorted({cfg.k(r) for r in cfg.rates}) + [cfg.size]


def table1(result: KSpaceResult) -> pd.DataFrame:
    """Lu's Table 1 layout: per training vendor and achieved rate, our own- and other-vendor AUC (learned
    mask, top-k protocol and sampled protocol; full sampling in the last row), with the paper's nearest
    row under both readings of its rate column."""
    cfg = result.config
    rows = []
    for vendor in TRAIN_VENDORS:
        for k in _learned_ks(cfg):
            row: dict[str, Any] = {"trained on": f"{vendor} ({PAPER_VENDOR_NAMES[vendor]}-like)", "lines": k,
                                   "rate": round(k / cfg.size, 3)}
            for relation, test in (("own", vendor), ("other", _other(vendor))):
                row[f"{relation} (top-k)"] = _fmt(result.auc(vendor, "learned", k, test))
                row[f"{relation} (sampled)"] = _fmt(result.auc(vendor, "learned", k, test, "sampled"))
            rows.append(row | _paper_rows(vendor, k / cfg.size))
    return pd.DataFrame(rows)


def auc_table(result: KSpaceResult) -> pd.DataFrame:
    """Every model cell on the A and B test sets: mean AUC over seeds, interval, per-seed values (long form)."""
    cfg = result.config
    rows = []
    cells = sorted({(m["spec"]["vendor"], m["spec"]["kind"], m["spec"]["k"]) for m in result.models})
    for vendor, kind, k in cells:
        for test in TRAIN_VENDORS:
            for protocol in (PROTOCOLS if kind == "learned" else ("topk",)):
                e = result.auc(vendor, kind, k, test, protocol)
                rows.append({"train": vendor, "kind": kind, "k": k, "rate": k / cfg.size, "test": test,
                             "relation": "own" if test == vendor else "other", "protocol": protocol,
                             "auc": e.value, "ci_low": e.low, "ci_high": e.high,
                             "seed_sd": float(np.std(e.per_seed, ddof=1)) if len(e.per_seed) > 1 else math.nan,
                             "per_seed": list(e.per_seed)})
    return pd.DataFrame(rows)


def baseline_table(result: KSpaceResult) -> pd.DataFrame:
    """At each baseline rate and training vendor: learned (both protocols), centre and random masks with the
    same k, own- and other-vendor AUC, and the learned (top-k) minus baseline differences on the other vendor."""
    cfg = result.config
    rows = []
    for vendor in TRAIN_VENDORS:
        for k in sorted({cfg.k(r) for r in cfg.baseline_rates}):
            other = _other(vendor)
            row: dict[str, Any] = {"trained on": vendor, "lines": k, "rate": round(k / cfg.size, 3)}
            for label, kind, protocol in (("learned (top-k)", "learned", "topk"), ("learned (sampled)", "learned", "sampled"),
                                          ("centre", "centre", "topk"), ("random", "random", "topk")):
                row[f"{label} own"] = _fmt(result.auc(vendor, kind, k, vendor, protocol))
                row[f"{label} other"] = _fmt(result.auc(vendor, kind, k, other, protocol))
            learned = result.auc(vendor, "learned", k, other)
            row["learned - centre (other)"] = _fmt(learned - result.auc(vendor, "centre", k, other))
            row["learned - random (other)"] = _fmt(learned - result.auc(vendor, "random", k, other))
            rows.append(row)
    return pd.DataFrame(rows)


def gap(result: KSpaceResult, kind: str, k: int, test: str) -> Estimate:
    """How much A's model loses on ``test`` against A's own test set: AUC(A) - AUC(test) (same patients for
    the ablation scans, so the gap is the factor's alone)."""
    return result.auc("A", kind, k, "A") - result.auc("A", kind, k, test)


CHANCE_FLOOR = 0.01
"""Smallest above-chance AUC :func:`relative_gap` divides by (a replicate at or below chance gives a huge share)."""


def relative_gap(result: KSpaceResult, kind: str, k: int, test: str) -> Estimate:
    """The share of its above-chance AUC on A that A's model loses on ``test``: ``gap / (AUC(A) - 0.5)``.

    Unlike :func:`gap` it does not shrink merely because a model is weaker (a model near chance has almost no
    AUC to lose); replicates whose AUC on A is within :data:`CHANCE_FLOOR` of chance divide by that floor."""
    own, other = result.auc("A", kind, k, "A"), result.auc("A", kind, k, test)
    value = (own.value - other.value) / max(own.value - 0.5, CHANCE_FLOOR)
    replicates = (own.replicates - other.replicates) / np.maximum(own.replicates - 0.5, CHANCE_FLOOR)
    return _estimate(value, replicates, result.config.alpha)


def ablation_table(result: KSpaceResult) -> pd.DataFrame:
    """Which of B's factors makes the cross-vendor gap of the model trained on A, and whether a line mask at
    the lowest rate shrinks it: per ablation scan, the gap at full sampling, with the learned and the centre
    mask, the change of the gap (mask minus full), the share of the above-chance AUC lost (:func:`relative_gap`)
    at full sampling and with the learned mask, whether the factor lives in phase-encode lines, and how well a
    linear vendor classifier tells the scan from A (:func:`shift_table`)."""
    cfg = result.config
    k, full = cfg.lowest_k, cfg.size
    shift = shift_table(result).set_index("test")["vendor_auc"]
    rows = []
    for name in [*ABLATIONS, "B"]:
        factors = ABLATIONS.get(name, tuple(FACTORS))
        g_full, g_learned, g_centre = gap(result, "full", full, name), gap(result, "learned", k, name), \
            gap(result, "centre", k, name)
        share_full, share_learned = relative_gap(result, "full", full, name), relative_gap(result, "learned", k, name)
        rows.append({"test": name, "factors": ", ".join(factors),
                     "in PE lines": ("all" if set(factors) <= set(LINE_FACTORS) else
                                     "none" if not set(factors) & set(LINE_FACTORS) else "some"),
                     "vendor AUC": shift[name], "gap, full": _fmt(g_full), f"gap, learned k={k}": _fmt(g_learned),
                     "change, learned": _fmt(g_learned - g_full), f"gap, centre k={k}": _fmt(g_centre),
                     "change, centre": _fmt(g_centre - g_full), "share lost, full": _fmt(share_full),
                     f"share lost, learned k={k}": _fmt(share_learned),
                     "change of share, learned": _fmt(share_learned - share_full), "gap_full": g_full.value,
                     "gap_full_low": g_full.low, "gap_full_high": g_full.high, "gap_learned": g_learned.value,
                     "gap_learned_low": g_learned.low, "gap_learned_high": g_learned.high})
    return pd.DataFrame(rows)


def shift_table(result: KSpaceResult) -> pd.DataFrame:
    """How well a linear vendor classifier (k-space line spectrum and intensity histogram) tells each test
    set from A's own (cross-validated AUC; 0.5 = indistinguishable). B's test set has other patients."""
    key = ("shift",)
    if key not in result._cache:
        a = result.data.test["A"].images
        rows = []
        for name in [*ABLATIONS, "B"]:
            other = result.data.test[name].images
            rows.append({"test": name, "vendor_auc": vendor_separability(a, other, features="both", seed=result.seed,
                                                                         folds=min(5, len(a)))})
        result._cache[key] = pd.DataFrame(rows)
    return result._cache[key]


def mask_table(result: KSpaceResult) -> pd.DataFrame:
    """Per learned model: lines kept, the fewest and most lines any draw of the mask phase kept, how many
    distinct masks it drew, whether the evaluation mask keeps the DC line, whether it came up before it was
    frozen, whether the final classifier was trained on it, how many of its lines it shares with the
    centre mask of the same k, and the spread (standard deviation over lines) of its learned log-odds, to set
    beside the standard deviation of the Gumbel noise of every draw, :data:`GUMBEL_SD`."""
    cfg = result.config
    rows = []
    for m in result.models:
        spec = m["spec"]
        if spec["kind"] != "learned":
            continue
        units = np.asarray(m["eval_units"])
        centre = centre_mask(cfg.size, spec["k"] / cfg.size).numpy()
        rows.append({"train": spec["vendor"], "seed": spec["repeat"], "lines": spec["k"], "rate": spec["k"] / cfg.size,
                     "eval lines": int(units.sum()), "draw min": m["draw_count_range"][0],
                     "draw max": m["draw_count_range"][1], "distinct training masks": m["n_train_masks"],
                     "keeps DC": bool(units[cfg.size // 2] > 0.5), "drawn before freeze": bool(m["seen_before_freeze"]),
                     "used in training": bool(m["seen_in_training"]),
                     "shared with centre": int((units * centre).sum()), "log-odds sd": log_odds_sd(m)})
    return pd.DataFrame(rows)


GUMBEL_SD = math.pi / math.sqrt(6)
"""Standard deviation of the standard Gumbel noise added to the log-odds in every training draw."""


def log_odds_sd(entry: Mapping[str, Any]) -> float:
    """Standard deviation over lines of a learned model's log-odds ``logits[:, 0] - logits[:, 1]``: how far the
    mask phase moved the lines apart (all equal at initialisation)."""
    logits = entry["state_dict"]["sampler.logits"]
    return float((logits[:, SAMPLE_COLUMN] - logits[:, 1 - SAMPLE_COLUMN]).std())


def paper_table() -> pd.DataFrame:
    """Lu's Table 1 as printed, with the second reading of the rate column (1 - rate) beside it."""
    rows = []
    for vendor, t in PAPER_TABLE1.items():
        for rate, own, other in zip(t["rate"], t["own"], t["other"]):
            rows.append({"trained on": PAPER_VENDOR_NAMES[vendor], "rate (reading 1)": rate,
                         "1 - rate (reading 2)": round(1 - rate, 3) if rate < 1 else None, "own": own, "other": other})
    return pd.DataFrame(rows)
