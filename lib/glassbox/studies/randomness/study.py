"""The randomness chapter's entry point: :func:`run`, its :class:`RandomnessResult` and the tables the chapter shows."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from glassbox.data import lowdose_ct
from glassbox.studies.randomness.analysis import (
    chance_tests,
    condition_table,
    correlations,
    curve_frame,
    layer_frame,
    pair_frame,
)
from glassbox.studies.randomness.conditions import CONDITIONS, SIMULATED_ONLY
from glassbox.studies.randomness.config import RandomnessConfig, conditions_for
from glassbox.studies.randomness.trials import Experiment, run_experiment, trial_pair
from glassbox.training import unet_denoiser


@dataclass
class RandomnessResult:
    """Everything the randomness chapter shows, computed by :func:`run`."""

    config: RandomnessConfig
    seed: int
    device: str
    experiment: Experiment = field(repr=False)
    pairs: pd.DataFrame = field(repr=False)
    layers: pd.DataFrame = field(repr=False)
    curve: pd.DataFrame = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    corr: pd.DataFrame = field(repr=False)
    scores: pd.DataFrame = field(repr=False)
    tests: pd.DataFrame = field(repr=False)

    @property
    def conditions(self) -> tuple[str, ...]:
        return self.experiment.conditions


def run(config: RandomnessConfig, *, seed: int, device: torch.device | str = "cpu", data_dir: str | None = None,
        progress: bool = True) -> RandomnessResult:
    """Train (or load) every trial of every condition and compute the chapter's tables."""
    if data_dir is not None:
        raise ValueError(f"the randomness chapter runs on simulated data only: {SIMULATED_ONLY}")
    pairs = lowdose_ct.build_dataset(config.data, seed, progress=progress)
    experiment = run_experiment(config, seed, device=device, pairs=pairs, progress=progress)
    pair_df, layer_df = pair_frame(experiment), layer_frame(experiment)
    return RandomnessResult(
        config=config, seed=seed, device=torch.device(device).type, experiment=experiment, pairs=pair_df,
        layers=layer_df, curve=curve_frame(experiment),
        table=condition_table(pair_df, layer_df, order=experiment.conditions),
        corr=correlations(pair_df, n_boot=config.bootstrap, seed=seed),
        scores=pd.DataFrame([t["test_scores"] for t in experiment.trials.values()]), tests=chance_tests(experiment))


def design_table(config: RandomnessConfig, device: torch.device | str) -> pd.DataFrame:
    """Each condition, what trial B changes, and whether it runs on ``device``."""
    runs = conditions_for(config, device)
    return pd.DataFrame([{"condition": c, "trial B changes": text, "runs here": c in runs}
                         for c, text in CONDITIONS.items() if c in config.conditions])


def ulp_example(config: RandomnessConfig, seed: int) -> dict[str, Any]:
    """The 1-ulp change of pair 0: which weight, its value before and after, their bits and the relative change."""
    trial_a, trial_b = trial_pair("ulp", 0, seed, config)
    ulp = trial_b.perturbation
    model = unet_denoiser.build_model(config.denoiser_for(seed), trial_a.init_seed)
    before = model.get_parameter(ulp.parameter).detach().reshape(-1)[ulp.index].numpy().copy()
    ulp.apply(model)
    after = model.get_parameter(ulp.parameter).detach().reshape(-1)[ulp.index].numpy().copy()
    change = abs(float(after) - float(before)) / abs(float(before))
    return {"weight": f"{ulp.parameter}[{ulp.index}]", "before": f"{float(before):.9g}", "after": f"{float(after):.9g}",
            "bits before": f"{before.view(np.uint32):#034b}", "bits after": f"{after.view(np.uint32):#034b}",
            "relative change": f"{change:.2e}"}


def _with_interval(row: pd.Series, column: str, fmt: str = "{:.3f}") -> str:
    lo, hi = row[f"{column}_lo"], row[f"{column}_hi"]
    text = fmt.format(row[column])
    return text if not np.isfinite(lo) else f"{text} [{fmt.format(lo)}, {fmt.format(hi)}]"


def condition_view(result: RandomnessResult) -> pd.DataFrame:
    """The condition table as shown: means over pairs with their 95 % t-intervals, and the chance levels."""
    table = result.table
    return pd.DataFrame({
        "condition": table["condition"], "trial B changes": table["what differs"],
        "bit-identical pairs": [f"{i} of {n}" for i, n in zip(table["identical pairs"], table["pairs"])],
        "weight distance": [_with_interval(r, "weight_distance", "{:.2g}") for _, r in table.iterrows()],
        "CKA (debiased)": [_with_interval(r, "cka") for _, r in table.iterrows()],
        "CKA chance": [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["cka_chance"], table["cka_chance_sd"])],
        "matched cosine": [_with_interval(r, "matched_cosine") for _, r in table.iterrows()],
        "cosine chance": table["matched_cosine_chance"].round(3),
        "output RMS diff (HU)": [_with_interval(r, "output_rms_diff_hu", "{:.2f}") for _, r in table.iterrows()],
        "|ΔPSNR| (dB)": [_with_interval(r, "psnr_diff", "{:.2f}") for _, r in table.iterrows()],
        "mean PSNR (dB)": table["psnr_mean"].round(2),
    })


def gpu_table(result: RandomnessResult) -> pd.DataFrame | None:
    """The GPU condition beside the identical control and its CPU stand-ins; None without CUDA."""
    if "gpu_nondeterministic" not in result.conditions:
        return None
    part = result.pairs[result.pairs["condition"].isin(["identical", "gpu_nondeterministic", "kernel_noise", "ulp"])]
    return part.groupby("condition")[["weights_identical", "weight_distance", "cka", "output_rms_diff_hu"]].mean()
