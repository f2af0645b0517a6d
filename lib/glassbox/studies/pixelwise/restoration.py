"""Sections 5-6 of the notes: L1 against L2, perceptual and adversarial losses on CT, imputing a missing sequence."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from glassbox.data.phantoms import TISSUE_LABELS
from glassbox.measure import image_metrics
from glassbox.models import feature_nets
from glassbox.studies.pixelwise.config import PixelwiseConfig, PixelwiseError, replicate_seed
from glassbox.studies.pixelwise.jobs import (
    featurenet_job,
    fetch,
    imputation_jobs,
    pixel_loss_data,
    pixel_loss_jobs,
    restorer_jobs,
    sequences_data,
)
from glassbox.studies.pixelwise.metrics import window
from glassbox.training import restoration as rst

# ------------------------------------------------------------------------------------------------
# Section 5: L1 against L2 training

def bias_slope(estimate: np.ndarray, clean: np.ndarray, value: float) -> float:
    """Least-squares slope b of ``estimate - clean = a + b (value - clean)`` over all pixels.

    An L2-trained network predicts the mean of its targets, ``clean + q (value - clean)`` for impulse
    noise of rate q, so b = q; an L1-trained one predicts their median, ``clean``, so b = 0.
    """
    e, c = np.asarray(estimate, np.float64).ravel(), np.asarray(clean, np.float64).ravel()
    x = value - c
    x = x - x.mean()
    return float(((e - c) - (e - c).mean()) @ x / (x @ x))


@dataclass
class PixelLossStudy:
    """L1- and L2-trained networks on impulse-noise targets: per replicate, slope, MAE and PSNR against the clean image."""

    rows: pd.DataFrame
    fraction: float
    example: dict[str, np.ndarray]     # input, target, clean, l1, l2 of one held-out image (first replicate)


def pixel_loss_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                     progress: bool = True) -> PixelLossStudy:
    """The same residual U-Net trained with L1 and with L2 on the same noisy inputs and impulse-noise targets."""
    data = pixel_loss_data(config, seed).build()
    clean = data["test_clean"].numpy()
    rows, example = [], {"input": data["test_input"][0, 0].numpy(), "target": data["test_target"][0, 0].numpy(),
                         "clean": clean[0, 0]}
    for job in pixel_loss_jobs(config, seed):
        result = fetch(job, device, progress)
        estimate = rst.apply_regressor(result, data["test_input"]).numpy()
        history = result["history"]
        rows.append({"loss": job.loss, "seed": job.seed,
                     "slope": bias_slope(estimate, clean, config.impulse_value),
                     "MAE vs clean": image_metrics.mae(estimate, clean),
                     "mean bias": float((estimate - clean).mean()),
                     "loss last / first epoch": history[-1]["train_loss"] / history[0]["train_loss"]})
        if job.seed == replicate_seed(seed, 0):
            example[job.loss] = estimate[0, 0]
    rows.append({"loss": "noisy input", "seed": None, "slope": bias_slope(data["test_input"].numpy(), clean,
                                                                            config.impulse_value),
                 "MAE vs clean": image_metrics.mae(data["test_input"].numpy(), clean),
                 "mean bias": float((data["test_input"].numpy() - clean).mean())})
    return PixelLossStudy(pd.DataFrame(rows), config.impulse_fraction, example)


# ------------------------------------------------------------------------------------------------
# Section 5: perceptual and adversarial losses on CT

def high_frequency_ratio(x: np.ndarray, ref: np.ndarray, sigma: float = 1.0, mask: np.ndarray | None = None) -> float:
    """Energy of ``x``'s fine detail (x minus its Gaussian blur) relative to ``ref``'s, inside ``mask``.

    Below 1: the estimate is smoother than the reference (over-smoothing, the classic MSE look).
    """
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise PixelwiseError(f"x and ref must have the same shape, got {x.shape} and {ref.shape}")
    sigmas = (0,) * (x.ndim - 2) + (sigma, sigma)
    detail_x, detail_ref = x - ndimage.gaussian_filter(x, sigmas), ref - ndimage.gaussian_filter(ref, sigmas)
    region = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
    return float(np.sqrt((detail_x[region] ** 2).mean() / (detail_ref[region] ** 2).mean()))


def _soft_tissue(labels: np.ndarray) -> np.ndarray:

    return np.isin(labels, [TISSUE_LABELS[k] for k in ("liver", "spleen", "muscle", "kidney")])


def restoration_scores(estimates_hu: np.ndarray, full_hu: np.ndarray, phantom_labels: np.ndarray | None = None,
                       ) -> dict[str, float]:
    """PSNR / SSIM in the abdomen window (data range 1), MAE in HU, and fine-detail ratio in soft tissue."""
    rows = per_slice_scores(estimates_hu, full_hu, phantom_labels)
    return {name: float(rows[name].mean()) for name in rows.columns}


def per_slice_scores(estimates_hu: np.ndarray, full_hu: np.ndarray, phantom_labels: np.ndarray | None = None,
                     ) -> pd.DataFrame:
    """:func:`restoration_scores` for every slice (the unit of the intervals over test slices)."""
    x, ref = window(estimates_hu), window(full_hu)
    rows = []
    for i in range(len(x)):
        mask = _soft_tissue(phantom_labels[i]) if phantom_labels is not None else None
        rows.append({"PSNR [dB]": image_metrics.psnr(x[i], ref[i], 1.0), "SSIM": image_metrics.ssim(x[i], ref[i], 1.0),
                     "MAE [HU]": image_metrics.mae(estimates_hu[i], full_hu[i]),
                     "detail ratio": high_frequency_ratio(estimates_hu[i], full_hu[i], mask=mask)})
    return pd.DataFrame(rows)


def denoise(result: Mapping[str, Any], low_hu: np.ndarray) -> np.ndarray:
    """Apply a trained denoiser to low-dose images in HU (N, H, W); returns HU."""
    inputs = torch.from_numpy((np.asarray(low_hu) / feature_nets.HU_SCALE).astype(np.float32))[:, None]
    return rst.apply_regressor(result, inputs)[:, 0].numpy().astype(np.float64) * feature_nets.HU_SCALE


@dataclass
class RestorationStudy:
    """The three CT denoisers, their outputs on held-out slices and the scores (mean table and per slice)."""

    feature_record: dict[str, Any]
    restorers: dict[str, dict[str, Any]]
    outputs: dict[str, np.ndarray]
    table: pd.DataFrame
    per_slice: dict[str, pd.DataFrame]

    def paired(self, a: str, b: str, column: str) -> np.ndarray:
        """Per held-out slice: ``a``'s score minus ``b``'s."""
        return (self.per_slice[a][column] - self.per_slice[b][column]).to_numpy()


def restoration_study(config: PixelwiseConfig, seed: int, examples: Mapping[str, np.ndarray],
                      device: str | torch.device = "cpu", progress: bool = True) -> RestorationStudy:
    """The feature network, then the denoiser with each restoration loss, scored on ``examples``."""
    _, record = featurenet_job(config, seed).get(device, progress)
    restorers = {job.loss: fetch(job, device, progress) for job in restorer_jobs(config, seed)}
    outputs = {"low dose": np.asarray(examples["low"])} | {name: denoise(result, examples["low"])
                                                            for name, result in restorers.items()}
    per_slice = {name: per_slice_scores(images, examples["full"], examples["labels"]) for name, images in outputs.items()}
    table = pd.DataFrame({name: frame.mean() for name, frame in per_slice.items()}).T
    return RestorationStudy(record, restorers, outputs, table, per_slice)


# ------------------------------------------------------------------------------------------------
# Section 6: imputing a missing sequence

def fit_intensity_map(source: np.ndarray, target: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """The best pixel-wise imputation without context: the mean target in each of ``bins`` source-intensity bins.

    Returns (bin edges, mean target per bin); empty bins take the nearest filled bin's value.
    """
    s, t = np.asarray(source, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    edges[-1] += 1e-9
    index = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    means = np.bincount(index, t, bins) / np.maximum(counts, 1)
    filled = np.flatnonzero(counts)
    means = np.interp(np.arange(bins), filled, means[filled])
    return edges, means


def apply_intensity_map(source: np.ndarray, edges: np.ndarray, means: np.ndarray) -> np.ndarray:
    index = np.clip(np.searchsorted(edges, np.asarray(source, np.float64), side="right") - 1, 0, len(means) - 1)
    return means[index]


@dataclass
class ImputationStudy:
    """A missing sequence imputed three ways, scored against the clean target on held-out patients."""

    rows: pd.DataFrame                 # method, seed, MAE, PSNR [dB], SSIM (means over test slices)
    per_slice: dict[str, np.ndarray]   # method -> MAE per test slice (first replicate for the U-Net)
    example: dict[str, np.ndarray]

    def unet_minus(self, method: str, column: str = "MAE") -> np.ndarray:
        """Per replicate: the U-Net's score minus ``method``'s (which does not depend on the replicate)."""
        unet = self.rows[self.rows.method == "U-Net (L1)"][column].to_numpy()
        return unet - float(self.rows[self.rows.method == method][column].iloc[0])


def _image_scores(estimate: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {"MAE": image_metrics.mae(estimate, clean),
            "PSNR [dB]": float(np.mean([image_metrics.psnr(e, c, 1.0) for e, c in zip(estimate, clean)])),
            "SSIM": float(np.mean([image_metrics.ssim(e, c, 1.0) for e, c in zip(estimate, clean)]))}


def imputation_study(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu",
                     progress: bool = True) -> ImputationStudy:
    """Impute the T1 scan without fat suppression from the fat-suppressed one: copy, intensity map, U-Net."""
    data = sequences_data(config, seed).build()
    source, clean = data["test_input"][:, 0].numpy(), data["test_clean_target"][:, 0].numpy()
    edges, means = fit_intensity_map(data["train_input"].numpy(), data["train_target"].numpy(), config.mapping_bins)
    baselines = {"copy the source": source, "pixel-wise intensity map": apply_intensity_map(source, edges, means)}
    rows, per_slice = [], {}
    for name, estimate in baselines.items():
        rows.append({"method": name, "seed": None, **_image_scores(estimate, clean)})
        per_slice[name] = np.array([image_metrics.mae(e, c) for e, c in zip(estimate, clean)])
    example = {"source": source[0], "target (clean)": clean[0], "intensity map": baselines["pixel-wise intensity map"][0]}
    for job in imputation_jobs(config, seed):
        estimate = rst.apply_regressor(fetch(job, device, progress), data["test_input"])[:, 0].numpy()
        rows.append({"method": "U-Net (L1)", "seed": job.seed, **_image_scores(estimate, clean)})
        if job.seed == replicate_seed(seed, 0):
            per_slice["U-Net (L1)"] = np.array([image_metrics.mae(e, c) for e, c in zip(estimate, clean)])
            example["U-Net"] = estimate[0]
    return ImputationStudy(pd.DataFrame(rows), per_slice, example)
