"""The three CT denoisers (Chen's CNN, WGAN-VGG, the perceptual network) and how they compare on the test set."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from glassbox.data import lowdose_ct
from glassbox.measure import invariance_spread as spread
from glassbox.measure import noise_power
from glassbox.measure.image_metrics import psnr, ssim
from glassbox.models.feature_nets import PerceptualFeatures
from glassbox.models.wgan_vgg import YangGenerator
from glassbox.studies.invariances.config import METHOD_NAMES, PAPER_VALUES, WINDOW_HU, InvarianceConfig
from glassbox.studies.invariances.ct_data import ChapterData
from glassbox.training import ct_denoisers as dn
from glassbox.training import tissue_features

# --- denoisers and their outputs ------------------------------------------------------------------------------


@dataclass
class Denoisers:
    """Chen's CNN, Yang's generator and the generator as it was after its L2 warm-up (``None`` without one)."""

    chen: nn.Module
    yang: nn.Module
    yang_warmup: nn.Module | None
    perceptual_record: dict[str, Any]
    records: dict[str, Any]

    def by_name(self) -> dict[str, nn.Module]:
        return {"Chen": self.chen, "Yang": self.yang}


def _perceptual(data: ChapterData, config: InvarianceConfig, seed: int, device: Any, progress: bool):
    inputs = data.sets["train"].full - 1.0  # network units -> HU / 1000, the feature network's input
    return tissue_features.pretrained_feature_autoencoder(inputs, config.perceptual, data_key=data.key, seed=seed,
                                                         device=device, layers=("relu3_2",), progress=progress)


def _chen(data: ChapterData, config: InvarianceConfig, seed: int, device: Any, progress: bool):
    return dn.pretrained_chen(data.sets["train"], config.chen, data_key=data.key, seed=seed, device=device,
                              progress=progress)


def _yang(data: ChapterData, config: InvarianceConfig, seed: int, device: Any, progress: bool):
    def factory() -> Any:

        features, _ = _perceptual(data, config, seed, device, progress)
        return PerceptualFeatures(features, offset=1.0, scale=1.0).to(device)

    return dn.pretrained_wgan_vgg(data.sets["train"], config.yang, data_key=data.key,
                                  featurenet_config=config.perceptual, seed=seed, device=device, progress=progress,
                                  features_factory=factory)


def train_denoisers(data: ChapterData, config: InvarianceConfig, *, seed: int = 0, device: Any = "cpu",
                    progress: bool = True) -> Denoisers:
    """Chen's CNN (L2) and WGAN-VGG whose perceptual loss uses the CT autoencoder's ``relu3_2`` (store-backed)."""
    chen, chen_record = _chen(data, config, seed, device, progress)
    _, ae_record = _perceptual(data, config, seed, device, progress)
    yang, yang_record = _yang(data, config, seed, device, progress)
    warmup = None
    if yang_record.get("warmup_state_dict"):
        warmup = YangGenerator()
        warmup.load_state_dict(yang_record["warmup_state_dict"])
        warmup = warmup.eval().requires_grad_(False).to(device)
    return Denoisers(chen=chen, yang=yang, yang_warmup=warmup, perceptual_record=ae_record,
                     records={"Chen": chen_record, "Yang": yang_record})


def denoise(net: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """``net(images)`` without gradients, in batches, on the network's device; returned on the CPU."""
    device = next(net.parameters()).device
    with torch.no_grad():
        return torch.cat([net(chunk.to(device)).cpu() for chunk in images.split(batch_size)])


@dataclass
class DenoisingComparison:
    """Per test slice: PSNR / SSIM / RMSE against the full dose; noise power spectra per method (simulated data)."""

    per_slice: dict[str, dict[str, np.ndarray]]
    images: dict[str, np.ndarray]
    nps_frequencies: np.ndarray | None = None
    nps_radial: dict[str, np.ndarray] = field(default_factory=dict)       # (slices, bins) per method
    nps_mean_frequency: dict[str, np.ndarray] = field(default_factory=dict)  # per slice
    nps_noise_sd: dict[str, np.ndarray] = field(default_factory=dict)       # per slice
    nps_bootstrap: dict[str, np.ndarray] = field(default_factory=dict)      # mean frequency per bootstrap draw
    n_rois: int = 0


def window_quality(estimate: Tensor, reference: Tensor) -> dict[str, np.ndarray]:
    """Per image: PSNR (dB) and SSIM of the images clipped to :data:`WINDOW_HU` and mapped to [0, 1] (data range 1,
    as ldct-benchmark scores windowed slices), and RMSE (HU) on the same window."""
    level, width = WINDOW_HU
    lo, hi = level - width / 2, level + width / 2
    a = (spread.window_hu(estimate, WINDOW_HU) - lo) / (hi - lo)
    b = (spread.window_hu(reference, WINDOW_HU) - lo) / (hi - lo)
    return {"psnr": np.array([psnr(a[i], b[i], 1.0) for i in range(a.shape[0])]),
            "ssim": np.array([ssim(a[i, 0], b[i, 0], 1.0) for i in range(a.shape[0])]),
            "rmse_hu": spread.rmse_hu(estimate, reference, WINDOW_HU).numpy()}


def _outputs(nets: Denoisers, low: Tensor) -> dict[str, Tensor]:
    out = {"low": low, "Chen": denoise(nets.chen, low), "Yang": denoise(nets.yang, low)}
    if nets.yang_warmup is not None:
        out["warmup"] = denoise(nets.yang_warmup, low)
    return out


def compare_denoisers(data: ChapterData, nets: Denoisers, config: InvarianceConfig, *, seed: int = 0
                      ) -> DenoisingComparison:
    """Quality of each output on the test slices and, with a second scan (simulated data), the noise power
    spectrum of each output from the difference of the two scans' outputs (anatomy cancels)."""
    low, full = data.sets["test_slices"].low, data.sets["test_slices"].full
    outputs = _outputs(nets, low)
    per_slice = {name: window_quality(out, full) for name, out in outputs.items()}
    images = {name: lowdose_ct.denormalize(out[:, 0]).numpy() for name, out in outputs.items()}
    images["full"] = lowdose_ct.denormalize(full[:, 0]).numpy()
    result = DenoisingComparison(per_slice=per_slice, images=images)
    if data.rescan is None:
        return result
    second_low = torch.from_numpy(lowdose_ct.normalize(np.concatenate([data.rescan[p][0] for p in data.splits["test"]])
                                                       )[:, None].astype(np.float32))
    second_full = np.concatenate([data.rescan[p][1] for p in data.splits["test"]])
    second = {name: lowdose_ct.denormalize(out[:, 0]).numpy() for name, out in _outputs(nets, second_low).items()}
    second["full"] = second_full
    corners = noise_power.body_rois(images["full"], config.nps_roi)
    if not corners:
        return result
    owner = np.array([s for s, _, _ in corners])
    slices = np.unique(owner)
    for name in images:
        rois = noise_power.cut_rois(noise_power.difference_noise(images[name], second[name]), corners, config.nps_roi)
        nps = noise_power.nps_2d(rois, data.pixel_mm)
        per = np.stack([nps[owner == s].mean(0) for s in slices])
        result.nps_frequencies, result.nps_radial[name] = noise_power.radial_profile(per, data.pixel_mm)
        result.nps_mean_frequency[name] = noise_power.mean_frequency(per, data.pixel_mm)
        result.nps_noise_sd[name] = noise_power.noise_sd(per, data.pixel_mm)
        draws = np.random.default_rng(seed).integers(0, len(slices), (config.n_boot, len(slices)))
        result.nps_bootstrap[name] = np.array([noise_power.mean_frequency(per[d].mean(0), data.pixel_mm)
                                               for d in draws])
    result.n_rois = len(corners)
    return result


def denoising_table(comparison: DenoisingComparison) -> Any:
    """Mean PSNR, SSIM, RMSE (window) per output with the paper's orientation values, and the NPS summary."""

    rows = {}
    for name, values in comparison.per_slice.items():
        row = {k: float(np.mean(v)) for k, v in values.items()}
        if name in comparison.nps_mean_frequency:
            row |= {"noise SD (HU)": float(np.mean(comparison.nps_noise_sd[name])),
                    "NPS mean freq. (1/mm)": float(np.mean(comparison.nps_mean_frequency[name]))}
        paper = PAPER_VALUES["ldct_benchmark_abdomen"].get(METHOD_NAMES[name])
        row |= {"PSNR, ldct-benchmark (Mayo)": paper["psnr"] if paper else np.nan,
                "SSIM, ldct-benchmark (Mayo)": paper["ssim"] if paper else np.nan}
        rows[METHOD_NAMES[name]] = row
    if "full" in comparison.nps_mean_frequency:
        rows[METHOD_NAMES["full"]] = {"noise SD (HU)": float(np.mean(comparison.nps_noise_sd["full"])),
                                      "NPS mean freq. (1/mm)": float(np.mean(comparison.nps_mean_frequency["full"]))}
    return pd.DataFrame(rows).T
