"""The U-Net training chapter: Qu et al.'s grid of denoisers, their Table I, and the seeding controls.

The grid itself (models, Table I, the paper's numbers) lives in :mod:`glassbox.training.unet_grid`, shared
with the feature-space chapter. This module is the chapter's surface (``book/CHAPTER_GUIDE.md``):

- :data:`PROFILES`; :func:`run` -> :class:`TrainingResult` (the grid, the control, Table I, the thread-count
  experiment); :func:`plan` (every training as a :class:`glassbox.core.tasks.Task`);
- tables :func:`protocol_table`, :func:`table1_view`, :func:`seeding_table`, :func:`control_table`; figures
  :func:`plot_training_curves`, :func:`plot_examples`;
- :func:`checks` (invariants raise, quality checks are shown) and :func:`claims` (the verdicts),
  :func:`numbers` (for ``results/unet_training.json``) and :func:`glue_values` (numbers quoted in the text).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from glassbox.core import repro
from glassbox.core.store import get_or_compute
from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.measure import image_metrics
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
from glassbox.measure.stats import bootstrap_mean
from glassbox.report.plotting import image_grid
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.loop import CONTROL_SEEDING, SEEDING_MODES, SHARED_SEEDS, trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig
from glassbox.training.unet_grid import QuConfig, TrainedModel, max_weight_difference

CHAPTER = "unet_training"
PROFILES = unet_grid.PROFILES
"""This chapter runs on the U-Net grid's profiles (:data:`glassbox.training.unet_grid.PROFILES`)."""

THREADS_ENTRY = "thread-count-experiment"


# --- the thread-count experiment -------------------------------------------------------------------------


def _thread_recipe(recipe: DenoiserConfig, max_samples: int, epochs: int) -> DenoiserConfig:
    return dataclasses.replace(recipe, epochs=min(epochs, recipe.epochs),
                               n_patches=None if recipe.n_patches is None else min(recipe.n_patches, max_samples))


def _thread_key(recipe: DenoiserConfig, identity: str, seed: int, threads: tuple[int, int], max_samples: int,
                epochs: int) -> dict[str, Any]:
    return {"recipe": _thread_recipe(recipe, max_samples, epochs), "pairs": identity, "seed": seed,
            "threads": list(threads), "max_samples": max_samples}


def thread_count_experiment(recipe: DenoiserConfig, pairs: unet_denoiser.Pairs, *, seed: int,
                            threads: tuple[int, int] = (1, 2), max_samples: int = 128, epochs: int = 2,
                            identity: str | None = None) -> dict[str, float]:
    """Train the same fully fixed model on the CPU three times: twice with ``threads[0]`` torch threads and
    once with ``threads[1]``; return the largest weight differences and the PSNR change. Through the store.

    Identical seeds, data and code: the only change is how many threads split each floating-point
    reduction, i.e. the summation order. The run is shortened to ``epochs`` epochs and at most
    ``max_samples`` training samples (it is a demonstration, not a model of the grid).
    """
    short = _thread_recipe(recipe, max_samples, epochs)
    data = unet_denoiser.prepare_data(short, pairs, identity=identity)

    def compute() -> dict[str, float]:
        train = data
        if data.n_train > max_samples:
            train = dataclasses.replace(data, train=torch.utils.data.Subset(data.train, list(range(max_samples))))
        seeds = trial_seeds(CONTROL_SEEDING, 0, seed)
        trained = []
        for n in (threads[0], threads[0], threads[1]):
            with repro.threads(n):
                model, _ = unet_denoiser.train_denoiser(short, pairs, seeds, device="cpu", progress=False, data=train)
            trained.append(model)
        psnr = [unet_denoiser.evaluate_denoiser(m, pairs, data.split["test"])["psnr"] for m in trained]
        return {"threads_a": threads[0], "threads_b": threads[1],
                "same_threads_max_weight_difference": max_weight_difference(trained[0], trained[1]),
                "other_threads_max_weight_difference": max_weight_difference(trained[0], trained[2]),
                "other_threads_psnr_difference": abs(psnr[0] - psnr[2]), "epochs": short.epochs,
                "samples": min(data.n_train, max_samples)}

    key = _thread_key(recipe, data.fingerprint, seed, threads, max_samples, epochs)
    return dict(get_or_compute(THREADS_ENTRY, key, compute, seed=seed, device="cpu", progress=False))


# --- the chapter's run -------------------------------------------------------------------------------------


@dataclass
class TrainingResult:
    """Everything the training chapter shows, computed by :func:`run`."""

    config: QuConfig
    seed: int
    device: str
    pairs: unet_denoiser.Pairs = field(repr=False)
    identity: str
    split: dict[str, list[str]]
    n_train: int
    models: dict[tuple[int, str, int], TrainedModel] = field(repr=False)
    control: TrainedModel | None = field(repr=False)
    table1: pd.DataFrame = field(repr=False)
    floor_val: dict[str, float] | None
    floor_test: dict[str, float]
    threads: dict[str, float]
    control_scores: dict[str, float] | None
    control_gain: tuple[float, float, float] | None
    grid_scores: dict[str, float] | None


def run(config: QuConfig, *, seed: int, device: torch.device | str = "cpu", data_dir: Path | str | None = None,
        progress: bool = True) -> TrainingResult:
    """Train (or load) the grid and the control, score them on the test patients, run the thread experiment."""
    pairs, identity = unet_grid.load_data(config, seed, data_dir, progress=progress)
    data = unet_denoiser.prepare_data(unet_grid.denoiser_config(config, max(config.depths), seed), pairs,
                                      identity=identity)
    split = data.split
    models = unet_grid.train_grid(config, pairs, seed=seed, device=device, progress=progress, identity=identity)
    control = unet_grid.train_control(config, pairs, seed=seed, device=device, progress=progress, identity=identity)
    t1 = unet_grid.table1(models, pairs, split["test"], n_boot=config.bootstrap, seed=seed)
    threads = thread_count_experiment(unet_grid.denoiser_config(config, min(config.depths), seed), pairs, seed=seed,
                                      identity=identity)
    control_scores = control_gain = grid_scores = None
    if control is not None:
        control_scores = unet_denoiser.evaluate_denoiser(control.model, pairs, split["test"])
        grid_scores = unet_denoiser.evaluate_denoiser(models[(control.depth, "random", 0)].model, pairs, split["test"])
        control_gain = bootstrap_mean(unet_denoiser.slice_psnrs(control.model, pairs, split["test"]),
                                      unet_denoiser.slice_psnrs(None, pairs, split["test"]),
                                      n_boot=config.bootstrap, seed=seed)
    return TrainingResult(
        config=config, seed=seed, device=torch.device(device).type, pairs=pairs, identity=identity, split=split,
        n_train=data.n_train, models=models, control=control, table1=t1,
        floor_val=unet_denoiser.input_scores(pairs, split["val"]) if split["val"] else None,
        floor_test=unet_denoiser.input_scores(pairs, split["test"]), threads=threads,
        control_scores=control_scores, control_gain=control_gain, grid_scores=grid_scores)


def plan(config: QuConfig, *, seed: int, device: torch.device | str, data_dir: Path | str | None = None) -> list[Task]:
    """The data, every training of the grid, the control and the thread-count experiment (see :func:`run`)."""
    tasks = unet_grid.grid_tasks(config, seed=seed, device=device, data_dir=data_dir)
    identity = (unet_denoiser.data_identity(config.data, seed) if data_dir is None else
                unet_grid.load_data(config, seed, data_dir, progress=False)[1])
    recipe = unet_grid.denoiser_config(config, min(config.depths), seed)

    def threads() -> dict[str, float]:
        pairs, ident = unet_grid.load_data(config, seed, data_dir, progress=False)
        return thread_count_experiment(recipe, pairs, seed=seed, identity=ident)

    deps = tuple(t.key for t in tasks if t.entry != unet_denoiser.STORE_ENTRY)
    tasks.append(Task(THREADS_ENTRY, _thread_key(recipe, identity, seed, (1, 2), 128, 2), threads,
                      label="thread-count experiment (CPU)", deps=deps, gpu=False))
    return tasks


# --- tables and figures -----------------------------------------------------------------------------------


def protocol_table(config: QuConfig, profile: str) -> pd.DataFrame:
    """The paper's training protocol beside this profile's."""
    r = config.denoiser
    return pd.DataFrame([
        {"": "paper (Qu et al.)", "width": 1.0, "training images": "whole slices", "epochs": 200, "output": "plain",
         "lr": 0.01, "batch": 8, "optimizer": "RMSprop", "loss": "L1 + L2"},
        {"": f"this run ({profile})", "width": r.width,
         "training images": f"{r.n_patches} crops of {r.patch_size} px" if r.patch_size else "whole slices",
         "epochs": r.epochs,
         "output": ("residual, zero start" if r.zero_head else "residual") if r.residual else "plain",
         "lr": r.lr, "batch": r.batch_size, "optimizer": "RMSprop", "loss": f"{r.l1_weight:g} L1 + {r.l2_weight:g} L2"},
    ]).set_index("")


def table1_view(result: TrainingResult) -> pd.DataFrame:
    """Table I as shown: ours (with the interval of the difference and the stability margin) and the paper's."""
    columns = ["model", "seeding", "psnr_trial1", "psnr_trial2", "mean_psnr", "difference", "difference_lo",
               "difference_hi", "stability_margin", "input_psnr", "psnr_gain", "mean_ssim", "paper_mean_psnr",
               "paper_difference"]
    return result.table1[columns].set_index(["model", "seeding"]).round(3)


def seeding_table(result: TrainingResult) -> pd.DataFrame:
    """Per model: which seeds the two trials share, their largest weight difference and bit-identity."""

    view = result.table1[["model", "seeding", "max_weight_difference", "identical_weights", "difference"]].copy()
    view.insert(2, "shared seeds", [", ".join(sorted(SHARED_SEEDS[s])) or "none" for s in view["seeding"]])
    return view.set_index(["model", "seeding"])


def control_table(result: TrainingResult) -> pd.DataFrame | None:
    """The control (paper recipe) against the input and the grid's model of the same depth; None without one."""
    if result.control is None:
        return None
    depth = result.control.depth
    return pd.DataFrame([
        {"model": "low-dose input (floor)", "test PSNR": result.floor_test["psnr"],
         "test RMSE (HU)": result.floor_test["rmse_hu"]},
        {"model": f"U-Net-{depth}, paper recipe (plain output, lr 0.01)", "test PSNR": result.control_scores["psnr"],
         "test RMSE (HU)": result.control_scores["rmse_hu"]},
        {"model": f"U-Net-{depth}, this profile's recipe (random seeding, trial 1)",
         "test PSNR": result.grid_scores["psnr"], "test RMSE (HU)": result.grid_scores["rmse_hu"]},
    ]).set_index("model").round(2)


_STYLES = {"random": "-", "fixed": "--", "fully_fixed": ":"}


def plot_training_curves(result: TrainingResult):
    """Validation PSNR per epoch, one panel per architecture, with the low-dose input's PSNR as the floor."""

    floor = (result.floor_val or result.floor_test)["psnr"]
    depths = list(dict.fromkeys(k[0] for k in result.models))
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.4), sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for (d, seeding, trial), m in result.models.items():
            if d != depth or (trial == 0 and seeding != "random"):
                continue  # trial 1 is one run for every seeding mode: drawn once
            frame = m.history.to_frame()
            label = "trial 1 (all modes)" if trial == 0 else f"trial 2, {seeding}"
            ax.plot(frame["epoch"], frame["val_psnr"], _STYLES[seeding], marker="o", markersize=3, label=label)
        if result.control is not None and result.control.depth == depth:
            frame = result.control.history.to_frame()
            ax.plot(frame["epoch"], frame["val_psnr"], "-.", color="k", label="paper recipe (control)")
        ax.axhline(floor, color="grey", lw=1)
        ax.annotate("low-dose input", (0.02, floor), xycoords=("axes fraction", "data"), fontsize=8,
                    color="grey", va="bottom")
        ax.set_title(f"U-Net-{depth}")
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel("validation PSNR (dB)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_examples(result: TrainingResult, *, window: str = "abdomen"):
    """Low-dose input, full-dose target, trial 1 of each architecture and the control on the middle slice of the
    first test patient, PSNR of the whole slice in the titles."""

    patient = result.split["test"][0]
    slice_index = result.pairs[patient][0].shape[0] // 2
    low, full = (np.asarray(a[slice_index], dtype=np.float32) for a in result.pairs[patient])
    outputs = {f"U-Net-{d} (trial 1)": result.models[(d, "random", 0)].model for d in result.config.depths}
    if result.control is not None:
        outputs["paper recipe (control)"] = result.control.model
    images, titles = [low, full], [f"low dose\n{image_metrics.psnr(low, full, unet_denoiser.PSNR_RANGE_HU):.2f} dB",
                                   "full dose (target)"]
    for name, model in outputs.items():
        out = unet_denoiser.denoise(model, low)
        images.append(out)
        titles.append(f"{name}\n{image_metrics.psnr(out, full, unet_denoiser.PSNR_RANGE_HU):.2f} dB")
    return image_grid(images, titles, window=window, size=2.4)


# --- checks and claims ------------------------------------------------------------------------------------


GAIN_MARGIN_NOTE = ("threshold 0 dB (a denoiser must beat its input); smallest gain over the grid measured on quick: "
                    "see the chapter's checks table and the margins in results")


def checks(result: TrainingResult) -> list[Check]:
    """Invariants (raise when broken) and quality checks of the run."""
    t1, cfg = result.table1, result.config
    out = [
        require("grid-complete", "every (depth, seeding, trial) of the grid is trained",
                len(result.models) == len(cfg.depths) * len(cfg.seedings) * cfg.n_trials, len(result.models)),
        require("finite-training", "every training loss and test PSNR is finite",
                all(np.isfinite(m.history.to_frame()["train_loss"]).all() for m in result.models.values())
                and np.isfinite(t1["mean_psnr"]).all() and (t1["difference"] >= 0).all()),
        require("repeat-same-threads", "the same fully fixed run with the same thread count is bit-identical",
                result.threads["same_threads_max_weight_difference"] == 0.0,
                result.threads["same_threads_max_weight_difference"], "= 0"),
    ]
    for seeding in SEEDING_MODES:
        rows = t1[t1["seeding"] == seeding]
        out.append(require(f"{seeding}-trials-differ", f"the two {seeding}-seeding trials of every model differ "
                           "(their data order differs)", not rows["identical_weights"].any(),
                           float(rows["max_weight_difference"].min()), "> 0"))
    if CONTROL_SEEDING in cfg.seedings:
        rows = t1[t1["seeding"] == CONTROL_SEEDING]
        out.append(require("fully-fixed-identical", "fully fixed trials (every seed shared, deterministic algorithms) "
                           "are bit-identical in every parameter and buffer", rows["identical_weights"].all(),
                           float(rows["max_weight_difference"].max()), "= 0"))
    paper_modes = t1[t1["seeding"].isin(SEEDING_MODES)]
    out.append(quality_check("gain-over-input", "smallest PSNR gain over the low-dose input of any model (dB)",
                             float(paper_modes["psnr_gain"].min()), above=0.0, margin_note=GAIN_MARGIN_NOTE))
    drop = min(m.history.epochs[-1]["val_psnr"] - m.history.epochs[0]["val_psnr"] for m in result.models.values())
    out.append(quality_check("no-late-collapse", "smallest change of validation PSNR from the first to the last "
                             "epoch over the grid (dB)", drop, above=-0.5,
                             margin_note="threshold -0.5 dB: training must not end worse than after its first epoch"))
    return out


def _combine(verdicts: Sequence[str]) -> str:
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    if any(v == "contradicted" for v in verdicts):
        return "contradicted"
    return "inconclusive"


def claims(result: TrainingResult, run_checks: Sequence[Check] = ()) -> list[Claim]:
    """The chapter's verdicts (:mod:`glassbox.measure.claims`); thresholds are stated in each claim's rule."""

    t1 = result.table1
    random_rows = t1[t1["seeding"] == "random"].reset_index(drop=True)
    per_model = [equivalence_rule((r.difference_lo, r.difference_hi), r.stability_margin,
                                  what=f"{r.model}'s PSNR difference")[0] for r in random_rows.itertuples()]
    worst = random_rows.loc[random_rows["difference"].idxmax()]
    details = "; ".join(f"{r.model}: {r.difference_signed:+.2f} [{r.difference_lo:+.2f}, {r.difference_hi:+.2f}] "
                        f"vs ±{r.stability_margin:.2f} dB -> {v}" for r, v in zip(random_rows.itertuples(), per_model))
    out = [Claim(
        id="qu-table1-stable", chapter=CHAPTER, source="Qu et al., Table I and Sec. IV-C", reference=unet_grid.REFERENCE,
        statement="With random seeding, the two training trials of a U-Net reach a relatively stable PSNR.",
        test="per architecture, the 95 % bootstrap interval (paired, over test slices) of trial 2 - trial 1 test "
             "PSNR, against ± the half-width of the 95 % bootstrap interval of trial 1's own mean PSNR (how far "
             "the score moves with the test set); shown: the architecture with the largest difference",
        verdict=_combine(per_model),
        rule="per architecture: supported if the interval lies within ± the margin, contradicted if entirely "
             "outside, inconclusive otherwise; overall: supported if every architecture is, contradicted if any "
             "is, inconclusive otherwise",
        ours=float(worst["difference_signed"]), interval=(float(worst["difference_lo"]), float(worst["difference_hi"])),
        interval_kind="95 % paired bootstrap over test slices", paper="0.97-1.85", unit="dB",
        section="unet_training-table1", note=details,
        depends_on=("gain-over-input",))]
    out.append(not_testable(
        "qu-table1-random-vs-fixed", CHAPTER, "Qu et al., Sec. IV-C",
        "The performance of random-seeding models may be more stable than that of fixed-seeding models.",
        "One pair of trials per model gives one PSNR difference per model and mode; comparing the spread of "
        "differences between modes needs several pairs per model (the test set's bootstrap measures the test "
        "set, not run-to-run variation). Table I shows the differences side by side.", paper="random 0.97-1.85, "
        "fixed 0.50-5.59", unit="dB", reference=unet_grid.REFERENCE, section="unet_training-table1"))
    if result.control_gain is None:
        out.append(not_testable("recipe-control", CHAPTER, "this book (the profile's recipe)",
                                "On a short CPU budget the paper's recipe ends worse than the low-dose input.",
                                "this profile trains the paper's recipe itself; there is no separate control.",
                                section="unet_training-control"))
    else:
        gain, lo, hi = result.control_gain
        verdict, rule = interval_rule((lo, hi), below=0.0, what="the control's gain over the input")
        out.append(Claim(
            id="recipe-control", chapter=CHAPTER, source="this book (the profile's recipe)",
            statement="On this profile's short budget the paper's recipe (plain U-Net, RMSprop lr 0.01) ends worse "
                      "than the low-dose input it is given.",
            test=f"test PSNR gain of a U-Net-{result.control.depth} trained with the paper's recipe over the "
                 "low-dose input, 95 % paired bootstrap over test slices",
            verdict=verdict, rule=rule, ours=gain, interval=(lo, hi), interval_kind="95 % bootstrap over test slices",
            chance=0.0, unit="dB", section="unet_training-control"))
    other = float(result.threads["other_threads_max_weight_difference"])
    verdict, rule = interval_rule((other, other), above=0.0, what="the largest weight difference")
    out.append(Claim(
        id="threads-change-fully-fixed", chapter=CHAPTER, source="this book (thread-count experiment)",
        statement="With every seed fixed, a different CPU thread count alone makes two runs end with different "
                  "weights.",
        test=f"largest weight difference after {result.threads['epochs']} epochs between runs with "
             f"{result.threads['threads_a']} and {result.threads['threads_b']} threads (a deterministic measurement: "
             "the interval is the value)",
        verdict=verdict, rule=rule, ours=other, section="unet_training-seeding"))
    return apply_checks(out, run_checks)


def deviations(config: QuConfig, *, device: torch.device | str = "cpu", simulated: bool = True) -> list[Deviation]:
    """How this run departs from Qu et al.'s protocol: the training recipe (:func:`unet_grid.recipe_deviations`),
    the test set and the PSNR convention. The data themselves are the data chapter's deviations."""
    depths = ", ".join(f"-{d}" for d in config.depths).lstrip("-")
    out = unet_grid.recipe_deviations(CHAPTER, config.denoiser, n_px=config.data.n, device=device,
                                      models=f"U-Net-{depths}, {config.n_trials} trials per seeding mode")
    if simulated:
        split = lowdose_ct.split_patients(lowdose_ct.patient_ids(config.data.n_patients),
                                          config.denoiser.split_fractions)
        n_test = len(split["test"]) * config.data.slices_per_patient
        out.append(Deviation(f"{CHAPTER}.{unet_grid.REFERENCE}.test-set", CHAPTER, unet_grid.REFERENCE, "test set",
                             "2,604 test slices of the Grand Challenge",
                             f"{n_test} simulated slices of {len(split['test'])} test patients",
                             "simulated data (see the data chapter); the profile's compute budget"))
    out.append(Deviation(f"{CHAPTER}.{unet_grid.REFERENCE}.psnr", CHAPTER, unet_grid.REFERENCE, "metric",
                         "PSNR with a data range and intensity scaling the paper does not state",
                         f"PSNR in HU with a fixed data range of {unet_denoiser.PSNR_RANGE_HU:g} HU",
                         "the paper's convention is unknown: absolute PSNR is not comparable, differences are"))
    return out


# --- numbers for the results file and the text -------------------------------------------------------------


def numbers(result: TrainingResult) -> dict[str, Any]:
    """The headline numbers of ``results/unet_training.json``."""
    t1 = result.table1
    return {
        "table1": t1,
        "input_psnr_test": result.floor_test["psnr"], "input_rmse_hu_test": result.floor_test["rmse_hu"],
        "max_random_psnr_difference": float(t1.loc[t1["seeding"] == "random", "difference"].max()),
        "max_fixed_psnr_difference": float(t1.loc[t1["seeding"] == "fixed", "difference"].max()),
        "fully_fixed_bit_identical": bool(t1.loc[t1["seeding"] == CONTROL_SEEDING, "identical_weights"].all()),
        "thread_count_experiment": result.threads,
        "control": None if result.control_scores is None else {
            "depth": result.control.depth, **result.control_scores, "gain_interval": list(result.control_gain),
            "recipe": dataclasses.asdict(result.config.control)},
        "training_curves": {unet_grid.model_label(d, s) + f"-trial{t + 1}":
                            m.history.to_frame()[["epoch", "train_loss", "val_psnr"]]
                            for (d, s, t), m in result.models.items()},
        "psnr_data_range_hu": unet_denoiser.PSNR_RANGE_HU,
        "n_test_slices": int(t1["n_test_slices"].iloc[0]),
    }


def glue_values(result: TrainingResult) -> dict[str, Any]:
    """Every number the chapter's prose quotes, by glue name."""
    t1, r = result.table1, result.config.denoiser
    paper_modes = t1[t1["seeding"].isin(SEEDING_MODES)]
    best = paper_modes.loc[paper_modes["mean_psnr"].idxmax()]
    fixed, full = t1[t1["seeding"] == "fixed"], t1[t1["seeding"] == CONTROL_SEEDING]
    values = {
        "width": r.width, "epochs": r.epochs, "lr": r.lr,
        "training_images": f"{r.n_patches} random {r.patch_size}×{r.patch_size} crops" if r.patch_size else "whole slices",
        "n_test_slices": int(t1["n_test_slices"].iloc[0]), "input_psnr": result.floor_test["psnr"],
        "max_random_difference": float(t1.loc[t1["seeding"] == "random", "difference"].max()),
        "max_fixed_difference": float(fixed["difference"].max()) if len(fixed) else math.nan,
        "min_margin": float(t1.loc[t1["seeding"] == "random", "stability_margin"].min()),
        "mean_gain": float(paper_modes["psnr_gain"].mean()),
        "best_model": f"{best['model']} ({best['seeding']})",
        "fixed_min_weight_difference": float(fixed["max_weight_difference"].min()) if len(fixed) else math.nan,
        "full_max_weight_difference": float(full["max_weight_difference"].max()) if len(full) else math.nan,
        "thread_same": result.threads["same_threads_max_weight_difference"],
        "thread_other": result.threads["other_threads_max_weight_difference"],
        "thread_epochs": result.threads["epochs"],
        **{f"paper_{mode}_{end}": f([unet_grid.PAPER_TABLE1[m][mode]["difference"] for m in unet_grid.PAPER_TABLE1])
           for mode in SEEDING_MODES for end, f in (("min", min), ("max", max))},
        "paper_psnr_min": min(v["mean_psnr"] for m in unet_grid.PAPER_TABLE1.values() for v in m.values()),
        "paper_psnr_max": max(v["mean_psnr"] for m in unet_grid.PAPER_TABLE1.values() for v in m.values()),
    }
    if result.control_gain is not None:
        values |= {"control_gain": result.control_gain[0], "control_gain_lo": result.control_gain[1],
                   "control_gain_hi": result.control_gain[2]}
    else:
        values |= {"control_gain": math.nan, "control_gain_lo": math.nan, "control_gain_hi": math.nan}
    return values
