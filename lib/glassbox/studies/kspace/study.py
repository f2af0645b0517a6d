"""The k-space chapter's entry point: :func:`run_study` and its :class:`KSpaceResult` (bootstrap estimates)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from glassbox.core.progress import track
from glassbox.measure.roc import cluster_weights, pair_matrix, weighted_auc
from glassbox.studies.kspace.cohorts import ExperimentData, load_data
from glassbox.studies.kspace.config import PROTOCOLS, TRAIN_VENDORS, KSpaceConfig
from glassbox.studies.kspace.models import load_or_train, model_specs

# --------------------------------------------------------------------------------------------
# The study: models, bootstrap statistics


@dataclass
class Estimate:
    """A statistic: the value, its percentile interval and the bootstrap replicates behind it."""

    value: float
    low: float
    high: float
    replicates: np.ndarray = field(repr=False)
    per_seed: tuple[float, ...] = ()
    alpha: float = 0.05

    def __sub__(self, other: Estimate) -> Estimate:
        """The difference, on the same (paired) resamples."""
        return _estimate(self.value - other.value, self.replicates - other.replicates, self.alpha)


def _estimate(value: float, replicates: np.ndarray, alpha: float, per_seed: Sequence[float] = ()) -> Estimate:
    finite = replicates[np.isfinite(replicates)]
    low, high = (np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if finite.size else (math.nan, math.nan))
    return Estimate(float(value), float(low), float(high), replicates, tuple(float(v) for v in per_seed), alpha)


@dataclass
class KSpaceResult:
    """Everything the chapter shows: config, data, every trained model (store entries) and the bootstrap
    (seed and patient resamples shared by every statistic, so that differences are paired)."""

    config: KSpaceConfig
    seed: int
    data: ExperimentData
    models: list[dict[str, Any]]
    seed_index: np.ndarray = field(repr=False)            # (n_boot, n_seeds)
    patient_weights: dict[str, np.ndarray] = field(repr=False)   # cohort -> (n_boot, N)
    _cache: dict[tuple, Estimate] = field(default_factory=dict, repr=False)

    def entries(self, vendor: str, kind: str, k: int) -> list[dict[str, Any]]:
        """The stored models of one cell, in seed order."""
        found = sorted((m for m in self.models if (m["spec"]["vendor"], m["spec"]["kind"], m["spec"]["k"])
                        == (vendor, kind, k)), key=lambda m: m["spec"]["repeat"])
        if not found:
            raise KeyError(f"no {kind} models for vendor {vendor} with k={k}")
        return found

    def auc(self, vendor: str, kind: str, k: int, test: str, protocol: str = "topk") -> Estimate:
        """Mean AUC over training seeds of the (vendor, kind, k) models on ``test``, with its interval over
        training seeds x test patients. ``protocol="sampled"`` (learned masks, tests A and B) averages over
        the drawn masks. Full sampling answers for any kind at ``k = size``."""
        if k == self.config.size:
            kind = "full"
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        if protocol == "sampled" and kind != "learned":
            protocol = "topk"  # a fixed mask has one mask: both protocols are the same
        key = (vendor, kind, k, test, protocol)
        if key not in self._cache:
            entries = self.entries(vendor, kind, k)
            if protocol == "topk":
                scores = np.stack([m["scores"][test] for m in entries])[:, None]          # (S, 1, N)
            else:
                scores = np.stack([m["sampled_scores"][test] for m in entries])            # (S, D, N)
            labels = self.data.test[test].labels
            s, d, n = scores.shape
            pairs = pair_matrix(labels, scores.reshape(s * d, n))
            per_model = pairs.mean(axis=(1, 2)).reshape(s, d).mean(axis=1)
            reps = weighted_auc(labels, pairs, self.patient_weights[self.data.cohort(test)]).reshape(-1, s, d).mean(2)
            index = self.seed_index[:, :s]
            resampled = np.take_along_axis(reps, index % s, axis=1).mean(axis=1)
            self._cache[key] = _estimate(per_model.mean(), resampled, self.config.alpha, per_model)
        return self._cache[key]


def make_result(cfg: KSpaceConfig, seed: int, data: ExperimentData, models: list[dict[str, Any]]) -> KSpaceResult:
    """Attach the bootstrap design (one seed resample and one patient resample per cohort, per replicate)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))
    seed_index = rng.integers(0, cfg.n_seeds, size=(cfg.n_boot, cfg.n_seeds))
    weights = {cohort: cluster_weights(data.test[cohort].patients, cfg.n_boot, rng) for cohort in TRAIN_VENDORS}
    return KSpaceResult(cfg, int(seed), data, models, seed_index, weights)


def run_study(cfg: KSpaceConfig, *, seed: int, device: torch.device | str = "cpu", data: ExperimentData | None = None,
              progress: bool = True) -> KSpaceResult:
    """The chapter's experiment: the data (``data``, or :func:`load_data`) and every model of :func:`model_specs`
    through the store (what :func:`plan` lists), and the bootstrap design."""
    data = load_data(cfg, seed, progress=progress) if data is None else data
    specs = model_specs(cfg)
    models = [load_or_train(cfg, spec, seed, device, data=data)
              for spec in track(specs, "k-space models", unit="model", enabled=progress)]
    return make_result(cfg, seed, data, models)
