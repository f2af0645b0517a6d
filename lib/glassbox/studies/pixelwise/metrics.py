"""Section 4 of the notes: restoration metrics on CT (windows, equal-MSE galleries, rank disagreements, conventions)."""
from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
from skimage import metrics as skmetrics

from glassbox.data import degrade, tissue_crops
from glassbox.measure import image_metrics
from glassbox.studies.pixelwise.config import ABDOMEN_WINDOW, PixelwiseConfig, PixelwiseError

# ------------------------------------------------------------------------------------------------
# Section 4: restoration metrics

def window(hu: np.ndarray, centre: float = ABDOMEN_WINDOW[0], width: float = ABDOMEN_WINDOW[1]) -> np.ndarray:
    """HU mapped linearly to [0, 1] over ``[centre - width / 2, centre + width / 2]`` and clipped."""
    if width <= 0:
        raise PixelwiseError(f"window width must be > 0 HU, got {width!r}")
    return np.clip((np.asarray(hu, dtype=np.float64) - (centre - width / 2)) / width, 0.0, 1.0)


def ct_examples(config: PixelwiseConfig, seed: int) -> dict[str, np.ndarray]:
    """``config.n_ct_test`` simulated slices at ``config.ct_size``: phantom, labels, low and full dose (HU)."""
    return tissue_crops.simulated_ct(config.n_ct_test, config.ct_size, config.dose, seed=1_000 + seed)


def metric_reference_check(low_w: np.ndarray, full_w: np.ndarray) -> pd.DataFrame:
    """Our MSE, NMSE, PSNR and SSIM beside scikit-image's for one image pair, with the absolute difference."""

    table = pd.DataFrame({
        "glassbox": [image_metrics.mse(low_w, full_w), image_metrics.nmse(low_w, full_w, "energy"),
                     image_metrics.nmse(low_w, full_w, "range"), image_metrics.psnr(low_w, full_w, 1.0),
                     image_metrics.ssim(low_w, full_w, 1.0)],
        "scikit-image": [skmetrics.mean_squared_error(full_w, low_w), skmetrics.normalized_root_mse(full_w, low_w) ** 2,
                         skmetrics.normalized_root_mse(full_w, low_w, normalization="min-max") ** 2,
                         skmetrics.peak_signal_noise_ratio(full_w, low_w, data_range=1.0),
                         skmetrics.structural_similarity(full_w, low_w, data_range=1.0)],
    }, index=["MSE", "NMSE (energy)", "NMSE (range)", "PSNR [dB]", "SSIM"])
    table["|difference|"] = (table["glassbox"] - table["scikit-image"]).abs()
    return table


def equal_mse_gallery(reference: np.ndarray, target_mse: float, data_range: float = 1.0,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every degradation kind of :mod:`glassbox.data.degrade` tuned to the same MSE against ``reference``.

    Returns the metrics table (one row per kind, with the strength used) and the degraded images.
    Equal MSE means equal PSNR; the SSIM column shows how differently the structure suffers.
    """
    rows, images = [], {}
    for kind in degrade.KINDS:
        chosen, image = degrade.match_mse(reference, kind, target_mse, seed=seed)
        images[kind] = image
        strength = {"noise": chosen.noise, "blur": chosen.blur, "shift": chosen.shift,
                    "contrast": 1 - chosen.gain, "offset": chosen.offset}[kind]
        rows.append({"degradation": kind, "strength": strength,
                     **image_metrics.restoration_metrics(image, reference, data_range)})
    return pd.DataFrame(rows), images


def rank_disagreements(table: pd.DataFrame, label: str = "degradation", tolerance: float = 0.1) -> pd.DataFrame:
    """Pairs of rows that PSNR and SSIM order differently (PSNR gap above ``tolerance`` dB)."""
    rows = []
    for (_, a), (_, b) in itertools.combinations(table.iterrows(), 2):
        psnr_gap, ssim_gap = a["PSNR [dB]"] - b["PSNR [dB]"], a["SSIM"] - b["SSIM"]
        if abs(psnr_gap) > tolerance and psnr_gap * ssim_gap < 0:
            better_psnr, better_ssim = (a, b) if psnr_gap > 0 else (b, a)
            rows.append({"better PSNR": better_psnr[label], "better SSIM": better_ssim[label],
                         "PSNR gap [dB]": abs(psnr_gap), "SSIM gap": abs(ssim_gap)})
    return pd.DataFrame(rows, columns=["better PSNR", "better SSIM", "PSNR gap [dB]", "SSIM gap"])


TYPICAL_DEGRADATIONS: dict[str, degrade.Degradation] = {
    "noise σ 0.04": degrade.Degradation(noise=0.04),
    "blur σ 1.5 px": degrade.Degradation(blur=1.5),
    "shift 1 px": degrade.Degradation(shift=1.0),
    "contrast × 0.8": degrade.Degradation(gain=0.8),
    "brightness + 0.06": degrade.Degradation(offset=0.06),
}


def degradation_table(reference: np.ndarray, degradations: Mapping[str, degrade.Degradation] = TYPICAL_DEGRADATIONS,
                      data_range: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """All restoration metrics of each named degradation of ``reference`` (one row per degradation)."""
    return pd.DataFrame([{"degradation": name,
                          **image_metrics.restoration_metrics(degrade.degrade(reference, d, seed), reference, data_range)}
                         for name, d in degradations.items()])


def convention_table(x_hu: np.ndarray, ref_hu: np.ndarray) -> pd.DataFrame:
    """One image pair scored under different conventions: what a metric's number means depends on them."""
    x_w, ref_w = window(x_hu), window(ref_hu)
    width = ABDOMEN_WINDOW[1]
    rows = [
        ("MSE", "HU", "none", image_metrics.mse(x_hu, ref_hu)),
        ("MSE", "abdomen window → [0, 1]", "none", image_metrics.mse(x_w, ref_w)),
        ("NMSE (energy)", "HU", "÷ Σ ref²", image_metrics.nmse(x_hu, ref_hu, "energy")),
        ("NMSE (energy)", "abdomen window → [0, 1]", "÷ Σ ref²", image_metrics.nmse(x_w, ref_w, "energy")),
        ("NMSE (range)", "HU", "÷ (max − min)²", image_metrics.nmse(x_hu, ref_hu, "range")),
        ("PSNR [dB]", "HU", f"data range {width:.0f} HU", image_metrics.psnr(x_hu, ref_hu, width)),
        ("PSNR [dB]", "HU", "data range 2000 HU", image_metrics.psnr(x_hu, ref_hu, 2000.0)),
        ("PSNR [dB]", "HU", "notes: max(ref)", image_metrics.psnr(x_hu, ref_hu, float(np.max(ref_hu)))),
        ("PSNR [dB]", "abdomen window → [0, 1]", "data range 1", image_metrics.psnr(x_w, ref_w, 1.0)),
        ("SSIM", "HU", "data range 2000 HU", image_metrics.ssim(x_hu, ref_hu, 2000.0)),
        ("SSIM", "abdomen window → [0, 1]", "data range 1", image_metrics.ssim(x_w, ref_w, 1.0)),
    ]
    return pd.DataFrame(rows, columns=["metric", "images", "normalisation", "value"])
