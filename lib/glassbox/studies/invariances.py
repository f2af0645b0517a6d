"""The invariances chapter: what a CT denoiser ignores, after Eulig et al. (seeds 002 / 004).

Rombach et al.'s method (ECCV 2020) as adapted to CT: split the denoiser as ``f = Psi o Phi`` at a layer,
``z = Phi(x)``; a VAE gives a complete representation ``zbar = E(x)``; a conditional INN maps ``zbar`` to
``v ~ N(0, I)`` given ``z``; decoding ``D(t^-1(v | z))`` for fresh ``v`` gives images the layer cannot tell from
``x``. Every spread is measured against the method's own floor -- the spread it reports for maps that have no
invariance (the identity, and layer 1, a convolution from one channel to many) -- with an interval over test
images, next to the VAE's reconstruction error.

The chapter calls, in order: :func:`prepare_data`, :func:`train_denoisers`, :func:`compare_denoisers`
(quality and noise power spectra, the paper's Fig. 1), :func:`train_vaes` (low-dose VAE and, for the target
domain, a full-dose VAE), :func:`study_probes` (one cINN per probe, :func:`probes`), then builds an
:class:`InvarianceResult`; its tables, figures, :func:`claims` and :func:`checks` are functions of that.
:func:`run` does all of it in one call; :func:`plan` lists every model it trains as store tasks.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.core import checks as argcheck
from glassbox.core.store import get_or_compute
from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct, phantoms
from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig, PairedCTDataset
from glassbox.measure import invariance_spread as spread
from glassbox.measure import noise_power
from glassbox.measure.claims import Check, Claim, Deviation, apply_checks, interval_rule, quality_check, require
from glassbox.measure.image_metrics import psnr, ssim
from glassbox.measure.stats import interval
from glassbox.models.chen_cnn import CHEN_LAYERS
from glassbox.models.cinn import InvarianceINN
from glassbox.models.common import InvarianceError, n_layers, truncate
from glassbox.models.vae import VAE, check_patch
from glassbox.models.wgan_vgg import YANG_LAYERS, YangGenerator
from glassbox.training import ct_denoisers as dn
from glassbox.training import tissue_features, vae_cinn
from glassbox.training.ct_denoisers import ChenConfig, YangConfig
from glassbox.training.tissue_features import FeatureAEConfig
from glassbox.training.vae_cinn import CINNConfig, VAEConfig

CHAPTER = "invariances"

WINDOW_HU = (40.0, 400.0)
"""The analysed window (level, width) in HU: abdomen, [-160, 240] HU. Every HU number of the chapter -- spreads,
reconstruction errors, PSNR and SSIM -- is computed on images clipped to it, as ldct-benchmark scores windowed
images; it is also the display window."""

DOSE = 0.1
"""Low-dose level: 10 % of the full dose. The TCIA "LDCT-and-Projection-data" collection (McCollough et al.
2020) that Eulig et al. use gives 10 % dose for its chest scans and 25 % for abdomen and head; on our 128 x 128
grid (3.1 mm pixels) quarter dose leaves so little noise that a briefly trained denoiser cannot beat its input,
so the abdominal phantoms are scanned at the chest protocol's 10 %. (The 2016 AAPM Grand Challenge data are
quarter dose.)"""

SPLIT = (0.7, 0.2, 0.1)
"""Train / validation / test fractions of the patients (Eulig et al.: "70%/20%/10% ... across all patients")."""


@dataclass(frozen=True)
class InvarianceConfig:
    """Every knob of the ``invariances`` chapter (one per profile in :data:`PROFILES`).

    ``data`` simulates the paired slices; patients are split :data:`SPLIT`; denoisers, VAEs and cINNs train on
    ``patches_per_patient`` patches of ``patch_size`` from every training patient (the same number from each:
    patient-weighted sampling). ``perceptual`` is the autoencoder behind WGAN-VGG's perceptual loss. The
    analysis uses ``n_test_patches`` test patches with ``n_samples`` invariance samples each (the first
    ``n_check_samples`` of them also pass through ``Phi`` and ``f`` for the trust checks); ``nps_roi`` is the
    side of the noise-power regions (pixels) and ``n_boot`` the bootstrap size of its intervals.
    """

    data: CTDataConfig = CTDataConfig(dose=DOSE, split_fractions=SPLIT)
    patch_size: int = 32
    patches_per_patient: int = 96
    chen: ChenConfig = ChenConfig()
    yang: YangConfig = YangConfig()
    perceptual: FeatureAEConfig = FeatureAEConfig()
    vae: VAEConfig = VAEConfig()
    cinn: CINNConfig = CINNConfig()
    chen_layers: tuple[int, ...] = CHEN_LAYERS
    yang_layers: tuple[int, ...] = YANG_LAYERS
    target_domain: bool = True
    n_test_patches: int = 16
    n_shown_images: int = 2
    n_samples: int = 250
    n_shown_samples: int = 5
    n_check_samples: int = 50
    n_heldout: int = 256
    nps_roi: int = 32
    n_boot: int = 2000

    def __post_init__(self) -> None:
        check_patch(self.patch_size)
        if self.patch_size > self.data.n:
            raise InvarianceError(f"patch_size ({self.patch_size}) must be at most the slice size data.n ({self.data.n})")
        for name in ("patches_per_patient", "n_test_patches", "n_shown_images", "n_samples", "n_shown_samples",
                     "n_check_samples", "n_heldout", "nps_roi", "n_boot"):
            argcheck.integer(getattr(self, name), name, error=InvarianceError)
        if self.n_samples < 2:
            raise InvarianceError(f"n_samples must be at least 2 (a standard deviation needs two), got {self.n_samples}")
        if self.n_shown_samples > self.n_samples or self.n_shown_images > self.n_test_patches:
            raise InvarianceError("n_shown_samples must be <= n_samples and n_shown_images <= n_test_patches")
        if self.n_test_patches < 3:
            raise InvarianceError("n_test_patches must be at least 3 (intervals over images, other-image references)")
        for name, limit in (("chen_layers", 5), ("yang_layers", 15)):
            layers = getattr(self, name)
            if not layers or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit for k in layers) \
                    or list(layers) != sorted(set(layers)):
                raise InvarianceError(f"{name} must be increasing layer numbers in [1, {limit}], got {layers!r}")
        if self.nps_roi > self.data.n // 2:
            raise InvarianceError(f"nps_roi ({self.nps_roi}) must be at most half the slice size ({self.data.n})")


PROFILES: dict[str, InvarianceConfig] = {
    # seconds: tiny everything, a handful of samples
    "smoke": InvarianceConfig(
        data=CTDataConfig(n=64, n_patients=3, slices_per_patient=2, dose=DOSE, split_fractions=SPLIT),
        patch_size=32, patches_per_patient=16,
        chen=ChenConfig(epochs=1, batch_size=16, lr=1e-3),
        yang=YangConfig(epochs=1, batch_size=4, lr=1e-4, n_critic=1, critic_width=4, pretrain_epochs=1),
        perceptual=FeatureAEConfig(base=4, epochs=1, batch_size=16),
        vae=VAEConfig(latent_dim=8, width=4, n_res=0, epochs=1, batch_size=16),
        cinn=CINNConfig(hidden=16, emb_dim=8, embed_width=4, epochs=1, batch_size=16),
        n_test_patches=3, n_shown_images=1, n_samples=8, n_shown_samples=2, n_check_samples=8, n_heldout=8,
        nps_roi=16, n_boot=50),
    # minutes on one CPU thread: 30 patients of 8 slices at 128 x 128, 32 x 32 patches, short trainings. Measured
    # 2026-12-02 (loaded 2-core machine, 1 thread): with Chen 6, WGAN 12 and cINN 6 epochs the chapter took 558 s CPU
    # (19.5 min wall under load), over the 8-minute budget; epochs cut to 5 / 9 / 4 (about 140 s CPU less, estimated)
    "quick": InvarianceConfig(
        data=CTDataConfig(n=128, n_patients=30, slices_per_patient=8, dose=DOSE, split_fractions=SPLIT),
        patch_size=32, patches_per_patient=96,
        chen=ChenConfig(epochs=5, batch_size=8, lr=1e-3),
        yang=YangConfig(epochs=9, batch_size=16, lr=1e-4, n_critic=4, critic_width=16, pretrain_epochs=3,
                        pretrain_batch_size=8, pretrain_lr=1e-3),
        perceptual=FeatureAEConfig(base=16, epochs=4, batch_size=32),
        vae=VAEConfig(latent_dim=256, width=16, n_res=0, bottom=16, spatial=True, epochs=12, batch_size=32, lr=1e-3),
        cinn=CINNConfig(hidden=256, emb_dim=64, embed_width=16, epochs=4, batch_size=32, lr=5e-4),
        n_test_patches=16, n_shown_images=2, n_samples=250, n_shown_samples=5, n_heldout=256, nps_roi=32),
    # GPU: the paper's protocol where it is stated (patches 64, WGAN-VGG hyper-parameters, 4 blocks, 250 samples)
    "paper": InvarianceConfig(
        data=dataclasses.replace(DATA_PROFILES["paper"], dose=DOSE, split_fractions=SPLIT),
        patch_size=64, patches_per_patient=768,
        chen=ChenConfig(epochs=100, batch_size=68, lr=1.584e-4),
        yang=YangConfig(epochs=100, batch_size=128, lr=1e-5, n_critic=4, critic_width=64, pretrain_epochs=0),
        perceptual=FeatureAEConfig(base=32, epochs=30, batch_size=64, lr=1e-3),
        vae=VAEConfig(latent_dim=512, width=64, n_res=2, bottom=16, spatial=True, epochs=200, batch_size=64, lr=1e-4),
        cinn=CINNConfig(hidden=1024, hidden_depth=2, emb_dim=256, embed_width=64, epochs=200, batch_size=64,
                        lr=1e-4),
        n_test_patches=64, n_shown_images=2, n_samples=250, n_shown_samples=5, n_heldout=1024, nps_roi=64),
}


PAPER_VALUES: dict[str, Any] = {
    "protocol": {"cinn_blocks": 4, "invariance_samples": 250, "shown_samples": 5, "chen_layers": [1, 3, 5],
                 "yang_layers": [1, 7, 13], "patient_split": [0.7, 0.2, 0.1], "dose_chest": 0.10,
                 "dose_abdomen_head": 0.25},
    "yang_et_al_2018": {"wgan_gp_lambda": 10, "perceptual_lambda": 0.1, "n_critic": 4, "adam_lr": 1e-5,
                        "adam_betas": [0.5, 0.9], "batch_size": 128, "patch_size": 64},
    "reference_code_vae_logvar_clamp": [-30.0, 10.0],
    # the ICIFXCT paper reports no numbers for Fig. 1; for orientation only, ldct-benchmark's test values on real
    # Mayo abdomen slices (different data and noise): PSNR [dB], SSIM
    "ldct_benchmark_abdomen": {"low dose x": {"psnr": 29.12, "ssim": 0.856},
                               "Chen (L2)": {"psnr": 32.74, "ssim": 0.907},
                               "Yang (WGAN-VGG)": {"psnr": 30.91, "ssim": 0.893}},
}
"""What Eulig et al. (and, for WGAN-VGG's hyper-parameters, Yang et al.) state, stored beside our numbers."""


NETWORKS = ("Chen", "Yang")
LOW, FULL = "x", "y"
METHOD_NAMES = {"low": "low dose x", "Chen": "Chen (L2)", "Yang": "Yang (WGAN-VGG)",
                "warmup": "Yang before adversarial training", "full": "full dose y"}


# --- data --------------------------------------------------------------------------------------------------


@dataclass
class ChapterData:
    """The chapter's images: patient split, training/validation/test patches, test slices, analysed patches and
    (simulated data only) a second scan of the test patients for noise power spectra."""

    sets: dict[str, PairedCTDataset]
    splits: dict[str, list[str]]
    key: dict[str, Any]
    test_low: Tensor
    test_full: Tensor
    rescan: dict[str, tuple[np.ndarray, np.ndarray]] | None
    pixel_mm: float | None

    @property
    def heldout(self) -> tuple[Tensor, Tensor]:
        return self.sets["val"].low, self.sets["val"].full


def data_key(config: InvarianceConfig, seed: int, data_dir: str | Path | None = None, *,
             pairs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """What identifies the chapter's training data (part of every store key); ``pairs`` come from
    :func:`glassbox.data.lowdose_ct.get_pairs` ``(config.data, seed, data_dir)``.

    The key holds the content fingerprint of ``pairs`` (:func:`glassbox.data.lowdose_ct.pairs_fingerprint`), never
    the folder's path: changed DICOM files give new keys (no stale models), a moved folder the same ones. With a
    ``data_dir``, ``pairs`` are required; simulated data are identified by their configuration and seed.
    """
    key = {"data": config.data, "patch_size": config.patch_size, "patches_per_patient": config.patches_per_patient,
           "seed": seed}
    if data_dir is not None and pairs is None:
        raise InvarianceError(f"data_key: with data_dir={str(data_dir)!r}, pass pairs= (the slices read from it) "
                              "so that the store key holds their content, not the folder's path")
    if pairs is not None:
        key["pairs"] = lowdose_ct.pairs_fingerprint(pairs)
    return key


def _rescan_entry(config: InvarianceConfig, seed: int, ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
    return "ct-rescan", {"data": config.data, "seed": seed, "ids": list(ids), "stream": 1}


def _rescan(config: InvarianceConfig, seed: int, ids: Sequence[str], progress: bool
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The test patients scanned a second time (simulated data only), through the store."""
    name, key = _rescan_entry(config, seed, ids)
    return get_or_compute(name, key, lambda: lowdose_ct.rescan_patients(config.data, seed, ids), seed=seed,
                          progress=progress)


def _splits(pairs: Mapping[str, Any], config: InvarianceConfig, seed: int) -> dict[str, list[str]]:
    splits = lowdose_ct.split_patients(list(pairs), config.data.split_fractions, seed)
    missing = [name for name in lowdose_ct.SPLITS if not splits[name]]
    if missing:
        raise InvarianceError(f"the data have too few patients for the splits {missing}; add patients")
    return splits


def pick_test_patches(dataset: PairedCTDataset, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` test patches with the most structure (std of the windowed full-dose patch): (low, full).

    Homogeneous patches show little; the choice depends only on the full-dose image, not on any network.
    """
    n = argcheck.integer(n, "n", error=InvarianceError)
    if n > len(dataset):
        raise InvarianceError(f"asked for {n} test patches but the test set has {len(dataset)}")
    structure = spread.window_hu(dataset.full, WINDOW_HU).flatten(1).std(1)
    order = torch.argsort(structure, descending=True, stable=True)[:n]
    return dataset.low[order], dataset.full[order]


def prepare_data(config: InvarianceConfig, *, seed: int = 0, data_dir: str | Path | None = None,
                 progress: bool = True) -> ChapterData:
    """Pairs (simulated through the store, or read from ``data_dir``), the patient split, patches and test set."""
    pairs = lowdose_ct.get_pairs(config.data, seed, data_dir, progress=progress)
    splits = _splits(pairs, config, seed)
    sets = {name: PairedCTDataset(pairs, ids, patch_size=config.patch_size, seed=seed,
                                  patches_per_patient=config.patches_per_patient) for name, ids in splits.items()}
    sets["test_slices"] = PairedCTDataset(pairs, splits["test"])
    test_low, test_full = pick_test_patches(sets["test"], config.n_test_patches)
    rescan, pixel = None, None
    if data_dir is None:
        rescan = _rescan(config, seed, splits["test"], progress)
        pixel = phantoms.pixel_mm(config.data.n)
    return ChapterData(sets=sets, splits=splits, key=data_key(config, seed, data_dir, pairs=None if data_dir is None else pairs), test_low=test_low,
                       test_full=test_full, rescan=rescan, pixel_mm=pixel)


def data_table(data: ChapterData) -> Any:
    """Patients, images and image size per split."""
    import pandas as pd

    return pd.DataFrame({name: {"patients": len(d.ids), "images": len(d),
                                "size": f"{d.low.shape[-2]}x{d.low.shape[-1]}",
                                "patches per patient": (len(d) // len(d.ids)) if name != "test_slices" else "-"}
                         for name, d in data.sets.items()}).T


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
        from glassbox.models.feature_nets import PerceptualFeatures

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
    import pandas as pd

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


# --- VAEs --------------------------------------------------------------------------------------------------


def _vae_images(data: ChapterData, domain: str) -> Tensor:
    return data.sets["train"].low if domain == LOW else data.sets["train"].full


def _vae(data: ChapterData, config: InvarianceConfig, domain: str, seed: int, device: Any, progress: bool):
    return vae_cinn.pretrained_vae(_vae_images(data, domain), config.vae, data_key=data.key, seed=seed, device=device,
                                   progress=progress, domain="low dose" if domain == LOW else "full dose")


def domains(config: InvarianceConfig) -> tuple[str, ...]:
    """The image domains with a VAE: low dose, and full dose when the target domain is analysed."""
    return (LOW, FULL) if config.target_domain else (LOW,)


def train_vaes(data: ChapterData, config: InvarianceConfig, *, seed: int = 0, device: Any = "cpu",
               progress: bool = True) -> dict[str, VAE]:
    """The low-dose VAE (``"x"``) and, with ``target_domain``, the full-dose VAE (``"y"``), from the store."""
    return {d: _vae(data, config, d, seed, device, progress)[0] for d in domains(config)}


def vae_errors(vae: VAE, images: Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Per image: RMSE (HU) of ``D(E(x))`` (posterior mean) against ``x``, in the window and unclipped."""
    device = next(vae.parameters()).device
    with torch.no_grad():
        recon = torch.cat([vae.reconstruct(c.to(device)).cpu() for c in images.split(batch_size)])
    unclipped = lowdose_ct.HU_SCALE * (recon.double() - images.double()).pow(2).flatten(1).mean(1).sqrt()
    return {"window": spread.rmse_hu(recon, images, WINDOW_HU).numpy(), "unclipped": unclipped.numpy()}


def vae_table(data: ChapterData, vaes: Mapping[str, VAE]) -> Any:
    """RMSE (HU) of each VAE on the held-out and the analysed test patches, beside the low-dose noise."""
    import pandas as pd

    val_low, val_full = data.heldout
    rows = {}
    for domain, vae in vaes.items():
        held = vae_errors(vae, val_low if domain == LOW else val_full)
        test = vae_errors(vae, data.test_low if domain == LOW else data.test_full)
        name = "VAE of low-dose x" if domain == LOW else "VAE of full-dose y"
        rows[name] = {"RMSE window, held-out": held["window"].mean(), "RMSE unclipped, held-out": held["unclipped"].mean(),
                      "RMSE window, analysed test patches": test["window"].mean()}
    noise = spread.rmse_hu(val_low, val_full, WINDOW_HU).numpy()
    rows["x vs y (low-dose noise)"] = {"RMSE window, held-out": noise.mean(),
                                       "RMSE window, analysed test patches":
                                           spread.rmse_hu(data.test_low, data.test_full, WINDOW_HU).numpy().mean(),
                                       "RMSE unclipped, held-out": float(lowdose_ct.HU_SCALE * (val_low - val_full)
                                                                         .double().pow(2).flatten(1).mean(1).sqrt().mean())}
    return pd.DataFrame(rows).T


# --- probes: one cINN each ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One cINN: the representation it is conditioned on and the domain its VAE draws in.

    ``network`` is ``"Chen"``, ``"Yang"`` or ``"identity"`` (the synthetic injective map, ``layer`` 0: the
    condition is the image itself -- the method's floor); ``domain`` ``"x"`` (low-dose VAE) or ``"y"``
    (full-dose VAE: the invariances shown in the target domain).
    """

    network: str
    layer: int
    domain: str

    @property
    def label(self) -> str:
        name = "identity" if self.network == "identity" else f"{self.network} {self.layer}"
        return name if self.domain == LOW else f"{name} (target y)"

    @property
    def store_name(self) -> str:
        return self.network if self.domain == LOW else f"{self.network}->{FULL}"


def probes(config: InvarianceConfig) -> list[Probe]:
    """Floor, Chen's and Yang's analysed layers in the low-dose domain; with ``target_domain``, the full-dose
    floor and each network after its last layer (the output) in the full-dose domain."""
    out = [Probe("identity", 0, LOW)] + [Probe("Chen", k, LOW) for k in config.chen_layers] \
        + [Probe("Yang", k, LOW) for k in config.yang_layers]
    if config.target_domain:
        out += [Probe("identity", 0, FULL), Probe("Chen", 5, FULL), Probe("Yang", 15, FULL)]
    return out


def cinn_key(config: InvarianceConfig, key: Mapping[str, Any], probe: Probe) -> dict[str, Any]:
    """What a cINN's store entry depends on besides its own configuration: data, denoiser, feature net and VAE."""
    out: dict[str, Any] = {"data": dict(key), "vae": config.vae, "domain": probe.domain}
    if probe.network == "Chen":
        out["chen"] = config.chen
    elif probe.network == "Yang":
        out |= {"yang": config.yang, "perceptual": config.perceptual}
    return out


def _phi(probe: Probe, net: nn.Module | None) -> nn.Module:
    if probe.network == "identity":
        return nn.Identity()
    if net is None:
        raise InvarianceError(f"probe {probe.label} needs {probe.network}'s network")
    return truncate(net, probe.layer)


def _condition_images(data: ChapterData, probe: Probe, which: str = "train") -> tuple[Tensor, Tensor]:
    """(images Phi sees, images the VAE encodes) for a probe: the identity floor of the target domain sees y."""
    low, full = ((data.sets["train"].low, data.sets["train"].full) if which == "train" else
                 data.heldout if which == "heldout" else (data.test_low, data.test_full))
    seen = full if (probe.network == "identity" and probe.domain == FULL) else low
    return seen, (low if probe.domain == LOW else full)


def _cinn(data: ChapterData, config: InvarianceConfig, probe: Probe, net: nn.Module | None, vae: VAE, seed: int,
          device: Any, progress: bool) -> tuple[InvarianceINN, dict[str, Any]]:
    seen, encoded = _condition_images(data, probe)
    return vae_cinn.pretrained_invariance_inn(
        probe.store_name, None, probe.layer, vae, seen, config.cinn, key=cinn_key(config, data.key, probe), seed=seed,
        device=device, progress=progress, phi=_phi(probe, net), vae_images=None if probe.domain == LOW else encoded)


@dataclass
class ProbeResult:
    """Invariance samples of one probe on the analysed test patches, per image, with the trust checks."""

    probe: Probe
    spread_hu: np.ndarray          # (M,) mean pixel-wise std over samples, in the window
    flat_spread_hu: np.ndarray     # (M,) the same over homogeneous tissue only (NaN: none in the patch)
    structure_spread_hu: np.ndarray  # (M,) the same over the rest of the body: edges and anatomical detail
    std_maps: np.ndarray           # (M, p, p) HU
    shown: np.ndarray              # (n_shown_images, n_shown_samples, p, p) HU
    prior_spread_hu: float         # spread of decoded N(0, I) codes: a layer that kept nothing
    latent: dict[str, Any]         # v on held-out data (latent_statistics)
    inversion_error: float
    history: list[dict[str, float]]
    phi_similarity: np.ndarray | None = None        # (M,) Phi(sample) vs z
    phi_similarity_vae: np.ndarray | None = None    # Phi(D(E(x))) vs z
    phi_similarity_other: np.ndarray | None = None  # Phi(other test images) vs z
    f_rmse_hu: np.ndarray | None = None             # f(sample) vs f(x)
    f_rmse_vae_hu: np.ndarray | None = None
    f_rmse_other_hu: np.ndarray | None = None


def flat_region_mask(full: Tensor, max_range_hu: float = 40.0) -> Tensor:
    """Pixels inside the body where the (3x3-smoothed) full-dose image varies by less than ``max_range_hu``
    over a 7x7 neighbourhood: homogeneous tissue, where what varies is noise, not anatomy."""
    hu = lowdose_ct.denormalize(full.double())
    smooth = F.avg_pool2d(hu, 3, stride=1, padding=1, count_include_pad=False)
    local_range = F.max_pool2d(smooth, 7, stride=1, padding=3) + F.max_pool2d(-smooth, 7, stride=1, padding=3)
    return (local_range < max_range_hu) & (hu > -500.0)


def prior_spread(vae: VAE, n_samples: int, *, seed: int = 0) -> float:
    """Mean pixel-wise std (HU, window) of ``D(v)``, ``v ~ N(0, I)``: the spread if a layer kept no information."""
    device = next(vae.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    images = spread.decode_samples(lambda v: v, vae.decode, vae.latent_dim, max(2, n_samples), generator, device)
    return float(spread.spread_map(images.cpu(), WINDOW_HU).mean())


def analyse_probe(probe: Probe, model: InvarianceINN, vae: VAE, net: nn.Module | None, low: Tensor, full: Tensor, *,
                  n_samples: int, n_shown_images: int, n_shown_samples: int, n_check_samples: int = 50,
                  seed: int = 0) -> dict[str, Any]:
    """Sample ``n_samples`` invariances for each analysed patch; for network probes in the low-dose domain also
    Rombach et al.'s checks on the first ``n_check_samples`` (Phi of a sample vs z, f of a sample vs f(x), against
    the VAE's own reconstruction and other test images). Returns the per-image arrays of :class:`ProbeResult`."""
    device = next(model.parameters()).device
    seen = full if (probe.network == "identity" and probe.domain == FULL) else low
    phi = _phi(probe, net).to(device)
    checked = probe.network != "identity" and probe.domain == LOW
    f = net.to(device) if checked else None
    generator = torch.Generator().manual_seed(seed)
    mask = flat_region_mask(full)[:, 0].numpy()
    body = (lowdose_ct.denormalize(full.double()) > -500.0)[:, 0].numpy()
    out: dict[str, list] = {k: [] for k in ("spread", "maps", "shown", "sim", "f")}
    with torch.no_grad():
        z = phi(seen.to(device))
        if checked:
            x = low.to(device)
            recon = vae.reconstruct(x)
            fx, centre = f(x), z.mean(dim=(0, 2, 3), keepdim=True)
        for i in range(low.shape[0]):
            h = model.embed(z[i:i + 1])
            samples = spread.decode_samples(lambda v, h=h: model.flow.inverse(v, h.expand(v.shape[0], -1)),
                                            vae.decode, vae.latent_dim, n_samples, generator, device)
            std = spread.spread_map(samples.cpu(), WINDOW_HU).numpy()
            out["maps"].append(std)
            if i < n_shown_images:
                out["shown"].append(lowdose_ct.denormalize(samples[:n_shown_samples, 0]).cpu().numpy())
            if checked:
                z_s = torch.cat([phi(c) for c in samples[:n_check_samples].split(64)])
                f_s = torch.cat([f(c) for c in samples[:n_check_samples].split(64)])
                out["sim"].append(float(spread.centred_cosine(z_s, z[i:i + 1], centre).mean()))
                out["f"].append(float(spread.rmse_hu(f_s.cpu(), fx[i:i + 1].cpu().expand_as(f_s), WINDOW_HU).mean()))
        maps = np.stack(out["maps"])
        result: dict[str, Any] = {"spread_hu": maps.mean(axis=(1, 2)), "flat_spread_hu": spread.masked_mean(maps, mask),
                                  "structure_spread_hu": spread.masked_mean(maps, body & ~mask),
                                  "std_maps": maps, "shown": np.stack(out["shown"])}
        if checked:
            m = low.shape[0]
            others = [[j for j in range(m) if j != i] for i in range(m)]
            result |= {
                "phi_similarity": np.array(out["sim"]),
                "phi_similarity_vae": spread.centred_cosine(phi(recon), z, centre).cpu().numpy(),
                "phi_similarity_other": np.array([float(spread.centred_cosine(z[o], z[i:i + 1], centre).mean())
                                                  for i, o in enumerate(others)]),
                "f_rmse_hu": np.array(out["f"]),
                "f_rmse_vae_hu": spread.rmse_hu(f(recon).cpu(), fx.cpu(), WINDOW_HU).numpy(),
                "f_rmse_other_hu": np.array([float(spread.rmse_hu(fx[o].cpu(), fx[i:i + 1].cpu().expand_as(fx[o]),
                                                                  WINDOW_HU).mean()) for i, o in enumerate(others)])}
        v = torch.randn((n_samples, vae.latent_dim), generator=generator).to(device)
        h = model.embed(z[:1]).expand(n_samples, -1)
        result["inversion_error"] = float((model.flow(model.flow.inverse(v, h), h)[0] - v).abs().max())
    return result


def study_probes(data: ChapterData, nets: Denoisers, vaes: Mapping[str, VAE], config: InvarianceConfig, *,
                 seed: int = 0, device: Any = "cpu", progress: bool = True) -> list[ProbeResult]:
    """Train (or load) the cINN of every probe, check ``v`` on held-out data and sample the analysed patches.

    The same ``v`` draws serve every probe (the generator restarts from ``seed`` for each), as in the slides."""
    results = []
    priors = {d: prior_spread(vae, config.n_samples, seed=seed + 1) for d, vae in vaes.items()}
    for probe in probes(config):
        vae, net = vaes[probe.domain], nets.by_name().get(probe.network)
        model, record = _cinn(data, config, probe, net, vae, seed, device, progress)
        seen, encoded = _condition_images(data, probe, "heldout")
        latent = vae_cinn.latent_statistics(model, _phi(probe, net).to(device), vae, seen[:config.n_heldout],
                                            seed=seed + 2, vae_images=encoded[:config.n_heldout])
        arrays = analyse_probe(probe, model, vae, net, data.test_low, data.test_full, n_samples=config.n_samples,
                               n_shown_images=config.n_shown_images, n_shown_samples=config.n_shown_samples,
                               n_check_samples=config.n_check_samples, seed=seed + 3)
        results.append(ProbeResult(probe=probe, prior_spread_hu=priors[probe.domain], latent=latent,
                                   history=record["history"], **arrays))
    return results


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
    import pandas as pd

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
    import pandas as pd

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
    import pandas as pd

    return pd.DataFrame([{"probe": r.probe.label, "max |mean v|": r.latent["max_abs_mean"],
                          "mean var v": r.latent["mean_var"], "min var": r.latent["min_var"],
                          "max var": r.latent["max_var"], "NLL / dim": r.latent["nll_per_dim"],
                          "inversion error": r.inversion_error} for r in result.probes]).set_index("probe")


# --- checks and claims ---------------------------------------------------------------------------------------------


def _probe_id(probe: Probe) -> str:
    return f"{probe.network.lower()}{probe.layer}" + ("" if probe.domain == LOW else "_y")


def _deepest(result: InvarianceResult, network: str) -> ProbeResult:
    layers = result.config.chen_layers if network == "Chen" else result.config.yang_layers
    return result.probe(network, max(layers))


def _first(result: InvarianceResult, network: str) -> ProbeResult:
    layers = result.config.chen_layers if network == "Chen" else result.config.yang_layers
    return result.probe(network, min(layers))


def _texture_interval(comparison: DenoisingComparison, level: float) -> dict[str, tuple[float, float, float]]:
    """Bootstrap (over test slices) intervals of the NPS statistics the texture claims and checks use."""
    boot, q = comparison.nps_bootstrap, [(1 - level) / 2, (1 + level) / 2]

    def summary(draws: np.ndarray, point: float) -> tuple[float, float, float]:
        lo, hi = np.quantile(draws, q)
        return float(point), float(lo), float(hi)

    point = {k: float(np.mean(v)) for k, v in comparison.nps_mean_frequency.items()}
    out = {"chen_minus_full": summary(boot["Chen"] - boot["full"], point["Chen"] - point["full"]),
           "closer": summary(np.abs(boot["Chen"] - boot["full"]) - np.abs(boot["Yang"] - boot["full"]),
                             abs(point["Chen"] - point["full"]) - abs(point["Yang"] - point["full"]))}
    if "warmup" in boot:
        out["adversarial_change"] = summary(boot["Yang"] - boot["warmup"], point["Yang"] - point["warmup"])
    return out


def checks(result: InvarianceResult, *, vae_rmse_hu: float = 40.0, v_max_abs_mean: float = 1.0,
           v_var: tuple[float, float] = (0.5, 1.5), floor_margin: float = 0.25, inversion: float = 1e-3,
           level: float = 0.95) -> list[Check]:
    """The chapter's invariants (raise when broken) and quality checks (shown; failed ones make the claims that
    depend on them inconclusive). Thresholds are the arguments, stated in the chapter."""
    cfg, data = result.config, result.data
    out: list[Check] = []
    arrays = [a for r in result.probes for a in (r.spread_hu, r.std_maps, r.latent["mean"], r.latent["var"])]
    out.append(require("finite", "every spread, std map and statistic of v is finite",
                       all(np.isfinite(np.asarray(a)).all() for a in arrays)))
    worst = max(r.inversion_error for r in result.probes)
    out.append(require("inversion", f"every cINN inverts: max |t(t^-1(v)) - v| < {inversion:g}", worst < inversion,
                       worst, f"< {inversion:g}"))
    shape = (cfg.n_test_patches, cfg.patch_size, cfg.patch_size)
    out.append(require("shapes", f"std maps are {shape} per probe", all(r.std_maps.shape == shape for r in result.probes)))
    ids = [set(v) for v in data.splits.values()]
    disjoint = all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1:])
    out.append(require("patient_split", "train, validation and test patients are disjoint", disjoint))
    counts = np.bincount(data.sets["train"].patient_of.numpy())
    out.append(require("patient_weighted", "every training patient gives the same number of patches",
                       bool((counts == cfg.patches_per_patient).all())))
    for domain in domains(cfg):
        value = float(result.vae_rmse(domain).mean())
        out.append(quality_check(f"vae_{domain}_rmse", f"VAE of {'low' if domain == LOW else 'full'}-dose images "
                                 "reconstructs the analysed patches (RMSE, HU, window)", value, below=vae_rmse_hu,
                                 margin_note="threshold from issue 17 (quick: 40 HU)"))
    for r in result.probes:
        pid = _probe_id(r.probe)
        out.append(quality_check(f"v_mean_{pid}", f"{r.probe.label}: largest |mean| of v over held-out patches",
                                 r.latent["max_abs_mean"], below=v_max_abs_mean))
        out.append(quality_check(f"v_var_{pid}", f"{r.probe.label}: mean variance of v over held-out patches",
                                 r.latent["mean_var"], above=v_var[0], below=v_var[1]))
        if r.phi_similarity is not None:
            low = interval(r.phi_similarity - r.phi_similarity_other, level)[1]
            out.append(quality_check(f"phi_{pid}", f"{r.probe.label}: Φ(sample) is closer to z than Φ(other test "
                                     "image) is (lower end of the interval over images)", low, above=0.0))
            high = interval(r.f_rmse_hu - r.f_rmse_other_hu, level)[2]
            out.append(quality_check(f"f_{pid}", f"{r.probe.label}: f(sample) is closer to f(x) than f(other test "
                                     "image) is (upper end of the interval of the RMSE difference, HU)", high,
                                     below=0.0))
    floor = result.floor(LOW)
    for network in NETWORKS:
        first = _first(result, network)
        _, lo, hi = spread.excess_over_floor(first.spread_hu, floor.spread_hu, level)
        level_hu = float(np.mean(floor.spread_hu))
        value = max(abs(lo), abs(hi)) / level_hu if np.isfinite(lo) and level_hu > 0 else math.nan
        out.append(quality_check(f"floor_{network.lower()}", f"{network} layer {first.probe.layer} (injective) sits on "
                                 "the floor: largest |end| of its interval of spread minus floor, relative to the floor",
                                 value, below=floor_margin))
    comparison = result.comparison
    if comparison.nps_bootstrap:
        full_sd = float(np.mean(comparison.nps_noise_sd["full"]))
        ratio = result.nets.perceptual_record["heldout_rmse_hu"] / full_sd
        out.append(quality_check("perceptual_keeps_texture", "the perceptual autoencoder redraws held-out full-dose "
                                 "patches to below their noise SD (RMSE / full-dose noise SD)", ratio, below=1.0))
        texture = _texture_interval(comparison, level)
        if "adversarial_change" in texture:
            _, lo, hi = texture["adversarial_change"]
            out.append(quality_check("adversarial_changed_texture", "WGAN training moved the NPS mean frequency of "
                                     "Yang's output away from its L2 warm-up (distance of the interval from 0, 1/mm)",
                                     max(lo, -hi), above=0.0))
    return out


SECTIONS = {"denoisers": "invariances-denoisers", "texture": "invariances-texture",
            "spreads": "invariances-spreads", "target": "invariances-target", "findings": "invariances-findings"}
"""MyST labels of the chapter's sections that test claims (``Claim.section``; the notebook carries ``(label)=``)."""
PAPER, SLIDES = "eulig2022invariances", "eulig2022slides"
"""BibTeX keys of the two seeds (``Claim.reference``, ``Deviation.reference``)."""


def _claim(cid: str, source: str, statement: str, test: str, estimate: tuple[float, float, float], *, what: str,
           section: str, reference: str = PAPER, above=None, below=None, unit: str = "", kind: str = "",
           depends: Sequence[str] = (), chance: float | None = None, note: str = "") -> Claim:
    point, lo, hi = estimate
    common = dict(id=cid, chapter=CHAPTER, source=source, statement=statement, test=test, unit=unit, note=note,
                  depends_on=tuple(depends), chance=chance, section=SECTIONS[section], reference=reference)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return Claim(**common, verdict="inconclusive", rule="no interval (too few finite values)",
                     ours=point if np.isfinite(point) else None)
    verdict, rule = interval_rule((lo, hi), above=above, below=below, what=what)
    return Claim(**common, verdict=verdict, rule=rule, ours=point, interval=(lo, hi), interval_kind=kind)


def claims(result: InvarianceResult, check_list: Sequence[Check], *, level: float = 0.95) -> list[Claim]:
    """The chapter's claims, each tested by a rule of :mod:`glassbox.measure.claims` on an interval (95% t over
    test slices or analysed patches, or a bootstrap over test slices), then :func:`apply_checks`."""
    cfg, per_slice, out = result.config, result.comparison.per_slice, []
    images = f"{level:.0%} t-interval over {cfg.n_test_patches} analysed test patches"
    fig1 = "Eulig et al. 2022, Sec. IV-A (Fig. 1)"
    for network in NETWORKS:
        gain = interval(per_slice[network]["psnr"] - per_slice["low"]["psnr"], level)
        out.append(_claim(f"{network.lower()}_denoises", fig1, f"{network} et al.'s network, retrained, denoises "
                          "(the paper: its results are similar to those reported in the original paper)",
                          "PSNR gain over the low-dose input on "
                          "the test slices (dB, window)", gain, what="the gain", section="denoisers", above=0.0, unit="dB",
                          kind=f"{level:.0%} t-interval over test slices",
                          note="Our data are not the original papers', so we test only that the network denoises; "
                          "how close its numbers come to the original paper's is not testable here."))
    checked = {c.id for c in check_list}
    if result.comparison.nps_bootstrap:
        texture = _texture_interval(result.comparison, level)
        kind = f"{level:.0%} bootstrap over test slices"
        out.append(_claim("chen_smooth", fig1, "due to the L2 loss the results of Chen et al. appear smooth",
                          "NPS mean frequency of Chen's output minus that of the full-dose image (1/mm)",
                          texture["chen_minus_full"], what="the difference", section="texture", below=0.0, unit="1/mm", kind=kind))
        out.append(_claim("yang_texture", fig1, "Yang et al.'s results have noise structures very similar to those "
                          "of the high-dose images", "|NPS mean frequency of Chen − full dose| minus |Yang − full "
                          "dose| (1/mm): positive when Yang's noise texture is the closer one", texture["closer"],
                          what="the difference", section="texture", above=0.0, unit="1/mm", kind=kind,
                          depends=[c for c in ("adversarial_changed_texture", "perceptual_keeps_texture")
                                   if c in checked]))
    floor = result.floor(LOW)
    base = [c for c in ("vae_x_rmse", "v_mean_identity0", "v_var_identity0") if c in checked]
    for network in NETWORKS:
        deep, first = _deepest(result, network), _first(result, network)
        deps = base + [f"{k}_{_probe_id(p.probe)}" for p in (deep, first) for k in ("v_mean", "v_var", "phi")]
        out.append(_claim(f"{network.lower()}_invariant", "Eulig et al. 2022, Sec. V", f"the representations of "
                          f"{network} et al.'s network at different layers are invariant to anatomical features",
                          f"spread minus floor at layer {deep.probe.layer}, the deepest analysed, over the body outside "
                          "homogeneous tissue: edges and anatomical detail (HU, window)",
                          spread.excess_over_floor(deep.structure_spread_hu, floor.structure_spread_hu, level),
                          what="spread minus floor", section="spreads", above=0.0, unit="HU", kind=images,
                          depends=deps + [f"floor_{network.lower()}"]))
        out.append(_claim(f"{network.lower()}_depth", "expected: a deeper layer is a function of a shallower one, so "
                          "it can only keep less (data-processing inequality)",
                          f"the invariance spread of {network} et al.'s network grows with depth",
                          f"spread at layer {deep.probe.layer} minus spread at layer {first.probe.layer} (HU)",
                          spread.excess_over_floor(deep.spread_hu, first.spread_hu, level), what="the difference",
                          section="spreads", reference="", above=0.0, unit="HU",
                          kind=images, depends=deps))
    chen = np.mean([result.probe("Chen", k).flat_spread_hu for k in cfg.chen_layers], axis=0)
    yang = np.mean([result.probe("Yang", k).flat_spread_hu for k in cfg.yang_layers], axis=0)
    keep = np.isfinite(chen) & np.isfinite(yang)
    deps = base + [f"{k}_{_probe_id(result.probe(n, layer).probe)}" for n, layers in
                   (("Chen", cfg.chen_layers), ("Yang", cfg.yang_layers)) for layer in layers for k in ("v_mean", "v_var")]
    out.append(_claim("chen_homogeneous", "Eulig et al. 2022, Sec. IV-B", "higher overall variance of the invariances "
                      "in homogeneous regions for Chen et al.'s network than for Yang et al.'s",
                      "spread over homogeneous tissue, mean over the analysed layers, Chen minus Yang (HU)",
                      interval(chen[keep] - yang[keep], level), what="the difference", section="spreads", above=0.0,
                      unit="HU",
                      kind=f"{level:.0%} t-interval over the analysed patches with homogeneous tissue", depends=deps))
    if cfg.target_domain:
        floor_y = result.floor(FULL)
        for network, layer in (("Chen", 5), ("Yang", 15)):
            probe = result.probe(network, layer, FULL)
            deps = [c for c in ("vae_y_rmse",) if c in checked] + [f"{k}_{_probe_id(p.probe)}" for p in (probe, floor_y)
                                                                    for k in ("v_mean", "v_var")]
            out.append(_claim(f"{network.lower()}_target", "Eulig et al., slides (seed 002), target domain",
                              f"after the last layer of {network}'s network, many full-dose images give the same "
                              "output: invariances in the target domain", "spread of full-dose samples given f(x), "
                              "minus the full-dose floor (HU)",
                              spread.excess_over_floor(probe.spread_hu, floor_y.spread_hu, level),
                              what="spread minus floor", section="target", reference=SLIDES,
                              above=0.0, unit="HU", kind=images, depends=deps))
    return apply_checks(out, check_list)


def deviations(config: InvarianceConfig, *, simulated: bool = True) -> list[Deviation]:
    """How this profile departs from Eulig et al.'s protocol (paper and slides): data and dose, patch size, VAE,
    perceptual network, training length, cINN size, analysis size and the target-domain VAE."""
    if not isinstance(config, InvarianceConfig):
        raise InvarianceError(f"config must be an InvarianceConfig (a PROFILES entry), got {type(config).__name__}")
    d, v, c, y = config.data, config.vae, config.cinn, config.yang
    budget = "the profile's compute budget (smoke: seconds, quick: minutes on one CPU thread; paper: a GPU)"
    latent = (f"{v.latent_dim // (v.bottom * v.bottom)} x {v.bottom} x {v.bottom} map" if v.spatial
              else f"{v.latent_dim}-dimensional vector")
    out = []
    if simulated:
        out.append(("data", "data and dose", "TCIA LDCT-and-Projection data: 150 patients (head, chest, abdomen), "
                    "simulated 25 % dose for head and abdomen, 10 % for chest",
                    f"simulated abdominal phantoms: {d.n_patients} patients x {d.slices_per_patient} slices of "
                    f"{d.n} x {d.n} pixels, {d.dose:.0%} dose",
                    "the TCIA data need a licence and no download is possible at build time; at 25 % dose our "
                    "phantoms carry too little noise for a briefly trained denoiser to beat its input"))
    out += [
        ("patches", "patch size", "128 x 128 patches for the invariance analysis; Yang et al.'s 64 x 64 for "
         "WGAN-VGG", f"{config.patch_size} x {config.patch_size} patches, {config.patches_per_patient} per "
         "training patient, for every network", budget),
        ("vae", "VAE", "ResNet-101 encoder, BigGAN decoder, adversarial and perceptual terms",
         f"convolutional VAE (width {v.width}, {v.n_res} residual blocks per resolution) with a {latent} latent, "
         f"negative ELBO only, {v.epochs} epochs", budget + "; ImageNet weights cannot be downloaded"),
        ("perceptual", "perceptual loss of WGAN-VGG", "ImageNet VGG-19 features (conv5_4), as Yang et al.",
         f"relu3_2 of a small VGG-shaped autoencoder of full-dose patches (base width {config.perceptual.base}, "
         f"{config.perceptual.epochs} epochs), after Li et al.'s self-supervised perceptual network",
         "VGG-19 weights cannot be downloaded here; a CT autoencoder keeps the noise texture the loss must see"),
        ("training", "training length", "the original papers' hyper-parameters (Yang et al.: Adam 1e-5, batch 128, "
         "about 100 epochs, n_critic 4)", f"Chen: {config.chen.epochs} epochs; Yang: {y.pretrain_epochs} L2 warm-up "
         f"epochs, then {y.epochs} WGAN epochs at Adam {y.lr:g}, batch {y.batch_size}, n_critic {y.n_critic}; "
         f"VAE {v.epochs} and each cINN {c.epochs} epochs", budget),
        ("cinn", "cINN", "4 blocks (coupling, ActNorm, shuffling) with a shallow condition network H",
         f"{c.n_blocks} blocks, subnet width {c.hidden} (depth {c.hidden_depth}), H to {c.emb_dim} numbers",
         budget),
        ("analysis", "invariance samples", "250 invariance samples per analysed image",
         f"{config.n_samples} samples on each of {config.n_test_patches} test patches (the trust checks on the "
         f"first {min(config.n_check_samples, config.n_samples)})", budget),
    ]
    deviations_ = [Deviation(f"{CHAPTER}.{PAPER}.{aspect_id}", CHAPTER, PAPER, aspect, paper, ours, reason)
                   for aspect_id, aspect, paper, ours, reason in out]
    deviations_.append(Deviation(f"{CHAPTER}.{SLIDES}.target", CHAPTER, SLIDES, "target-domain VAE",
                                 "a second VAE of high-dose images, suggested to show invariances in the target "
                                 "domain", "a full-dose VAE of the same architecture, trained the same way"
                                 if config.target_domain else "not run on this profile",
                                 "as suggested" if config.target_domain else budget))
    return deviations_


def numbers(result: InvarianceResult) -> dict[str, Any]:
    """The headline numbers saved to ``results/invariances.json``."""
    comparison = result.comparison
    out: dict[str, Any] = {
        "data": data_table(result.data), "denoising": denoising_table(comparison),
        "vae": vae_table(result.data, result.vaes), "spreads": spread_table(result),
        "consistency": consistency_table(result), "latent": latent_table(result),
        "vae_rmse_window_hu": {d: float(result.vae_rmse(d).mean()) for d in result.vaes},
        "perceptual_ae_heldout_rmse_hu": result.nets.perceptual_record["heldout_rmse_hu"],
        "n_samples": result.config.n_samples, "n_test_patches": result.config.n_test_patches,
        "patch_size": result.config.patch_size, "dose": result.config.data.dose,
        "split": {k: len(v) for k, v in result.data.splits.items()},
    }
    if comparison.nps_frequencies is not None:
        out["nps"] = {"frequencies_per_mm": comparison.nps_frequencies,
                      "radial_mean": {METHOD_NAMES[k]: v.mean(0) for k, v in comparison.nps_radial.items()},
                      "mean_frequency": {METHOD_NAMES[k]: float(np.mean(v)) for k, v in
                                         comparison.nps_mean_frequency.items()},
                      "noise_sd_hu": {METHOD_NAMES[k]: float(np.mean(v)) for k, v in comparison.nps_noise_sd.items()},
                      "n_rois": comparison.n_rois}
    return out


# --- figures ---------------------------------------------------------------------------------------------------------


def plot_denoising(comparison: DenoisingComparison, n_images: int = 3) -> Any:
    """The paper's Fig. 1 layout: one row per test slice, one column per image (abdomen window); mean PSNR and
    SSIM against the full-dose slice in the titles."""
    import matplotlib.pyplot as plt

    from glassbox.report.plotting import show_ct

    names = [k for k in ("low", "Chen", "Yang", "full") if k in comparison.images]
    n_images = min(n_images, len(comparison.images["full"]))
    fig, axes = plt.subplots(n_images, len(names), figsize=(2.4 * len(names), 2.4 * n_images), squeeze=False)
    for c, name in enumerate(names):
        title = METHOD_NAMES[name]
        if name in comparison.per_slice:
            q = comparison.per_slice[name]
            title += f"\n{np.mean(q['psnr']):.1f} dB, SSIM {np.mean(q['ssim']):.3f}"
        for r in range(n_images):
            show_ct(axes[r, c], comparison.images[name][r], title if r == 0 else "", window=WINDOW_HU)
    fig.tight_layout()
    return fig


def plot_vae(data: ChapterData, vaes: Mapping[str, VAE], n_images: int = 4) -> Any:
    """Analysed test patches and their reconstructions ``D(E(.))`` by each VAE (abdomen window)."""
    import matplotlib.pyplot as plt

    from glassbox.report.plotting import show_ct

    k = min(n_images, data.test_low.shape[0])
    rows = [("x", data.test_low)] + ([("D(E(x))", vaes[LOW].reconstruct(data.test_low[:k]))] if LOW in vaes else [])
    if FULL in vaes:
        rows += [("y", data.test_full), ("D_y(E_y(y))", vaes[FULL].reconstruct(data.test_full[:k]))]
    fig, axes = plt.subplots(len(rows), k, figsize=(2.0 * k, 2.0 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        with torch.no_grad():
            hu = lowdose_ct.denormalize(images[:k, 0].detach().cpu()).numpy()
        for c in range(k):
            show_ct(axes[r, c], hu[c], name if c == 0 else "", window=WINDOW_HU)
    fig.tight_layout()
    return fig


def plot_nps(comparison: DenoisingComparison, level: float = 0.95) -> Any:
    """Radial noise power spectra of the low-dose input, both outputs, the warm-up generator and the full-dose
    image (mean over test slices with a bootstrap band), and each one's NPS mean frequency with its interval."""
    import matplotlib.pyplot as plt

    if comparison.nps_frequencies is None:
        raise InvarianceError("no noise power spectra: they need a second scan of the test patients (simulated data)")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1.6, 1]})
    rng = np.random.default_rng(0)
    colours = {"low": "0.6", "Chen": "C0", "Yang": "C3", "warmup": "C1", "full": "k"}
    names = [k for k in ("low", "Chen", "warmup", "Yang", "full") if k in comparison.nps_radial]
    for name in names:
        per = comparison.nps_radial[name]
        draws = np.stack([per[rng.integers(0, len(per), len(per))].mean(0) for _ in range(400)])
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        left.plot(comparison.nps_frequencies, per.mean(0), color=colours[name], label=METHOD_NAMES[name],
                  ls="--" if name == "warmup" else "-")
        left.fill_between(comparison.nps_frequencies, lo, hi, color=colours[name], alpha=0.2, lw=0)
    left.set(yscale="log", xlabel="spatial frequency (1/mm)", ylabel="NPS (HU² mm²)",
             title="noise power spectrum (difference of two scans)")
    left.legend(fontsize=8)
    for y, name in enumerate(names):
        boot = comparison.nps_bootstrap[name]
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
        mean = float(np.mean(comparison.nps_mean_frequency[name]))
        right.errorbar(mean, y, xerr=[[mean - lo], [hi - mean]], fmt="o", color=colours[name], capsize=3)
    right.set(yticks=range(len(names)), yticklabels=[METHOD_NAMES[n] for n in names], xlabel="NPS mean frequency (1/mm)",
              title=f"texture ({level:.0%} bootstrap over slices)")
    right.axvline(float(np.mean(comparison.nps_mean_frequency["full"])), color="k", lw=0.8, ls=":")
    fig.tight_layout()
    return fig


def plot_spreads(result: InvarianceResult, level: float = 0.95) -> Any:
    """Spread minus floor against the layer per network (interval over images), with the VAE's reconstruction
    RMSE on the same images and the no-information level for scale."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(NETWORKS), figsize=(9, 3.3), sharey=True)
    floor = result.floor(LOW)
    vae = float(result.vae_rmse(LOW).mean())
    for ax, network in zip(axes, NETWORKS):
        rows = [r for r in result.probes if r.probe.network == network and r.probe.domain == LOW]
        layers = [r.probe.layer for r in rows]
        stats = [spread.excess_over_floor(r.spread_hu, floor.spread_hu, level) for r in rows]
        means = np.array([s[0] for s in stats])
        ax.errorbar(layers, means, yerr=[means - [s[1] for s in stats], [s[2] for s in stats] - means], fmt="o-",
                    capsize=3, label="spread − floor")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.axhline(vae, color="C2", ls="--", label="VAE RMSE (same patches)")
        ax.axhline(rows[0].prior_spread_hu - float(np.mean(floor.spread_hu)), color="gray", ls=":",
                   label="no information − floor")
        ax.set(xlabel="layer", xticks=layers, title=f"{network}'s network")
    axes[0].set_ylabel("HU (window)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _figure_rows(title: str, header: Mapping[str, np.ndarray], rows: Sequence[ProbeResult], index: int,
                 std_max: float) -> Any:
    import matplotlib.pyplot as plt

    from glassbox.report.plotting import show_ct

    k = max(r.shown.shape[1] for r in rows)
    n_cols = max(k + 1, len(header))
    fig, axes = plt.subplots(len(rows) + 1, n_cols, figsize=(1.7 * n_cols, 1.75 * (len(rows) + 1)), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for c, (name, image) in enumerate(header.items()):
        show_ct(axes[0, c], image, name, window=WINDOW_HU)
    handle = None
    for r, result in enumerate(rows, start=1):
        for c in range(result.shown.shape[1]):
            show_ct(axes[r, c], result.shown[index, c], f"sample {c + 1}" if r == 1 else "", window=WINDOW_HU)
        handle = axes[r, n_cols - 1].imshow(result.std_maps[index], cmap="inferno", vmin=0, vmax=std_max)
        axes[r, n_cols - 1].set_title("std over samples" if r == 1 else "", fontsize=9)
        axes[r, 0].text(-0.08, 0.5, result.probe.label, transform=axes[r, 0].transAxes, rotation=90, ha="right",
                        va="center", fontsize=8)
    if handle is not None:
        fig.colorbar(handle, ax=list(axes[1:, n_cols - 1]), fraction=0.08, pad=0.04, label="HU")
    fig.suptitle(title, fontsize=10)
    return fig


def invariance_figure(result: InvarianceResult, network: str, index: int) -> Any:
    """The paper's Fig. 2 layout for analysed patch ``index``: x, y, D(E(x)), f(x); then the floor and each
    analysed layer: shown samples and the pixel-wise standard deviation over all samples (HU, window)."""
    net, vae = result.nets.by_name()[network], result.vaes[LOW]
    x = result.data.test_low[index:index + 1]
    device = next(net.parameters()).device
    with torch.no_grad():
        header = {"x (low dose)": x, "y (full dose)": result.data.test_full[index:index + 1],
                  "D(E(x)) (VAE)": vae.reconstruct(x.to(device)).cpu(), "f(x)": net(x.to(device)).cpu()}
    header = {k: lowdose_ct.denormalize(v[0, 0]).numpy() for k, v in header.items()}
    rows = [result.floor(LOW)] + [r for r in result.probes if r.probe.network == network and r.probe.domain == LOW]
    std_max = max(float(r.std_maps[index].max()) for r in result.probes if r.probe.domain == LOW)
    return _figure_rows(f"{network}'s network, analysed patch {index + 1} ({result.config.n_samples} samples per row)",
                        header, rows, index, std_max)


def target_figure(result: InvarianceResult, index: int) -> Any:
    """Invariances in the target domain (the slides): full-dose samples given the output of each network, beside
    the full-dose floor (samples given y itself)."""
    vae = result.vaes[FULL]
    y = result.data.test_full[index:index + 1]
    x = result.data.test_low[index:index + 1]
    device = next(vae.parameters()).device
    with torch.no_grad():
        header = {"x (low dose)": x, "y (full dose)": y, "D_y(E_y(y))": vae.reconstruct(y.to(device)).cpu()}
        header |= {f"f(x), {n}": net(x.to(device)).cpu() for n, net in result.nets.by_name().items()}
    header = {k: lowdose_ct.denormalize(v[0, 0]).numpy() for k, v in header.items()}
    rows = [r for r in result.probes if r.probe.domain == FULL]
    std_max = max(float(r.std_maps[index].max()) for r in rows)
    return _figure_rows(f"target domain, analysed patch {index + 1}: full-dose images with the same output", header,
                        rows, index, std_max)


# --- the plan: every stored artifact as a task ---------------------------------------------------------------------


_TASK_DATA: dict[str, Any] = {}
"""The last :class:`ChapterData` a plan task built in this process, with its key: the grid pickles every task's
function on its own, so a cache inside :class:`_Context` would be rebuilt by every task a worker runs."""


class _Context:
    """Lazily built inputs of the plan's tasks (the data), built once per process for one (config, seed, data)."""

    def __init__(self, config: InvarianceConfig, seed: int, data_dir: Any):
        self.config, self.seed, self.data_dir = config, seed, data_dir

    def data(self) -> ChapterData:
        key = (self.config, self.seed, None if self.data_dir is None else str(Path(self.data_dir).resolve()))
        if _TASK_DATA.get("key") != key:
            _TASK_DATA.clear()
            _TASK_DATA.update(key=key, data=prepare_data(self.config, seed=self.seed, data_dir=self.data_dir,
                                                         progress=False))
        return _TASK_DATA["data"]


def plan(config: InvarianceConfig, *, seed: int = 0, device: Any = "cpu", data_dir: str | Path | None = None
         ) -> list[Task]:
    """Every artifact the chapter computes through the store, as tasks in dependency order: the simulated data
    and second scan, Chen's CNN, the perceptual autoencoder, WGAN-VGG, the VAE(s) and one cINN per probe.

    Each task's ``run`` makes the very store call the chapter makes, so after all have run the chapter trains
    nothing."""
    ctx = _Context(config, seed, data_dir)
    key = data_key(config, seed) if data_dir is None else ctx.data().key  # real data: keyed by their content
    tasks: dict[str, Task] = {}

    def add(name: str, entry: tuple[str, Any], fn, deps: Sequence[str] = (), gpu: bool = True) -> None:
        tasks[name] = Task(entry=entry[0], config=entry[1], run=fn, label=name,
                           deps=tuple(tasks[d].key for d in deps if d in tasks), gpu=gpu)

    if data_dir is None:
        add("data", lowdose_ct.dataset_entry(config.data, seed),
            lambda: lowdose_ct.build_dataset(config.data, seed, progress=False), gpu=False)
        test_ids = lowdose_ct.split_patients(lowdose_ct.patient_ids(config.data.n_patients),
                                             config.data.split_fractions, seed)["test"]
        add("rescan", _rescan_entry(config, seed, test_ids), lambda: _rescan(config, seed, test_ids, False),
            ["data"], gpu=False)
    add("chen", dn.chen_entry(config.chen, data_key=key, seed=seed),
        lambda: _chen(ctx.data(), config, seed, device, False), ["data"])
    add("perceptual", tissue_features.feature_autoencoder_entry(config.perceptual, data_key=key, seed=seed),
        lambda: _perceptual(ctx.data(), config, seed, device, False), ["data"])
    add("yang", dn.wgan_vgg_entry(config.yang, data_key=key, featurenet_config=config.perceptual, seed=seed),
        lambda: _yang(ctx.data(), config, seed, device, False), ["data", "perceptual"])
    for domain in domains(config):
        add(f"vae_{domain}", vae_cinn.vae_entry(config.vae, data_key=key, seed=seed,
                                                domain="low dose" if domain == LOW else "full dose"),
            lambda d=domain: _vae(ctx.data(), config, d, seed, device, False), ["data"])
    for probe in probes(config):
        needs = ["data", f"vae_{probe.domain}"] + ([probe.network.lower()] if probe.network != "identity" else [])

        def fn(p: Probe = probe) -> Any:
            network = {"Chen": _chen, "Yang": _yang}.get(p.network)
            net = network(ctx.data(), config, seed, device, False)[0] if network else None
            vae = _vae(ctx.data(), config, p.domain, seed, device, False)[0]
            return _cinn(ctx.data(), config, p, net, vae, seed, device, False)

        add(f"cinn_{_probe_id(probe)}", vae_cinn.invariance_inn_entry(
            probe.store_name, probe.layer, config.cinn, key=cinn_key(config, key, probe), seed=seed), fn, needs)
    return list(tasks.values())


def check_layers(net: nn.Module, layers: Sequence[int]) -> None:
    """Fail clearly when a layer number does not exist in ``net``."""
    total = n_layers(net)
    bad = [k for k in layers if not 1 <= k <= total]
    if bad:
        raise InvarianceError(f"layers {bad} do not exist in {type(net).__name__} (layers 1..{total})")
