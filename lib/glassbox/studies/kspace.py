"""Lu's experiment (seed 003): train m_A and m_B at ten k-sampling rates and score S_{i,j}.

``S_{i,j}`` is the AUC of the model trained on vendor ``j`` on the test set of vendor ``i``:
``S_{A,A}``, ``S_{B,B}`` are the paper's *robustness*, ``S_{B,A}``, ``S_{A,B}`` its
*generalizability*. For every training vendor and nominal rate we train a
:class:`KSpaceClassifier` (learnable :class:`~glassbox.models.kspace_sampler.KSpaceSampler` + :class:`~glassbox.
alexnet.SmallAlexNet`) with :func:`glassbox.training.loop.fit`, and at equal rates the two fixed baselines
(``"centre"`` low-pass and ``"random"`` fastMRI-style masks). Every trained model is scored on the
test sets of both vendors and of the **control** vendor ``B_contrast`` (B's image-domain contrast
with A's k-space physics, a shift no mask can remove; see :mod:`glassbox.data.mri`).

Design choices the paper leaves open (stated in the chapter):

- mask column 0 (probability ``rate``), not the paper's second column (probability ``1 - rate``);
- one logit per phase-encode line; no constraint on the rate, so it drifts, and the achieved
  rates (expected and evaluation-mask) are reported beside the nominal ones; optional penalty;
- evaluation with the deterministic top-k mask; AUC "at the end of training" (no early stopping);
- logits get their own Adam learning rate (``logit_lr``), otherwise they barely move in a short run;
- seeds: everything of one model flows from ``numpy.random.SeedSequence`` of ``(seed, vendor,
  rate, kind, repeat)``; dropout draws from the global generator, so training runs inside
  ``torch.random.fork_rng`` seeded from that sequence.

Heavy results go through :func:`glassbox.core.store.get_or_compute` (data sets and each trained model,
with its test scores), so re-running the chapter only re-draws tables and figures.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn
from torch.utils.data import TensorDataset

from glassbox.core import checks
from glassbox.data.mri import AnatomyConfig, MRIDataset, patient_split, simulate_vendor
from glassbox.measure.roc import ROCInputError, delong_ci, delong_paired_test
from glassbox.models.alexnet import SmallAlexNet
from glassbox.models.kspace_sampler import (
    FixedMaskSampler,
    KSpaceSampler,
    centre_mask,
    check_rate,
    random_mask,
)

SIMULATED_ONLY = ("it simulates two MRI vendors from breast-like anatomy (the Duke data set is not available here)")
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""

__all__ = [
    "PAPER_TABLE1", "PAPER_VENDOR_NAMES", "KSpaceConfig", "PROFILES", "KINDS", "KSpaceClassifier",
    "ExperimentData", "simulate_experiment_data", "build_model", "train_model", "model_seeds",
    "load_experiment_data", "run_experiment", "shift_table", "auc_frame", "table1", "format_table1", "baseline_table", "verdicts", "paper_frame",
    "rate_frame", "load_model", "sampled_images",
    "plot_vendors", "plot_robustness", "plot_generalizability", "plot_control", "plot_rate_drift", "plot_masks",
    "plot_sampled_images",
]

Kind = Literal["learned", "centre", "random"]
KINDS: tuple[str, ...] = ("learned", "centre", "random")
TRAIN_VENDORS: tuple[str, str] = ("A", "B")
CONTROL_VENDOR = "B_contrast"

# --------------------------------------------------------------------------------------------
# The paper's numbers (Lu, Table 1: "AUC for different Sampling Rates at the End of Training").
# GE = our vendor A, Siemens = our vendor B. The rates are the paper's (we read them as achieved
# rates of runs started at 0.1 ... 0.9 and 1; the paper does not say). Row i pairs with our i-th
# nominal rate.

PAPER_VENDOR_NAMES: dict[str, str] = {"A": "GE", "B": "Siemens"}
PAPER_TABLE1: dict[str, dict[str, tuple[float, ...]]] = {
    "A": {  # trained on GE
        "rate": (0.148, 0.242, 0.355, 0.496, 0.601, 0.664, 0.710, 0.804, 0.886, 1.0),
        "own": (0.837, 0.878, 0.884, 0.882, 0.889, 0.898, 0.897, 0.902, 0.887, 0.890),    # test on GE
        "other": (0.689, 0.625, 0.621, 0.605, 0.605, 0.635, 0.594, 0.630, 0.609, 0.659),  # test on Siemens
    },
    "B": {  # trained on Siemens
        "rate": (0.113, 0.222, 0.308, 0.464, 0.578, 0.674, 0.750, 0.781, 0.882, 1.0),
        "own": (0.822, 0.868, 0.859, 0.862, 0.879, 0.873, 0.855, 0.881, 0.854, 0.873),    # test on Siemens
        "other": (0.726, 0.714, 0.703, 0.731, 0.734, 0.748, 0.743, 0.743, 0.756, 0.750),  # test on GE
    },
}

TEN_RATES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class KSpaceConfig:
    """Knobs of the chapter (data, layer, training, baselines). Defaults are the ``quick`` profile."""

    # data
    size: int = 64
    n_patients: int = 200                 # per vendor
    slices_per_patient: int = 4           # half through the tumour, half away from it
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)   # train / val / test, by patient
    # k-sampling layer
    rates: tuple[float, ...] = TEN_RATES  # nominal rates
    unit: str = "line"
    temperature: float = 1.0
    n_center: int = 0
    rate_penalty: float = 0.0             # weight of (expected - nominal)^2; 0 = the paper's free drift
    # classifier and training
    width: float = 0.5
    dropout: float = 0.5
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    logit_lr: float = 0.05
    n_repeats: int = 1                    # training seeds per (vendor, rate, kind)
    # baselines at equal rate
    baseline_rates: tuple[float, ...] = (0.2, 0.5)
    # evaluation
    alpha: float = 0.05
    margin: float = 0.05                  # "near-full AUC": within this of the fully sampled AUC

    def __post_init__(self) -> None:
        if not self.rates or len(set(self.rates)) != len(self.rates):
            raise ValueError(f"rates must be distinct and non-empty, got {self.rates!r}")
        for r in (*self.rates, *self.baseline_rates):
            check_rate(r, "rates/baseline_rates entry")
        if 1.0 not in self.rates:
            raise ValueError("rates must include 1.0 (the fully sampled reference of both claims)")
        if self.unit not in ("line", "point"):
            raise ValueError(f"unit must be 'line' or 'point', got {self.unit!r}")
        for name in ("n_patients", "epochs", "batch_size", "n_repeats", "size"):
            checks.integer(getattr(self, name), name)
        if len(self.split) != 3 or not math.isclose(sum(self.split), 1.0) or min(self.split) <= 0:
            raise ValueError(f"split must be three positive fractions summing to 1, got {self.split!r}")
        for name in ("lr", "logit_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.margin < 0.5 or not 0 < self.alpha < 1:
            raise ValueError(f"margin must be in [0, 0.5) and alpha in (0, 1), got {self.margin!r}, {self.alpha!r}")

    @property
    def anatomy(self) -> AnatomyConfig:
        return AnatomyConfig(size=self.size, slices_per_patient=self.slices_per_patient)

    @property
    def reference_rate(self) -> float:
        """The rate of the robustness claim: the one nearest 0.2 (the paper's 0.24 / 0.22 runs)."""
        return min(self.rates, key=lambda r: (abs(r - 0.2), r))


PROFILES: dict[str, KSpaceConfig] = {
    # seconds: 32x32 images, two rates, tiny data, one epoch; checks the plumbing, not the claims
    "smoke": KSpaceConfig(size=32, n_patients=10, rates=(0.2, 1.0), epochs=1, batch_size=16, width=0.25,
                          baseline_rates=(0.2,)),
    # minutes on 2 CPU cores: ten rates, 200 patients per vendor, 8 epochs, baselines at 0.2 and 0.5
    "quick": KSpaceConfig(),
    # the paper's design at a size a GPU handles in well under an hour: ten rates, baselines at
    # every rate, three training seeds, more patients and epochs
    "paper": KSpaceConfig(n_patients=800, epochs=30, width=1.0, lr=5e-4, logit_lr=0.01, n_repeats=3,
                          baseline_rates=TEN_RATES[:-1]),
}


# --------------------------------------------------------------------------------------------
# Model


class KSpaceClassifier(nn.Module):
    """k-sampling (learned or fixed) -> SmallAlexNet; returns one logit per image."""

    def __init__(self, sampler: nn.Module, net: SmallAlexNet):
        super().__init__()
        self.sampler = sampler
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.sampler(x))


def model_seeds(seed: int, vendor: str, rate: float, kind: str, repeat: int) -> dict[str, int]:
    """Independent seeds of one model (init, data order, Gumbel noise, dropout, random mask)."""
    entropy = [int(seed), TRAIN_VENDORS.index(vendor) if vendor in TRAIN_VENDORS else 7,
               int(round(rate * 1000)), KINDS.index(kind), int(repeat)]
    words = np.random.SeedSequence(entropy).generate_state(5, dtype=np.uint32)
    return dict(zip(("init", "data", "gumbel", "dropout", "mask"), (int(w) for w in words)))


def build_model(cfg: KSpaceConfig, kind: str, rate: float, seeds: Mapping[str, int]) -> KSpaceClassifier:
    """An untrained classifier; weights drawn from ``seeds['init']`` without touching global RNG state."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    rate = check_rate(rate)
    shape = (cfg.size, cfg.size)
    if kind == "learned":
        sampler: nn.Module = KSpaceSampler(shape, rate, unit=cfg.unit, temperature=cfg.temperature,
                                           n_center=cfg.n_center, seed=seeds["gumbel"])
    elif kind == "centre":
        sampler = FixedMaskSampler(shape, centre_mask(cfg.size, rate), name="centre", nominal_rate=rate)
    else:
        sampler = FixedMaskSampler(shape, random_mask(cfg.size, rate, seed=seeds["mask"]), name="random",
                                   nominal_rate=rate)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["init"])
        net = SmallAlexNet(width=cfg.width, dropout=cfg.dropout)
    return KSpaceClassifier(sampler, net)


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class ExperimentData:
    """Train/val/test splits of vendors A and B, and the test split of the control vendor."""

    splits: dict[str, dict[str, MRIDataset]]   # vendor -> split name -> data

    def test_sets(self) -> dict[str, MRIDataset]:
        return {vendor: parts["test"] for vendor, parts in self.splits.items()}


def _vendor_seed(seed: int, vendor: str) -> int:
    # B and its contrast-only control share patients; A has its own
    index = 0 if vendor == "A" else 1
    return int(np.random.SeedSequence([int(seed), 100 + index]).generate_state(1)[0])


def simulate_experiment_data(cfg: KSpaceConfig, seed: int) -> ExperimentData:
    """Simulate A, B and B_contrast (same patients as B) and split each by patient (same split for B's)."""
    splits = {}
    for vendor in (*TRAIN_VENDORS, CONTROL_VENDOR):
        data = simulate_vendor(cfg.n_patients, vendor, _vendor_seed(seed, vendor), cfg.anatomy)
        parts = patient_split(data.patients, cfg.split, ("train", "val", "test"), seed=_vendor_seed(seed, vendor))
        splits[vendor] = {name: data.subset(idx) for name, idx in parts.items()}
    splits[CONTROL_VENDOR] = {"test": splits[CONTROL_VENDOR]["test"]}
    return ExperimentData(splits)


# --------------------------------------------------------------------------------------------
# Training and scoring


def _bce_loss(rate_weight: float):
    def loss_fn(model: KSpaceClassifier, batch: Any) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
        if rate_weight > 0 and isinstance(model.sampler, KSpaceSampler):
            loss = loss + rate_weight * model.sampler.rate_penalty()
        return loss

    loss_fn.__qualname__ = f"bce_plus_rate_penalty({rate_weight})"
    return loss_fn


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, device: torch.device | str = "cpu",
            batch_size: int = 256) -> np.ndarray:
    """Logits of ``model`` (in eval mode: deterministic mask, no dropout) for (N, H, W) images."""
    model.eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size, None], dtype=np.float32))
        out.append(model(x.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def _safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    try:
        return delong_ci(labels, scores).auc
    except ROCInputError:
        return float("nan")


def _sampler_record(sampler: nn.Module) -> dict[str, Any]:
    record: dict[str, Any] = {"rates": sampler.rates(), "eval_mask": sampler.mask().detach().cpu().numpy()}
    if isinstance(sampler, KSpaceSampler):
        record["probabilities"] = sampler.probabilities().detach().cpu().numpy()
    else:
        record["probabilities"] = sampler.mask().detach().cpu().numpy().reshape(-1)
    return record


def train_model(cfg: KSpaceConfig, data: ExperimentData, vendor: str, rate: float, kind: str = "learned",
                repeat: int = 0, seed: int = 0, device: torch.device | str = "cpu",
                progress: bool = False) -> dict[str, Any]:
    """Train one model on ``vendor``'s training split and score it on every test set.

    Returns plain data (for the store): ``state_dict``, ``history`` (per epoch: loss, val AUC and
    the sampler's expected/eval rate), ``rates``, ``eval_mask``, ``probabilities``, ``scores``
    (test vendor -> logits) and ``seeds``.
    """
    if vendor not in TRAIN_VENDORS:
        raise ValueError(f"vendor must be one of {TRAIN_VENDORS}, got {vendor!r}")
    from glassbox.training.loop import fit

    seeds = model_seeds(seed, vendor, rate, kind, repeat)
    model = build_model(cfg, kind, rate, seeds)
    train_set, val_set = data.splits[vendor]["train"], data.splits[vendor]["val"]

    net_params = list(model.net.parameters())
    sampler_params = [p for p in model.sampler.parameters() if p.requires_grad]

    def optimizer(_params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        groups = [{"params": net_params, "lr": cfg.lr}]
        if sampler_params:
            groups.append({"params": sampler_params, "lr": cfg.logit_lr})
        return torch.optim.Adam(groups)

    def val_fn(m: KSpaceClassifier) -> dict[str, float]:
        scores = predict(m, val_set.images, device)
        rates = m.sampler.rates()
        return {"val_auc": _safe_auc(val_set.labels, scores), "rate_expected": rates["expected"],
                "rate_eval": rates["eval"]}

    with torch.random.fork_rng(devices=[torch.device(device)] if torch.device(device).type == "cuda" else []):
        torch.manual_seed(seeds["dropout"])
        history = fit(model, TensorDataset(*train_set.tensors()), _bce_loss(cfg.rate_penalty), epochs=cfg.epochs,
                      batch_size=cfg.batch_size, optimizer=optimizer, data_seed=seeds["data"], device=device,
                      val_fn=val_fn, desc=f"{vendor} {kind} r={rate:.2f}", progress=progress)
    model.eval()
    scores = {name: predict(model, test.images, device) for name, test in data.test_sets().items()}
    return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "history": history.epochs, "scores": scores, "seeds": seeds,
            "vendor": vendor, "rate": float(rate), "kind": kind, "repeat": int(repeat),
            **_sampler_record(model.sampler)}


def load_model(cfg: KSpaceConfig, entry: Mapping[str, Any]) -> KSpaceClassifier:
    """Rebuild a trained model (eval mode) from a :func:`train_model` result."""
    model = build_model(cfg, entry["kind"], entry["rate"], entry["seeds"])
    model.load_state_dict(entry["state_dict"])
    return model.eval()


def _jobs(cfg: KSpaceConfig) -> list[tuple[str, float, str, int]]:
    jobs = []
    for repeat in range(cfg.n_repeats):
        for vendor in TRAIN_VENDORS:
            jobs += [(vendor, r, "learned", repeat) for r in cfg.rates]
            jobs += [(vendor, r, kind, repeat) for kind in ("centre", "random") for r in cfg.baseline_rates]
    return jobs


def load_experiment_data(cfg: KSpaceConfig, seed: int = 0, use_store: bool = True,
                         progress: bool = True) -> ExperimentData:
    """:func:`simulate_experiment_data` through the store (keyed by the data knobs and the seed)."""
    from glassbox.core.store import get_or_compute

    config_dict = dataclasses.asdict(cfg)
    key = {k: config_dict[k] for k in ("size", "n_patients", "slices_per_patient", "split")} | {"seed": seed}
    make = lambda: simulate_experiment_data(cfg, seed)  # noqa: E731
    return get_or_compute("kspace_data", key, make, seed=seed, progress=progress) if use_store else make()


def run_experiment(cfg: KSpaceConfig, seed: int = 0, device: torch.device | str = "cpu",
                   use_store: bool = True, progress: bool = True,
                   data: ExperimentData | None = None) -> dict[str, Any]:
    """Simulate the data (unless given) and train every model of the chapter (through the store when
    ``use_store``). Returns ``{"data", "models" (train_model results), "config", "seed"}``."""

    from glassbox.core.progress import track
    from glassbox.core.store import get_or_compute

    if data is None:
        data = load_experiment_data(cfg, seed, use_store, progress)
    config_dict = dataclasses.asdict(cfg)
    models = []
    for vendor, rate, kind, repeat in track(_jobs(cfg), "k-space models", unit="model", enabled=progress):
        key = config_dict | {"seed": seed, "vendor": vendor, "rate": rate, "kind": kind, "repeat": repeat,
                             "device_type": torch.device(device).type}

        def compute(vendor=vendor, rate=rate, kind=kind, repeat=repeat):
            return train_model(cfg, data, vendor, rate, kind, repeat, seed, device)

        models.append(get_or_compute("kspace_model", key, compute, seed=seed, device=device, progress=False)
                      if use_store else compute())
    return {"data": data, "models": models, "config": cfg, "seed": seed}


def shift_table(data: ExperimentData, seed: int = 0) -> pd.DataFrame:
    """How big each vendor shift is: cross-validated AUC of a linear vendor classifier on the test
    images, from the k-space line spectrum, the intensity histogram, or both (0.5 = no shift)."""
    from glassbox.data.mri import vendor_separability

    tests = data.test_sets()
    rows = []
    for other in ("B", CONTROL_VENDOR):
        row: dict[str, Any] = {"shift": f"A vs {other}"}
        for features in ("spectrum", "histogram", "both"):
            row[f"vendor_auc_{features}"] = vendor_separability(tests["A"].images, tests[other].images,
                                                                features=features, seed=seed,
                                                                folds=min(5, len(tests["A"]), len(tests[other])))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Tables


def _other(vendor: str) -> str:
    return "B" if vendor == "A" else "A"


def auc_frame(experiment: Mapping[str, Any], alpha: float | None = None) -> pd.DataFrame:
    """One row per (model, test vendor): AUC with DeLong CI, nominal/expected/eval rates."""
    cfg: KSpaceConfig = experiment["config"]
    alpha = cfg.alpha if alpha is None else alpha
    tests = experiment["data"].test_sets()
    rows = []
    for m in experiment["models"]:
        for test_vendor, scores in m["scores"].items():
            labels = tests[test_vendor].labels
            try:
                res = delong_ci(labels, scores, alpha=alpha)
                auc, low, high, se = res.auc, res.low, res.high, res.se
            except ROCInputError:
                auc = low = high = se = float("nan")
            relation = ("own" if test_vendor == m["vendor"] else
                        "other" if test_vendor == _other(m["vendor"]) else "control")
            rows.append({"kind": m["kind"], "train": m["vendor"], "test": test_vendor, "relation": relation,
                         "repeat": m["repeat"], "rate_nominal": m["rate"],
                         "rate_expected": m["rates"]["expected"], "rate_eval": m["rates"]["eval"],
                         "auc": auc, "ci_low": low, "ci_high": high, "se": se, "n_test": len(labels)})
    return pd.DataFrame(rows)


def paper_frame() -> pd.DataFrame:
    """The paper's Table 1 in long form (train vendor, row, rate, own, other), labelled as the paper's."""
    rows = []
    for vendor, table in PAPER_TABLE1.items():
        for i, rate in enumerate(table["rate"]):
            rows.append({"train": vendor, "row": i, "paper_rate": rate, "paper_own": table["own"][i],
                         "paper_other": table["other"][i]})
    return pd.DataFrame(rows)


def table1(frame: pd.DataFrame, cfg: KSpaceConfig) -> pd.DataFrame:
    """The paper's Table 1 layout for the learned layer, ours beside the paper's.

    Per training vendor and nominal rate: achieved rates, AUC on its own vendor and on the other
    with 95% DeLong intervals (repeat 0; with several repeats also the mean and sd over repeats),
    and the paper's row with the same index (its i-th rate).
    """
    learned = frame[frame["kind"] == "learned"]
    paper = paper_frame()
    rows = []
    for vendor in TRAIN_VENDORS:
        for i, rate in enumerate(sorted(cfg.rates)):
            row: dict[str, Any] = {"train": vendor, "rate_nominal": rate}
            for relation in ("own", "other", "control"):
                sel = learned[(learned["train"] == vendor) & (learned["rate_nominal"] == rate)
                              & (learned["relation"] == relation)]
                if sel.empty:
                    continue
                first = sel[sel["repeat"] == sel["repeat"].min()].iloc[0]
                if relation == "own":
                    row["rate_expected"] = float(sel["rate_expected"].mean())
                    row["rate_eval"] = float(sel["rate_eval"].mean())
                row[f"auc_{relation}"] = float(first["auc"])
                row[f"ci_{relation}"] = f"[{first['ci_low']:.3f}, {first['ci_high']:.3f}]"
                row[f"ci_{relation}_low"], row[f"ci_{relation}_high"] = float(first["ci_low"]), float(first["ci_high"])
                if len(sel) > 1:
                    row[f"auc_{relation}_mean"] = float(sel["auc"].mean())
                    row[f"auc_{relation}_sd"] = float(sel["auc"].std(ddof=1))
            prow = paper[(paper["train"] == vendor) & (paper["row"] == i)] if len(cfg.rates) == 10 else paper.iloc[:0]
            if not prow.empty:
                row |= {k: float(prow.iloc[0][k]) for k in ("paper_rate", "paper_own", "paper_other")}
            rows.append(row)
    return pd.DataFrame(rows)


def format_table1(table: pd.DataFrame) -> pd.DataFrame:
    """Table 1 for display: per training vendor, ours (AUC and 95% CI) beside the paper's row."""
    out = pd.DataFrame({
        "trained on": table["train"].map(lambda v: f"{v} ({PAPER_VENDOR_NAMES[v]}-like)"),
        "rate (nominal)": table["rate_nominal"],
        "rate (achieved)": table["rate_eval"].round(3),
        "S own": table["auc_own"].round(3), "S own 95% CI": table["ci_own"],
        "S other": table["auc_other"].round(3), "S other 95% CI": table["ci_other"],
    })
    if "paper_rate" in table:
        out["paper rate"] = table["paper_rate"]
        out["paper own"] = table["paper_own"]
        out["paper other"] = table["paper_other"]
    return out


def baseline_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Learned vs centre vs random masks at the baseline rates: AUC [CI] on own and other vendor (repeat 0)."""
    base_rates = sorted(frame.loc[frame["kind"] != "learned", "rate_nominal"].unique())
    sel = frame[(frame["rate_nominal"].isin(base_rates)) & (frame["repeat"] == 0)
                & (frame["relation"].isin(["own", "other"]))].copy()
    sel["auc [95% CI]"] = [f"{a:.3f} [{lo:.3f}, {hi:.3f}]" for a, lo, hi in zip(sel["auc"], sel["ci_low"], sel["ci_high"])]
    out = sel.pivot_table(index=["train", "rate_nominal", "kind"], columns="relation",
                          values=["auc", "rate_eval"], aggfunc="first")
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out = out.drop(columns=[c for c in out.columns if c.startswith("rate_eval_") and c != "rate_eval_own"])
    return out.rename(columns={"rate_eval_own": "rate_achieved"}).reset_index()


def rate_frame(experiment: Mapping[str, Any]) -> pd.DataFrame:
    """Nominal vs achieved rates of every learned model, and the per-epoch drift of the expected rate."""
    rows = []
    for m in experiment["models"]:
        if m["kind"] != "learned":
            continue
        drift = [h["rate_expected"] for h in m["history"]]
        rows.append({"train": m["vendor"], "repeat": m["repeat"], "rate_nominal": m["rate"],
                     "rate_expected": m["rates"]["expected"], "rate_eval": m["rates"]["eval"],
                     "rate_last_draw": m["rates"]["last_draw"], "drift": m["rates"]["expected"] - m["rate"],
                     "expected_per_epoch": drift})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Verdicts


def _scores_for(experiment: Mapping[str, Any], vendor: str, rate: float, kind: str = "learned",
                repeat: int = 0) -> dict[str, np.ndarray]:
    for m in experiment["models"]:
        if (m["vendor"], m["rate"], m["kind"], m["repeat"]) == (vendor, rate, kind, repeat):
            return m["scores"]
    raise KeyError(f"no {kind} model for vendor {vendor}, rate {rate}, repeat {repeat}")


def _paired(experiment: Mapping[str, Any], vendor: str, test: str, rate_1: float, rate_2: float,
            alpha: float) -> dict[str, float]:
    labels = experiment["data"].test_sets()[test].labels
    out = {}
    diffs = []
    for repeat in range(experiment["config"].n_repeats):
        s1 = _scores_for(experiment, vendor, rate_1, repeat=repeat)[test]
        s2 = _scores_for(experiment, vendor, rate_2, repeat=repeat)[test]
        try:
            res = delong_paired_test(labels, s1, s2, alpha=alpha)
        except ROCInputError:
            return {"auc_low_rate": float("nan"), "auc_full": float("nan"), "difference": float("nan"),
                    "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
        diffs.append(res.difference)
        if repeat == 0:
            out = {"auc_low_rate": res.auc_1, "auc_full": res.auc_2, "difference": res.difference,
                   "ci_low": res.low, "ci_high": res.high, "p_value": res.p_value}
    if len(diffs) > 1:
        out["difference_mean_over_repeats"] = float(np.mean(diffs))
        out["difference_sd_over_repeats"] = float(np.std(diffs, ddof=1))
    return out


def _paper_spearman(vendor: str) -> float:
    table = PAPER_TABLE1[vendor]
    return float(stats.spearmanr(table["rate"], table["other"]).statistic)


def verdicts(experiment: Mapping[str, Any]) -> pd.DataFrame:
    """The paper's two claims, per training vendor, with paired DeLong intervals (repeat 0).

    1. *Robustness*: at the rate nearest 0.2 the own-vendor AUC stays within ``margin`` of the fully
       sampled one: ``holds`` if the CI of AUC(0.2) - AUC(1) lies above ``-margin``, ``fails`` if it
       lies below, else ``inconclusive``.
    2. *Generalizability*: at the lowest rate the other-vendor AUC is higher than fully sampled:
       ``holds`` if the CI of AUC(lowest) - AUC(1) lies above 0, ``contradicted`` if below 0, else
       ``not shown``. The Spearman correlation of other-vendor AUC with the achieved rate over all
       rates is reported beside it (negative = lower rates generalise better), with the paper's.
    The same generalizability test on the control vendor (contrast-only shift) follows.
    """
    cfg: KSpaceConfig = experiment["config"]
    frame = auc_frame(experiment)
    learned = frame[(frame["kind"] == "learned") & (frame["repeat"] == 0)]
    low, ref = min(cfg.rates), cfg.reference_rate
    rows = []
    for vendor in TRAIN_VENDORS:
        paper = PAPER_TABLE1[vendor]
        res = _paired(experiment, vendor, vendor, ref, 1.0, cfg.alpha)
        verdict = ("holds" if res["ci_low"] > -cfg.margin else "fails" if res["ci_high"] < -cfg.margin
                   else "inconclusive") if np.isfinite(res["ci_low"]) else "not computable"
        rows.append({"claim": "1: rate near 0.2 keeps near-full AUC", "train": vendor, "test": vendor,
                     "rate_low": ref, **res, "criterion": f"CI of difference above -{cfg.margin}",
                     "verdict": verdict, "paper_difference": paper["own"][1] - paper["own"][-1]})
        for test, label in ((_other(vendor), "2: lower rates generalise better"),
                            (CONTROL_VENDOR, "2 (control: contrast-only shift)")):
            if vendor != "A" and test == CONTROL_VENDOR:
                continue  # the control test set shares B's patients; it is a shift away from A only
            res = _paired(experiment, vendor, test, low, 1.0, cfg.alpha)
            verdict = ("holds" if res["ci_low"] > 0 else "contradicted" if res["ci_high"] < 0
                       else "not shown") if np.isfinite(res["ci_low"]) else "not computable"
            sel = learned[(learned["train"] == vendor) & (learned["test"] == test)]
            rho = (float(stats.spearmanr(sel["rate_eval"], sel["auc"]).statistic)
                   if len(sel) >= 3 and sel["auc"].notna().all() and sel["auc"].nunique() > 1
                   and sel["rate_eval"].nunique() > 1 else float("nan"))
            rows.append({"claim": label, "train": vendor, "test": test, "rate_low": low, **res,
                         "criterion": "CI of difference above 0", "verdict": verdict,
                         "spearman_rate_vs_auc": rho,
                         "paper_difference": (paper["other"][0] - paper["other"][-1]) if test != CONTROL_VENDOR else np.nan,
                         "paper_spearman": _paper_spearman(vendor) if test != CONTROL_VENDOR else np.nan})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# Sampled images and figures


@torch.no_grad()
def sampled_images(cfg: KSpaceConfig, entry: Mapping[str, Any], images: np.ndarray) -> np.ndarray:
    """What the classifier of ``entry`` sees: ``images`` (N, H, W) through its evaluation mask."""
    model = load_model(cfg, entry)
    x = torch.from_numpy(np.ascontiguousarray(images[:, None], dtype=np.float32))
    return model.sampler(x)[:, 0].numpy()


def _axes(ax=None, figsize=(5, 3.5)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _curve(table: pd.DataFrame, relation: str, title: str, axes=None):
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, vendor in zip(axes, TRAIN_VENDORS):
        t = table[table["train"] == vendor].sort_values("rate_eval")
        ax.errorbar(t["rate_eval"], t[f"auc_{relation}"],
                    yerr=[t[f"auc_{relation}"] - t[f"ci_{relation}_low"], t[f"ci_{relation}_high"] - t[f"auc_{relation}"]],
                    marker="o", capsize=3, label="ours (95% DeLong CI)")
        if "paper_rate" in t:
            ax.plot(t["paper_rate"], t[f"paper_{relation}"], "s--", color="grey", label="paper")
        tested = vendor if relation == "own" else _other(vendor)
        ax.set(title=f"trained on {vendor} ({PAPER_VENDOR_NAMES[vendor]}), tested on {tested}",
               xlabel="achieved sampling rate", ylim=(0.4, 1.0))
        ax.axhline(0.5, color="k", lw=0.5, ls=":")
    axes[0].set_ylabel("AUC")
    axes[0].legend(loc="lower right")
    axes[0].figure.suptitle(title)
    axes[0].figure.tight_layout()
    return axes


def plot_vendors(data: ExperimentData, index: int | None = None):
    """A tumour slice of A, the same-index slice of B and of the control (same patient as B), and the
    mean log power per phase-encode line of each vendor's test set."""
    import matplotlib.pyplot as plt

    tests = data.test_sets()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
    i = int(np.flatnonzero(tests["A"].labels == 1)[0]) if index is None else index
    for ax, vendor in zip(axes[:3], ("A", "B", CONTROL_VENDOR)):
        test = tests[vendor]
        ax.imshow(test.images[i], cmap="gray", vmin=0, vmax=1.2)
        if test.tumour_masks[i].any():
            ax.contour(test.tumour_masks[i], levels=[0.5], colors="r", linewidths=0.6)
        ax.set_title(test.vendor, fontsize=9)
        ax.axis("off")
    for vendor in ("A", "B", CONTROL_VENDOR):
        images = tests[vendor].images
        k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
        profile = np.log10((np.abs(k) ** 2).mean(axis=(0, 2)))
        axes[3].plot(np.arange(len(profile)) - len(profile) // 2, profile, label=tests[vendor].vendor)
    axes[3].set(xlabel="phase-encode line (0 = DC)", ylabel="log10 mean power", title="k-space per line")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    return axes


def plot_robustness(table: pd.DataFrame, axes=None):
    """The paper's Fig. 4: own-vendor AUC against the achieved rate, ours with CIs beside the paper's."""
    return _curve(table, "own", r"Robustness: $S_{A,A}$ and $S_{B,B}$", axes)


def plot_generalizability(table: pd.DataFrame, axes=None):
    """The paper's Fig. 5: other-vendor AUC against the achieved rate, ours with CIs beside the paper's."""
    return _curve(table, "other", r"Generalizability: $S_{B,A}$ and $S_{A,B}$", axes)


def plot_control(table: pd.DataFrame, ax=None):
    """m_A on the other vendor (B: contrast + k-space shift) and on the control (contrast only)."""
    ax = _axes(ax, (5.5, 3.6))
    t = table[table["train"] == "A"].sort_values("rate_eval")
    for relation, label in (("other", "tested on B (contrast + k-space shift)"),
                            ("control", "tested on B_contrast (contrast only)"), ("own", "tested on A (own)")):
        if f"auc_{relation}" not in t:
            continue
        ax.errorbar(t["rate_eval"], t[f"auc_{relation}"],
                    yerr=[t[f"auc_{relation}"] - t[f"ci_{relation}_low"], t[f"ci_{relation}_high"] - t[f"auc_{relation}"]],
                    marker="o", capsize=3, label=label)
    ax.set(xlabel="achieved sampling rate", ylabel="AUC", title=r"$m_A$: which shift does sampling act on?",
           ylim=(0.4, 1.0))
    ax.axhline(0.5, color="k", lw=0.5, ls=":")
    ax.legend(fontsize=8, loc="lower right")
    ax.figure.tight_layout()
    return ax


def plot_rate_drift(experiment: Mapping[str, Any], ax=None):
    """Expected sampling rate after each epoch of every learned model (dashed: nominal rates)."""
    ax = _axes(ax, (5.5, 3.6))
    for m in experiment["models"]:
        if m["kind"] != "learned" or m["repeat"] != 0:
            continue
        epochs = [0] + [h["epoch"] for h in m["history"]]
        values = [m["rate"]] + [h["rate_expected"] for h in m["history"]]
        ax.plot(epochs, values, color="C0" if m["vendor"] == "A" else "C1", alpha=0.8,
                label=f"trained on {m['vendor']}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.set(xlabel="epoch", ylabel="expected sampling rate", title="rate drift (no rate constraint)", ylim=(0, 1.02))
    ax.figure.tight_layout()
    return ax


def plot_masks(experiment: Mapping[str, Any], repeat: int = 0, axes=None):
    """Learned sampling probability per phase-encode line (rows: nominal rates), one panel per vendor,
    with the evaluation (top-k) mask outlined."""
    import matplotlib.pyplot as plt

    cfg: KSpaceConfig = experiment["config"]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, vendor in zip(axes, TRAIN_VENDORS):
        entries = sorted((m for m in experiment["models"] if m["kind"] == "learned" and m["vendor"] == vendor
                          and m["repeat"] == repeat), key=lambda m: m["rate"])
        probs = np.stack([np.asarray(m["probabilities"]).reshape(-1)[: cfg.size * (cfg.size if cfg.unit == "point" else 1)]
                          for m in entries])
        if cfg.unit == "point":
            probs = probs.reshape(len(entries), cfg.size, cfg.size).mean(axis=2)
        masks = np.stack([np.asarray(m["eval_mask"]).reshape(cfg.size, -1).max(axis=1) for m in entries])
        im = ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                       extent=(-cfg.size // 2 - 0.5, cfg.size - cfg.size // 2 - 0.5, len(entries) - 0.5, -0.5))
        ax.contour(np.arange(cfg.size) - cfg.size // 2, np.arange(len(entries)), masks, levels=[0.5],
                   colors="white", linewidths=0.6)
        ax.set(title=f"learned masks, trained on {vendor}", xlabel="phase-encode line (0 = DC)",
               yticks=range(len(entries)), yticklabels=[f"{m['rate']:.1f}" for m in entries])
    axes[0].set_ylabel("nominal rate")
    axes[0].figure.colorbar(im, ax=list(axes), label="sampling probability")
    return axes


def plot_sampled_images(experiment: Mapping[str, Any], rates: Sequence[float] | None = None, index: int | None = None):
    """The paper's Fig. 6: a tumour slice of each vendor through that vendor's learned masks."""
    import matplotlib.pyplot as plt

    cfg: KSpaceConfig = experiment["config"]
    if rates is None:
        ordered = sorted(cfg.rates)
        rates = [ordered[i] for i in sorted({round(j * (len(ordered) - 1) / 3) for j in range(4)})]
    rates = sorted(rates)
    fig, axes = plt.subplots(2, len(rates) + 1, figsize=(1.9 * (len(rates) + 1), 4.2))
    for row, vendor in enumerate(TRAIN_VENDORS):
        test = experiment["data"].test_sets()[vendor]
        i = int(np.flatnonzero(test.labels == 1)[0]) if index is None else index
        image = test.images[i:i + 1]
        axes[row, 0].imshow(image[0], cmap="gray", vmin=0, vmax=1.2)
        axes[row, 0].contour(test.tumour_masks[i], levels=[0.5], colors="r", linewidths=0.6)
        axes[row, 0].set_title(f"{vendor}: input")
        for col, rate in enumerate(rates, start=1):
            entry = next(m for m in experiment["models"] if m["kind"] == "learned" and m["vendor"] == vendor
                         and m["rate"] == rate and m["repeat"] == 0)
            axes[row, col].imshow(sampled_images(cfg, entry, image)[0], cmap="gray", vmin=0, vmax=1.2)
            axes[row, col].set_title(f"r={entry['rates']['eval']:.2f}")
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return axes
