"""The invariances chapter's entry point: :func:`run`, its :class:`InvarianceResult` and the tables of its probes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glassbox.measure import invariance_spread as spread
from glassbox.measure.stats import interval
from glassbox.models.vae import VAE
from glassbox.studies.invariances.config import LOW, InvarianceConfig
from glassbox.studies.invariances.ct_data import ChapterData, prepare_data
from glassbox.studies.invariances.denoisers import Denoisers, DenoisingComparison, compare_denoisers, train_denoisers
from glassbox.studies.invariances.probes import ProbeResult, study_probes
from glassbox.studies.invariances.vaes import train_vaes, vae_errors

# --- the result --------------------------------------------------------------------------------------------------


@dataclass
class InvarianceResult:
    """Everything the chapter shows: data, denoisers and their comparison, VAEs and every probe's analysis."""

    config: InvarianceConfig
    data: ChapterData
    nets: Denoisers
    comparison: DenoisingComparison
    vaes: dict[str, VAE]
    probes: list[ProbeResult]

    def probe(self, network: str, layer: int, domain: str = LOW) -> ProbeResult:
        for result in self.probes:
            if (result.probe.network, result.probe.layer, result.probe.domain) == (network, layer, domain):
                return result
        raise KeyError(f"no probe {network} {layer} in domain {domain}")

    def floor(self, domain: str = LOW) -> ProbeResult:
        return self.probe("identity", 0, domain)

    def vae_rmse(self, domain: str = LOW) -> np.ndarray:
        """Per analysed test patch: the VAE's reconstruction RMSE (HU, window)."""
        images = self.data.test_low if domain == LOW else self.data.test_full
        return vae_errors(self.vaes[domain], images)["window"]


def run(config: InvarianceConfig, *, seed: int = 0, device: Any = "cpu", data_dir: str | Path | None = None,
        progress: bool = True) -> InvarianceResult:
    """The whole chapter's experiment in one call (the chapter makes the same calls one by one)."""
    data = prepare_data(config, seed=seed, data_dir=data_dir, progress=progress)
    nets = train_denoisers(data, config, seed=seed, device=device, progress=progress)
    comparison = compare_denoisers(data, nets, config, seed=seed)
    vaes = train_vaes(data, config, seed=seed, device=device, progress=progress)
    results = study_probes(data, nets, vaes, config, seed=seed, device=device, progress=progress)
    return InvarianceResult(config, data, nets, comparison, vaes, results)


def _fmt_interval(values: np.ndarray) -> tuple[float, float, float]:
    return interval(np.asarray(values, dtype=np.float64))


def spread_table(result: InvarianceResult) -> Any:
    """One row per probe: spread, spread minus floor [95% t-interval over images], in homogeneous tissue too,
    the no-information level and the VAE's reconstruction RMSE on the same images."""

    rows = []
    for r in result.probes:
        floor = result.floor(r.probe.domain)
        excess = spread.excess_over_floor(r.spread_hu, floor.spread_hu)
        flat = spread.excess_over_floor(r.flat_spread_hu, floor.flat_spread_hu)
        edges = spread.excess_over_floor(r.structure_spread_hu, floor.structure_spread_hu)
        vae = _fmt_interval(result.vae_rmse(r.probe.domain))
        rows.append({"probe": r.probe.label, "domain": "low dose" if r.probe.domain == LOW else "full dose",
                     "spread (HU)": float(np.mean(r.spread_hu)), "minus floor": excess[0],
                     "minus floor, 95% CI": f"[{excess[1]:.2f}, {excess[2]:.2f}]",
                     "homogeneous, minus floor": flat[0], "homogeneous, 95% CI": f"[{flat[1]:.2f}, {flat[2]:.2f}]",
                     "anatomy, minus floor": edges[0], "anatomy, 95% CI": f"[{edges[1]:.2f}, {edges[2]:.2f}]",
                     "no information (HU)": r.prior_spread_hu, "VAE RMSE (HU)": vae[0]})
    return pd.DataFrame(rows).set_index("probe")


def consistency_table(result: InvarianceResult) -> Any:
    """Rombach et al.'s checks per network layer (means over images): Phi(sample) vs z and f(sample) vs f(x),
    with the VAE's own reconstruction and other test images as references."""

    rows = []
    for r in result.probes:
        if r.phi_similarity is None:
            continue
        rows.append({"probe": r.probe.label, "cos Φ(sample), z": r.phi_similarity.mean(),
                     "cos Φ(D(E(x))), z": r.phi_similarity_vae.mean(), "cos Φ(other), z": r.phi_similarity_other.mean(),
                     "RMSE f(sample), f(x) (HU)": r.f_rmse_hu.mean(), "RMSE f(D(E(x))), f(x)": r.f_rmse_vae_hu.mean(),
                     "RMSE f(other), f(x)": r.f_rmse_other_hu.mean()})
    return pd.DataFrame(rows).set_index("probe")


def latent_table(result: InvarianceResult) -> Any:
    """Per probe: is ``v`` standard normal on held-out patches (per-dimension mean and variance), and the
    largest inversion error ``|t(t^-1(v)) - v|``."""

    return pd.DataFrame([{"probe": r.probe.label, "max |mean v|": r.latent["max_abs_mean"],
                          "mean var v": r.latent["mean_var"], "min var": r.latent["min_var"],
                          "max var": r.latent["max_var"], "NLL / dim": r.latent["nll_per_dim"],
                          "inversion error": r.inversion_error} for r in result.probes]).set_index("probe")
