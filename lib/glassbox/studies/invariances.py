"""The invariances chapter: what a CT denoiser ignores, after Eulig et al. (seeds 002 / 004).

Rombach et al.'s method (ECCV 2020) as adapted to CT: split the denoiser as ``f = Psi o Phi`` at a layer,
``z = Phi(x)`` (:func:`glassbox.models.common.truncate`); a VAE (:mod:`glassbox.models.vae`) gives a complete
representation ``zbar = E(x)``; a conditional INN (:mod:`glassbox.models.cinn`, trained by
:mod:`glassbox.training.vae_cinn`) maps ``zbar`` to ``v ~ N(0, I)`` given ``z``; decoding ``D(t^-1(v | z))``
for fresh ``v`` gives images the layer cannot tell from ``x``.

This module holds the chapter: its configuration per profile (:data:`PROFILES`), the paper's values
(:data:`PAPER_VALUES`), the data sets, :func:`study_network` (one cINN per analysed layer, the samples and
:func:`analyse_layer`'s trust checks: ``Phi`` of a sample stays close to ``z``, ``f`` of a sample stays close to
``f(x)``), the denoising comparison (the paper's Fig. 1) and the chapter's figures.
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

from glassbox.core import checks
from glassbox.data import lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig, PairedCTDataset
from glassbox.measure.image_metrics import psnr, ssim
from glassbox.models.chen_cnn import CHEN_LAYERS
from glassbox.models.cinn import InvarianceINN
from glassbox.models.common import (
    InvarianceError,
    n_layers,
    truncate,
)
from glassbox.models.vae import VAE, _check_patch
from glassbox.models.wgan_vgg import YANG_LAYERS
from glassbox.training.ct_denoisers import ChenConfig, YangConfig
from glassbox.training.tissue_features import FeatureNetConfig
from glassbox.training.vae_cinn import (
    CINNConfig,
    VAEConfig,
    latent_statistics,
    pretrained_invariance_inn,
    sample_invariances,
)

WINDOW_HU = (40.0, 400.0)
"""Abdomen window (level, width) in HU for display, PSNR and SSIM (ldct-benchmark: metrics on windowed images);
the same as :data:`glassbox.report.plotting.WINDOWS` ``["abdomen"]``."""






@dataclass(frozen=True)
class InvarianceConfig:
    """Every knob of the ``invariances`` chapter (one per profile in :data:`PROFILES`).

    ``data`` simulates the paired slices and splits patients; denoisers, VAE and cINNs train on
    ``patch_size`` patches (``patches_per_slice`` per training slice); the analysis uses
    ``n_test_patches`` test patches (the first ``n_shown_images`` are drawn) with ``n_samples``
    invariance samples each (``n_shown_samples`` shown).
    """

    data: CTDataConfig = CTDataConfig()
    patch_size: int = 32
    patches_per_slice: int = 12
    chen: ChenConfig = ChenConfig()
    yang: YangConfig = YangConfig()
    featurenet: FeatureNetConfig = FeatureNetConfig()
    vae: VAEConfig = VAEConfig()
    cinn: CINNConfig = CINNConfig()
    chen_layers: tuple[int, ...] = CHEN_LAYERS
    yang_layers: tuple[int, ...] = YANG_LAYERS
    n_test_patches: int = 4
    n_shown_images: int = 2
    n_samples: int = 250
    n_shown_samples: int = 5
    n_heldout: int = 256

    def __post_init__(self) -> None:
        _check_patch(self.patch_size)
        if self.patch_size > self.data.n:
            raise InvarianceError(f"patch_size ({self.patch_size}) must be at most the slice size data.n ({self.data.n})")
        for name in ("patches_per_slice", "n_test_patches", "n_shown_images", "n_samples", "n_shown_samples",
                     "n_heldout"):
            checks.integer(getattr(self, name), name, error=InvarianceError)
        if self.n_samples < 2:
            raise InvarianceError(f"n_samples must be at least 2 (a standard deviation needs two), got {self.n_samples}")
        if self.n_shown_samples > self.n_samples or self.n_shown_images > self.n_test_patches:
            raise InvarianceError("n_shown_samples must be <= n_samples and n_shown_images <= n_test_patches")
        if self.n_test_patches < 2:
            raise InvarianceError("n_test_patches must be at least 2 (the checks compare different images)")
        for name, limit in (("chen_layers", 5), ("yang_layers", 15)):
            layers = getattr(self, name)
            if not layers or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limit for k in layers):
                raise InvarianceError(f"{name} must be layer numbers in [1, {limit}], got {layers!r}")


# Dose 0.1 (the Grand Challenge's chest protocol) instead of the data chapter's 0.25: on the 128 x 128 grid a
# pixel is 3.1 mm and quarter dose leaves so little noise that a briefly trained denoiser cannot beat its input.
_DOSE = 0.1


PROFILES: dict[str, InvarianceConfig] = {
    # seconds: tiny everything, a handful of samples
    "smoke": InvarianceConfig(
        data=CTDataConfig(n=64, n_patients=3, slices_per_patient=2, dose=_DOSE, patch_size=32, patches_per_slice=2),
        patch_size=32, patches_per_slice=4,
        chen=ChenConfig(epochs=1, batch_size=16, lr=1e-3),
        yang=YangConfig(epochs=1, batch_size=16, lr=1e-4, n_critic=1, critic_width=8, pretrain_epochs=1),
        featurenet=FeatureNetConfig(size=32, crop=16, crops_per_image=1, n_patients=4, base=4, epochs=1, batch_size=8),
        vae=VAEConfig(latent_dim=16, width=8, epochs=1, batch_size=16),
        cinn=CINNConfig(hidden=32, emb_dim=16, embed_width=8, epochs=1, batch_size=16),
        n_test_patches=2, n_shown_images=1, n_samples=12, n_shown_samples=3, n_heldout=16),
    # minutes on a 2-core CPU: the data chapter's slices (at dose 0.1), 32 x 32 patches, short trainings
    "quick": InvarianceConfig(
        data=dataclasses.replace(DATA_PROFILES["quick"], dose=_DOSE),
        patch_size=32, patches_per_slice=12,
        chen=ChenConfig(epochs=8, batch_size=8, lr=1e-3),
        yang=YangConfig(epochs=2, batch_size=32, lr=1e-4, n_critic=2, critic_width=16, pretrain_epochs=3,
                        pretrain_batch_size=8, pretrain_lr=1e-3),
        featurenet=FeatureNetConfig(),
        vae=VAEConfig(latent_dim=64, width=32, epochs=15, batch_size=32, lr=2e-3),
        cinn=CINNConfig(hidden=256, emb_dim=64, embed_width=32, epochs=8, batch_size=32, lr=5e-4),
        n_test_patches=4, n_shown_images=2, n_samples=250, n_shown_samples=5, n_heldout=256),
    # GPU: the paper's protocol where it is stated (patches 64, WGAN-VGG hyper-parameters, 4 blocks, 250 samples)
    "paper": InvarianceConfig(
        data=dataclasses.replace(DATA_PROFILES["paper"], dose=_DOSE),
        patch_size=64, patches_per_slice=16,
        chen=ChenConfig(epochs=100, batch_size=68, lr=1.584e-4),
        yang=YangConfig(epochs=100, batch_size=128, lr=1e-5, n_critic=4, critic_width=64, pretrain_epochs=0),
        featurenet=FeatureNetConfig(),
        vae=VAEConfig(latent_dim=256, width=64, epochs=200, batch_size=64, lr=1e-4),
        cinn=CINNConfig(hidden=1024, hidden_depth=2, emb_dim=256, embed_width=64, epochs=200, batch_size=64,
                        lr=1e-4),
        n_test_patches=16, n_shown_images=2, n_samples=250, n_shown_samples=5, n_heldout=1024),
}


PAPER_VALUES: dict[str, Any] = {
    "protocol": {"cinn_blocks": 4, "invariance_samples": 250, "shown_samples": 5, "chen_layers": [1, 3, 5],
                 "yang_layers": [1, 7, 13], "wgan_gp_lambda": 10, "perceptual_lambda": 0.1, "n_critic": 4},
    # the ICIFXCT paper reports no numbers for Fig. 1; for orientation only, ldct-benchmark's test values on real
    # Mayo abdomen slices (different data, different windowing of the noise): PSNR [dB], SSIM
    "ldct_benchmark_abdomen": {"low dose": {"psnr": 29.12, "ssim": 0.856},
                               "cnn10 (Chen)": {"psnr": 32.74, "ssim": 0.907},
                               "wganvgg (Yang)": {"psnr": 30.91, "ssim": 0.893}},
    "qualitative": {"Chen smoother than Yang": True, "spread higher in homogeneous regions for Chen": True},
}
"""What Eulig et al. state (protocol and qualitative findings), stored beside our numbers in the results file."""


def data_key(config: InvarianceConfig, seed: int, data_dir: str | Path | None = None, *,
             pairs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """What identifies the training data of the chapter (for store keys); ``pairs`` come from
    :func:`glassbox.data.lowdose_ct.get_pairs` ``(config.data, seed, data_dir)``.

    The key holds the content fingerprint of ``pairs`` (:func:`glassbox.data.lowdose_ct.pairs_fingerprint`), never
    the folder's path: changed DICOM files give new keys (no stale models), a moved folder the same ones. With a
    ``data_dir``, ``pairs`` are required; simulated data are identified by their configuration and seed.
    """
    key = {"data": config.data, "patch_size": config.patch_size, "patches_per_slice": config.patches_per_slice,
           "seed": seed}
    if data_dir is not None and pairs is None:
        raise InvarianceError(f"data_key: with data_dir={str(data_dir)!r}, pass pairs= (the slices read from it) "
                              "so that the store key holds their content, not the folder's path")
    if pairs is not None:
        key["pairs"] = lowdose_ct.pairs_fingerprint(pairs)
    return key


def chapter_datasets(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], config: InvarianceConfig,
                     seed: int = 0) -> dict[str, PairedCTDataset]:
    """Patient-level split; ``train``/``val``/``test`` patches of ``patch_size`` and whole ``test_slices``."""
    splits = lowdose_ct.split_patients(list(pairs), config.data.split_fractions, seed)
    missing = [name for name in lowdose_ct.SPLITS if not splits[name]]
    if missing:
        raise InvarianceError(f"the data have too few patients for the splits {missing}; add patients")
    out = {name: PairedCTDataset(pairs, ids, patch_size=config.patch_size, patches_per_slice=config.patches_per_slice,
                                 seed=seed) for name, ids in splits.items()}
    out["test_slices"] = PairedCTDataset(pairs, splits["test"])
    return out


def _windowed(x: Tensor | np.ndarray) -> Tensor:
    """Network units -> the :data:`WINDOW_HU` window mapped to [0, 1] (clipped)."""
    centre, width = WINDOW_HU
    hu = lowdose_ct.denormalize(torch.as_tensor(x, dtype=torch.float64))
    return ((hu - (centre - width / 2)) / width).clamp(0.0, 1.0)


def image_quality(estimate: Tensor, reference: Tensor) -> dict[str, float]:
    """PSNR [dB] and SSIM on the windowed images (data range 1), RMSE in HU; means over the stack."""
    a, b = _windowed(estimate.detach().cpu()), _windowed(reference.detach().cpu())
    values = [(psnr(a[i], b[i], 1.0), ssim(a[i, 0], b[i, 0], 1.0)) for i in range(a.shape[0])]
    rmse = float((lowdose_ct.HU_SCALE * (estimate.detach().cpu().double() - reference.detach().cpu().double())
                  ).pow(2).flatten(1).mean(1).sqrt().mean())
    return {"psnr": float(np.mean([v[0] for v in values])), "ssim": float(np.mean([v[1] for v in values])),
            "rmse_hu": rmse}


def vae_quality(vae: VAE, images: Tensor, *, seed: int = 0, batch_size: int = 256) -> dict[str, float]:
    """How well ``D(E(x))`` reproduces ``x``: PSNR/SSIM/RMSE for the posterior mean and a posterior sample."""
    device = next(vae.parameters()).device
    means, samples = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            means.append(vae.reconstruct(x).cpu())
            samples.append(vae.reconstruct(x, torch.Generator().manual_seed(seed + start)).cpu())
    mean_q, sample_q = image_quality(torch.cat(means), images), image_quality(torch.cat(samples), images)
    return {f"mean_{k}": v for k, v in mean_q.items()} | {f"sample_{k}": v for k, v in sample_q.items()}


def centred_cosine(a: Tensor, b: Tensor, centre: Tensor) -> Tensor:
    """Cosine similarity of ``a - centre`` and ``b - centre`` per sample (flattened); centre = mean feature map."""
    a, b = (a - centre).flatten(1).double(), (b - centre).flatten(1).double()
    return F.cosine_similarity(a, b, dim=1)


def _rmse_hu(a: Tensor, b: Tensor) -> Tensor:
    return lowdose_ct.HU_SCALE * (a.double() - b.double()).pow(2).flatten(1).mean(1).sqrt()


@dataclass
class LayerAnalysis:
    """Invariance samples of one layer for the test images, and the numbers that say whether to trust them."""

    network: str
    layer: int
    shown: np.ndarray             # (images, n_shown_samples, p, p) HU
    std_maps: np.ndarray          # (images, p, p) HU: pixel-wise std over n_samples
    spread_hu: float              # mean of the std maps
    prior_spread_hu: float        # same for decoded N(0, I) codes (a layer that knew nothing)
    phi_similarity: float         # centred cosine of Phi(sample) and z, mean over images and samples
    phi_similarity_vae: float     # Phi(D(E(x))) vs z: what the VAE itself loses
    phi_similarity_other: float   # Phi(other test image) vs z: chance level
    f_rmse_hu: float              # RMSE of f(sample) vs f(x)
    f_rmse_vae_hu: float          # RMSE of f(D(E(x))) vs f(x)
    f_rmse_other_hu: float        # RMSE of f(other image) vs f(x)
    input_rmse_hu: float          # RMSE of sample vs x: how far the samples move in the input
    inversion_error: float        # max |t(t^-1(v | z) | z) - v| over the first image's latents
    extra: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """The scalar numbers as a flat dict (a table row)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if not isinstance(v, (np.ndarray, dict))}


def analyse_layer(network: str, net: nn.Module, layer: int, model: InvarianceINN, vae: VAE, images: Tensor, *,
                  n_samples: int, n_shown: int, seed: int = 0, prior_spread_hu: float | None = None) -> LayerAnalysis:
    """Sample ``n_samples`` invariances of ``layer`` of ``net`` for each of ``images`` (M >= 2) and run the checks."""
    if images.ndim != 4 or images.shape[0] < 2:
        raise InvarianceError(f"images must be a (M >= 2, 1, p, p) stack of test patches, got {tuple(images.shape)}")
    device = next(model.parameters()).device
    phi, f = truncate(net, layer).to(device), net.to(device)
    x = images.to(device)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z, fx = phi(x), f(x)
        recon = vae.reconstruct(x)
        z_recon, f_recon = phi(recon), f(recon)
        centre = z.mean(dim=(0, 2, 3), keepdim=True)
        shown, std_maps, sims, f_rmses, in_rmses = [], [], [], [], []
        for i in range(x.shape[0]):
            samples = sample_invariances(model, vae, z[i:i + 1], n_samples, generator)
            shown.append(lowdose_ct.denormalize(samples[:n_shown, 0]).cpu().numpy())
            std_maps.append(lowdose_ct.HU_SCALE * samples[:, 0].double().std(0).cpu().numpy())
            z_s, f_s = [], []
            for chunk in samples.split(64):
                z_s.append(phi(chunk))
                f_s.append(f(chunk))
            z_s, f_s = torch.cat(z_s), torch.cat(f_s)
            sims.append(float(centred_cosine(z_s, z[i:i + 1], centre).mean()))
            f_rmses.append(float(_rmse_hu(f_s, fx[i:i + 1].expand_as(f_s)).mean()))
            in_rmses.append(float(_rmse_hu(samples, x[i:i + 1].expand_as(samples)).mean()))
        others = [(i, j) for i in range(x.shape[0]) for j in range(x.shape[0]) if i != j]
        sim_other = float(np.mean([float(centred_cosine(z[j:j + 1], z[i:i + 1], centre)) for i, j in others]))
        f_other = float(np.mean([float(_rmse_hu(fx[j:j + 1], fx[i:i + 1])) for i, j in others]))
        v = torch.randn((n_samples, vae.latent_dim), generator=generator).to(device)
        z_first = z[:1].expand(n_samples, -1, -1, -1)
        inversion = float((model(model.inverse(v, z_first), z_first)[0] - v).abs().max())
        if prior_spread_hu is None:
            prior_spread_hu = prior_spread(vae, n_samples, seed=seed + 1)
    std_maps_arr = np.stack(std_maps)
    return LayerAnalysis(
        network=network, layer=int(layer), shown=np.stack(shown), std_maps=std_maps_arr,
        spread_hu=float(std_maps_arr.mean()), prior_spread_hu=float(prior_spread_hu),
        phi_similarity=float(np.mean(sims)),
        phi_similarity_vae=float(centred_cosine(z_recon, z, centre).mean()),
        phi_similarity_other=sim_other,
        f_rmse_hu=float(np.mean(f_rmses)), f_rmse_vae_hu=float(_rmse_hu(f_recon, fx).mean()), f_rmse_other_hu=f_other,
        input_rmse_hu=float(np.mean(in_rmses)), inversion_error=inversion,
        extra={"phi_similarity_per_image": sims, "f_rmse_per_image": f_rmses})


def prior_spread(vae: VAE, n_samples: int, *, seed: int = 0) -> float:
    """Mean pixel-wise std (HU) of ``D(v)``, ``v ~ N(0, I)``: the spread if a layer kept no information."""
    device = next(vae.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        codes = torch.randn((max(2, n_samples), vae.latent_dim), generator=generator).to(device)
        images = vae.decode(codes)
    return float(lowdose_ct.HU_SCALE * images[:, 0].double().std(0).mean())


def cinn_key(config: InvarianceConfig, data_key: Mapping[str, Any]) -> dict[str, Any]:
    """What a cINN's store entry depends on besides its own configuration: data, denoisers and VAE."""
    return {"data": dict(data_key), "chen": config.chen, "yang": config.yang, "featurenet": config.featurenet,
            "vae": config.vae}


def pick_test_patches(dataset: PairedCTDataset, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` test patches with the most structure (std of the windowed full-dose patch): (low, full).

    Homogeneous patches show little; the choice depends only on the full-dose image, not on any network.
    """
    n = checks.integer(n, "n", error=InvarianceError)
    if n > len(dataset):
        raise InvarianceError(f"asked for {n} test patches but the test set has {len(dataset)}")
    structure = _windowed(dataset.full).flatten(1).std(1)
    order = torch.argsort(structure, descending=True, stable=True)[:n]
    return dataset.low[order], dataset.full[order]


@dataclass
class LayerResult:
    """One analysed layer: the checks on test images, ``v``'s statistics on held-out data, the training history."""

    analysis: LayerAnalysis
    latent: dict[str, Any]
    history: list[dict[str, float]]

    def row(self) -> dict[str, Any]:
        latent = {k: self.latent[k] for k in ("max_abs_mean", "mean_var", "min_var", "max_var", "nll_per_dim")}
        return self.analysis.row() | {f"v_{k}": v for k, v in latent.items()}


def study_network(network: str, net: nn.Module, layers: Sequence[int], vae: VAE, config: InvarianceConfig, *,
                  train_images: Tensor, heldout_images: Tensor, test_images: Tensor, key: Mapping[str, Any],
                  seed: int = 0, device: str | torch.device = "cpu", progress: bool = True) -> list[LayerResult]:
    """Train (or load) one cINN per layer of ``net``, check ``v`` on held-out data and sample the test images."""
    check_layers(net, layers)
    prior = prior_spread(vae, config.n_samples, seed=seed + 1)
    results = []
    for layer in layers:
        model, record = pretrained_invariance_inn(network, net, layer, vae, train_images, config.cinn, key=key,
                                                  seed=seed, device=device, progress=progress)
        phi = truncate(net, layer).to(device)
        latent = latent_statistics(model, phi, vae, heldout_images, seed=seed + 2)
        analysis = analyse_layer(network, net, layer, model, vae, test_images, n_samples=config.n_samples,
                                 n_shown=config.n_shown_samples, seed=seed + 3, prior_spread_hu=prior)
        results.append(LayerResult(analysis, latent, record["history"]))
    return results


def checks_table(results: Sequence[LayerResult]) -> Any:
    """One row per analysed layer: spread, the Phi and f checks with their references, and v's statistics."""
    import pandas as pd

    return pd.DataFrame([r.row() for r in results]).set_index(["network", "layer"])


def spread_trend(results: Sequence[LayerResult]) -> str:
    """How the invariance spread changes over a network's analysed layers (in order), in words."""
    spreads = [r.analysis.spread_hu for r in results]
    if all(b > a for a, b in zip(spreads, spreads[1:])):
        return "grows with every layer"
    if spreads[-1] > spreads[0]:
        return "is larger at the deepest layer than at the first, but not monotonically"
    return "does not grow with depth"


def flat_region_mask(full: Tensor, max_range_hu: float = 40.0) -> Tensor:
    """Pixels inside the body where the (3x3-smoothed) full-dose image varies by less than ``max_range_hu``
    over a 7x7 neighbourhood: homogeneous tissue, where what varies is noise, not anatomy."""
    hu = lowdose_ct.denormalize(full.double())
    smooth = F.avg_pool2d(hu, 3, stride=1, padding=1, count_include_pad=False)
    local_range = F.max_pool2d(smooth, 7, stride=1, padding=3) + F.max_pool2d(-smooth, 7, stride=1, padding=3)
    return (local_range < max_range_hu) & (hu > -500.0)


def texture_sd(images: Tensor, mask: Tensor) -> float:
    """SD (HU) of the high-pass residual ``x - mean3x3(x)`` over ``mask``: the fine noise texture left in an image."""
    hu = lowdose_ct.denormalize(images.double())
    residual = hu - F.avg_pool2d(hu, 3, stride=1, padding=1, count_include_pad=False)
    if not bool(mask.any()):
        raise InvarianceError("the mask selects no pixel; no homogeneous tissue in these images")
    return float(residual[mask].std())


def denoising_comparison(low: Tensor, full: Tensor, nets: Mapping[str, nn.Module]) -> tuple[dict[str, np.ndarray], Any]:
    """Images (HU) and a table against the full-dose image for the low-dose input, each net and the full dose
    itself: PSNR, SSIM, RMSE and the fine texture SD in homogeneous tissue (:func:`texture_sd`)."""
    import pandas as pd

    outputs = {"low dose x": low} | {name: denoise(net, low) for name, net in nets.items()}
    mask = flat_region_mask(full)
    rows = {name: image_quality(out, full) | {"texture_sd_hu": texture_sd(out, mask)} for name, out in outputs.items()}
    rows["full dose y"] = {"psnr": math.inf, "ssim": 1.0, "rmse_hu": 0.0, "texture_sd_hu": texture_sd(full, mask)}
    table = pd.DataFrame(rows).T
    images = {name: lowdose_ct.denormalize(out[:, 0]).numpy() for name, out in outputs.items()}
    images["full dose y"] = lowdose_ct.denormalize(full[:, 0]).numpy()
    return images, table


def denoise(net: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """``net(images)`` without gradients, in batches, on the network's device; returned on the CPU."""
    device = next(net.parameters()).device
    with torch.no_grad():
        return torch.cat([net(chunk.to(device)).cpu() for chunk in images.split(batch_size)])


def check_layers(net: nn.Module, layers: Sequence[int]) -> None:
    """Fail clearly when a layer number does not exist in ``net``."""
    total = n_layers(net)
    bad = [k for k in layers if not 1 <= k <= total]
    if bad:
        raise InvarianceError(f"layers {bad} do not exist in {type(net).__name__} (layers 1..{total})")


def display_window() -> tuple[float, float]:
    """(vmin, vmax) in HU of :data:`WINDOW_HU`."""
    level, width = WINDOW_HU
    return level - width / 2, level + width / 2


def plot_denoising(images: Mapping[str, np.ndarray], table: Any = None, n_images: int = 3) -> Any:
    """The paper's Fig. 1 layout: one row per test slice, one column per image kind (HU, abdomen window);
    PSNR/SSIM against the full-dose image from ``table`` (rows named like the columns) in the titles."""
    import matplotlib.pyplot as plt

    from glassbox.report.plotting import show_ct

    names = list(images)
    n_images = min(checks.integer(n_images, "n_images", error=InvarianceError), min(len(v) for v in images.values()))
    fig, axes = plt.subplots(n_images, len(names), figsize=(2.4 * len(names), 2.4 * n_images), squeeze=False)
    for c, name in enumerate(names):
        title = name
        if table is not None and name in table.index:
            title += f"\n{table.loc[name, 'psnr']:.1f} dB, SSIM {table.loc[name, 'ssim']:.3f}"
        for r in range(n_images):
            show_ct(axes[r, c], images[name][r], title if r == 0 else "", window=WINDOW_HU)
    fig.tight_layout()
    return fig


def plot_layer_checks(results: Mapping[str, Sequence[LayerResult]]) -> Any:
    """Per network: the invariance spread against the layer (with the no-information level), and the
    similarity of Phi(sample) to z beside that of other test images."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, rows in results.items():
        layers = [r.analysis.layer for r in rows]
        axes[0].plot(layers, [r.analysis.spread_hu for r in rows], "o-", label=name)
        axes[1].plot(layers, [r.analysis.phi_similarity for r in rows], "o-", label=f"{name}: samples")
        axes[1].plot(layers, [r.analysis.phi_similarity_other for r in rows], "x:", label=f"{name}: other images")
    first = next(iter(results.values()))[0]
    axes[0].axhline(first.analysis.prior_spread_hu, color="gray", ls="--", label="no information kept")
    axes[0].set(xlabel="layer", ylabel="mean pixel-wise std (HU)", title="invariance spread")
    axes[1].set(xlabel="layer", ylabel="centred cosine similarity to z", title="Φ(sample) against z")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def invariance_figure(title: str, results: Sequence[LayerResult], net: nn.Module, vae: VAE, low: Tensor, full: Tensor,
                      index: int, std_max: float | None = None) -> Any:
    """The paper's Fig. 2 layout for test image ``index``: x, y, D(E(x)), f(x); then per layer the shown
    invariance samples and the pixel-wise standard deviation over all samples (colour, HU)."""
    import matplotlib.pyplot as plt

    from glassbox.report.plotting import show_ct

    device = next(net.parameters()).device
    x = low[index:index + 1]
    with torch.no_grad():
        header = {"x (low dose)": x, "y (full dose)": full[index:index + 1],
                  "D(E(x)) (VAE)": vae.reconstruct(x.to(device)).cpu(), "f(x)": net(x.to(device)).cpu()}
    k = max(r.analysis.shown.shape[1] for r in results)
    n_cols = max(k + 1, len(header))
    std_max = std_max or max(float(r.analysis.std_maps[index].max()) for r in results)
    fig, axes = plt.subplots(len(results) + 1, n_cols, figsize=(1.7 * n_cols, 1.75 * (len(results) + 1)),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for c, (name, image) in enumerate(header.items()):
        show_ct(axes[0, c], lowdose_ct.denormalize(image[0, 0]).numpy(), name, window=WINDOW_HU)
    handle = None
    for r, result in enumerate(results, start=1):
        shown = result.analysis.shown[index]
        for c in range(shown.shape[0]):
            show_ct(axes[r, c], shown[c], f"sample {c + 1}" if r == 1 else "", window=WINDOW_HU)
        handle = axes[r, n_cols - 1].imshow(result.analysis.std_maps[index], cmap="inferno", vmin=0, vmax=std_max)
        axes[r, n_cols - 1].set_title("std over samples" if r == 1 else "", fontsize=9)
        axes[r, 0].text(-0.08, 0.5, f"layer {result.analysis.layer}", transform=axes[r, 0].transAxes, rotation=90,
                        ha="right", va="center", fontsize=9)
    if handle is not None:
        fig.colorbar(handle, ax=list(axes[1:, n_cols - 1]), fraction=0.08, pad=0.04, label="HU")
    fig.suptitle(title, fontsize=10)
    return fig
