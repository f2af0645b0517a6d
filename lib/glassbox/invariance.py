"""What a CT denoiser ignores: its invariances, reconstructed with a VAE and conditional INNs.

Following Rombach et al. (ECCV 2020) as adapted to CT by Eulig et al. (ICIFXCT 2022, seeds 002/004):

- the denoiser is split as ``f = Psi o Phi`` at a layer, ``z = Phi(x)`` (:func:`glassbox.denoisers.truncate`);
- a :class:`VAE` (encoder E, decoder D) gives a complete representation ``zbar = E(x)`` of low-dose
  patches, a *posterior sample* ``mu + sigma * eps`` (logvar clamped to [-30, 20]) as in the reference code;
- a conditional INN ``t(. | z)`` (:class:`InvarianceINN`: a shallow embedder ``h = H(z)`` and
  :class:`ConditionalINN`, four FrEIA blocks of ActNorm -> affine coupling with tanh-clamped log-scales
  and ``h`` concatenated to every subnet input -> fixed random permutation) maps ``zbar`` to
  ``v ~ N(0, I)``; trained by maximum likelihood with the VAE and the denoiser frozen
  (:func:`train_invariance_inn`);
- samples that differ only in what the layer ignores are ``D(t^-1(v | z))`` with ``v ~ N(0, I)``
  (:func:`sample_invariances`); :func:`analyse_layer` adds the pixel-wise standard deviation map and the
  trust checks (``Phi`` of a sample stays close to ``z``; ``f`` of a sample stays close to ``f(x)``).

FrEIA 0.2 (PyPI) pitfalls handled here (``../shared/research/invariances.md``, section 2.4): ActNorm
initialises on the first batch in *either* direction, so :class:`ConditionalINN` refuses to run before
:meth:`ConditionalINN.initialize` saw real data (or a state dict was loaded); ``PermuteRandom(seed=k)``
reseeds the global NumPy RNG, so the global state is saved and restored around construction.

Randomness: posterior samples during training come from a generator seeded by ``(seed, the batch's
sample indices)``, so training through :func:`glassbox.train.fit` stays a pure function of its seeds
(and resumes exactly); sampling takes an explicit ``torch.Generator``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from glassbox import checks, ctdata
from glassbox.ctdata import CTDataConfig, PairedCTDataset
from glassbox.denoisers import (CHEN_LAYERS, YANG_LAYERS, ChenConfig, YangConfig, freeze, n_layers, truncate)
from glassbox.featurenet import FeatureNetConfig
from glassbox.metrics import psnr, ssim
from glassbox.train import History, fit, init_model

LOGVAR_RANGE = (-30.0, 20.0)
"""Clamp of the VAE's log-variance (the reference ``DiagonalGaussianDistribution``'s [-30, 20])."""
WINDOW_HU = (40.0, 400.0)
"""Abdomen window (level, width) in HU for display, PSNR and SSIM (ldct-benchmark: metrics on windowed images);
the same as :data:`glassbox.plotting.WINDOWS` ``["abdomen"]``."""


class InvarianceError(ValueError):
    """Bad configuration, shape or layer for the invariance analysis."""


class NotInitializedError(RuntimeError):
    """A cINN was run before its ActNorm layers were initialised from data."""


def _check_patch(size: Any, name: str = "patch_size") -> int:
    size = checks.integer(size, name, minimum=8, error=InvarianceError)
    if size & (size - 1):
        raise InvarianceError(f"{name} must be a power of two >= 8 (the VAE halves it down to 4x4), got {size}")
    return size


# --- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VAEConfig:
    """The VAE of low-dose patches: conv encoder/decoder, Gaussian likelihood with std ``recon_sigma_hu``."""

    latent_dim: int = 64
    width: int = 32
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    recon_sigma_hu: float = 20.0
    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("latent_dim", "width", "epochs", "batch_size"):
            checks.integer(getattr(self, name), name, minimum=2 if name == "latent_dim" else 1, error=InvarianceError)
        for name in ("lr", "recon_sigma_hu", "kl_weight"):
            checks.positive_number(getattr(self, name), name, error=InvarianceError)


@dataclass(frozen=True)
class CINNConfig:
    """The conditional INN: ``n_blocks`` (4 in the paper) x [ActNorm, affine coupling, permutation].

    ``hidden``/``hidden_depth``: the s- and t-subnets' width and number of hidden-to-hidden layers;
    ``clamp``: log-scales are ``clamp * tanh(.)``; ``emb_dim``/``embed_width``: H's output size and
    first convolution's width.
    """

    n_blocks: int = 4
    hidden: int = 256
    hidden_depth: int = 1
    clamp: float = 1.0
    emb_dim: int = 64
    embed_width: int = 32
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4

    def __post_init__(self) -> None:
        for name in ("n_blocks", "hidden", "emb_dim", "embed_width", "epochs", "batch_size"):
            checks.integer(getattr(self, name), name, error=InvarianceError)
        if isinstance(self.hidden_depth, bool) or not isinstance(self.hidden_depth, int) or self.hidden_depth < 0:
            raise InvarianceError(f"hidden_depth must be a non-negative integer, got {self.hidden_depth!r}")
        checks.positive_number(self.clamp, "clamp", error=InvarianceError)
        checks.positive_number(self.lr, "lr", error=InvarianceError)


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
        data=dataclasses.replace(ctdata.PROFILES["quick"], dose=_DOSE),
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
        data=dataclasses.replace(ctdata.PROFILES["paper"], dose=_DOSE),
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


# --- data ---------------------------------------------------------------------------------------------

def data_key(config: InvarianceConfig, seed: int, data_dir: str | Path | None = None, *,
             pairs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """What identifies the training data of the chapter (for store keys); ``pairs`` come from
    :func:`glassbox.ctdata.get_pairs` ``(config.data, seed, data_dir)``.

    The key holds the content fingerprint of ``pairs`` (:func:`glassbox.ctdata.pairs_fingerprint`), never the
    folder's path: changed DICOM files give new keys (no stale models), a moved folder the same ones. With a
    ``data_dir``, ``pairs`` are required; simulated data are identified by their configuration and seed.
    """
    key = {"data": config.data, "patch_size": config.patch_size, "patches_per_slice": config.patches_per_slice,
           "seed": seed}
    if data_dir is not None and pairs is None:
        raise InvarianceError(f"data_key: with data_dir={str(data_dir)!r}, pass pairs= (the slices read from it) "
                              "so that the store key holds their content, not the folder's path")
    if pairs is not None:
        key["pairs"] = ctdata.pairs_fingerprint(pairs)
    return key


def chapter_datasets(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], config: InvarianceConfig,
                     seed: int = 0) -> dict[str, PairedCTDataset]:
    """Patient-level split; ``train``/``val``/``test`` patches of ``patch_size`` and whole ``test_slices``."""
    splits = ctdata.split_patients(list(pairs), config.data.split_fractions, seed)
    missing = [name for name in ctdata.SPLITS if not splits[name]]
    if missing:
        raise InvarianceError(f"the data have too few patients for the splits {missing}; add patients")
    out = {name: PairedCTDataset(pairs, ids, patch_size=config.patch_size, patches_per_slice=config.patches_per_slice,
                                 seed=seed) for name, ids in splits.items()}
    out["test_slices"] = PairedCTDataset(pairs, splits["test"])
    return out


class IndexedImages(Dataset):
    """``(index, image)`` pairs of a stack of images: lets a loss draw noise as a pure function of the batch."""

    def __init__(self, images: Tensor):
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1:
            raise InvarianceError(f"images must be a (N, 1, H, W) tensor, got {getattr(images, 'shape', type(images))}")
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return torch.tensor(index), self.images[index]


def batch_generator(seed: int, indices: Tensor) -> torch.Generator:
    """A CPU generator seeded by ``(seed, indices)``: the same batch always gets the same noise."""
    entropy = [int(seed), *(int(i) for i in indices.reshape(-1).tolist())]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))


def _randn_like(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


# --- the VAE ------------------------------------------------------------------------------------------------

@dataclass
class DiagonalGaussian:
    """The VAE posterior N(mean, exp(logvar)); logvar is clamped to :data:`LOGVAR_RANGE`."""

    mean: Tensor
    logvar: Tensor

    def __post_init__(self) -> None:
        self.logvar = self.logvar.clamp(*LOGVAR_RANGE)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator) -> Tensor:
        """``mean + std * eps`` (the reference code's ``zbar``)."""
        return self.mean + self.std * _randn_like(self.mean, generator)

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per sample, summed over dimensions."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=1)


class VAE(nn.Module):
    """Convolutional VAE of ``(N, 1, p, p)`` patches (``p`` a power of two): stride-2 4x4 convs down to 4x4, a
    linear layer to (mean, logvar); the decoder mirrors it with nearest up-sampling and 3x3 convs.

    Inputs are standardised by ``shift``/``scale`` buffers (set from data by :func:`train_vae`).
    """

    def __init__(self, patch_size: int, latent_dim: int = 64, width: int = 32):
        super().__init__()
        self.patch_size = _check_patch(patch_size)
        self.latent_dim = checks.integer(latent_dim, "latent_dim", minimum=2, error=InvarianceError)
        width = checks.integer(width, "width", error=InvarianceError)
        n_down = int(math.log2(patch_size // 4))
        widths = [width * 2**min(k, 3) for k in range(n_down)]
        encoder: list[nn.Module] = []
        channels = 1
        for w in widths:
            encoder += [nn.Conv2d(channels, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = w
        self.encoder = nn.Sequential(*encoder, nn.Flatten(), nn.Linear(channels * 16, 2 * latent_dim))
        self.bottom = (channels, 4, 4)
        decoder: list[nn.Module] = [nn.Linear(latent_dim, channels * 16), nn.LeakyReLU(0.2),
                                    nn.Unflatten(1, self.bottom)]
        for w in reversed([width] + widths[:-1]):
            decoder += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, w, 3, padding=1),
                        nn.LeakyReLU(0.2)]
            channels = w
        decoder.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.decoder = nn.Sequential(*decoder)
        self.register_buffer("shift", torch.tensor(1.0))
        self.register_buffer("scale", torch.tensor(0.25))

    def _check(self, x: Tensor) -> None:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1:] != (1, self.patch_size, self.patch_size):
            raise InvarianceError(f"the VAE expects (N, 1, {self.patch_size}, {self.patch_size}) patches, "
                                  f"got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")

    def encode(self, x: Tensor) -> DiagonalGaussian:
        self._check(x)
        mean, logvar = self.encoder((x - self.shift) / self.scale).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar)

    def decode(self, zbar: Tensor) -> Tensor:
        if zbar.ndim != 2 or zbar.shape[1] != self.latent_dim:
            raise InvarianceError(f"the decoder expects (N, {self.latent_dim}) codes, got {tuple(zbar.shape)}")
        return self.decoder(zbar) * self.scale + self.shift

    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``D(E(x))``: decode the posterior mean, or a posterior sample when ``generator`` is given."""
        posterior = self.encode(x)
        return self.decode(posterior.mode() if generator is None else posterior.sample(generator))


def vae_loss(vae: VAE, x: Tensor, generator: torch.Generator, config: VAEConfig) -> Tensor:
    """Negative ELBO per image: sum (x - D(zbar))^2 / (2 sigma^2) + kl_weight * KL, zbar a posterior sample."""
    posterior = vae.encode(x)
    reconstruction = vae.decode(posterior.sample(generator))
    sigma = config.recon_sigma_hu / ctdata.HU_SCALE
    squared = (reconstruction - x).pow(2).flatten(1).sum(1) / (2 * sigma**2)
    return (squared + config.kl_weight * posterior.kl()).mean()


def train_vae(images: Tensor, config: VAEConfig = VAEConfig(), *, seed: int = 0, device: str | torch.device = "cpu",
              checkpoint_dir: Path | str | None = None, progress: bool = True) -> tuple[VAE, History]:
    """Fit the :class:`VAE` to ``images`` (N, 1, p, p) (network units) through :func:`glassbox.train.fit`."""
    data = IndexedImages(images)
    vae = init_model(lambda: VAE(images.shape[-1], config.latent_dim, config.width), init_seed=seed)
    vae.shift.fill_(float(images.mean()))
    vae.scale.fill_(float(images.std().clamp_min(1e-3)))

    def loss_fn(model: nn.Module, batch: Any) -> Tensor:
        indices, x = batch
        return vae_loss(model, x, batch_generator(seed, indices), config)

    history = fit(vae, data, loss_fn, epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  checkpoint_dir=checkpoint_dir, desc="VAE of low-dose patches", progress=progress,
                  fingerprint=dataclasses.asdict(config))
    return freeze(vae), history


def _windowed(x: Tensor | np.ndarray) -> Tensor:
    """Network units -> the :data:`WINDOW_HU` window mapped to [0, 1] (clipped)."""
    centre, width = WINDOW_HU
    hu = ctdata.denormalize(torch.as_tensor(x, dtype=torch.float64))
    return ((hu - (centre - width / 2)) / width).clamp(0.0, 1.0)


def image_quality(estimate: Tensor, reference: Tensor) -> dict[str, float]:
    """PSNR [dB] and SSIM on the windowed images (data range 1), RMSE in HU; means over the stack."""
    a, b = _windowed(estimate.detach().cpu()), _windowed(reference.detach().cpu())
    values = [(psnr(a[i], b[i], 1.0), ssim(a[i, 0], b[i, 0], 1.0)) for i in range(a.shape[0])]
    rmse = float((ctdata.HU_SCALE * (estimate.detach().cpu().double() - reference.detach().cpu().double())
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


# --- the conditional INN --------------------------------------------------------------------------------------

def _subnet(c_in: int, c_out: int, *, hidden: int, depth: int, zero_init: bool) -> nn.Module:
    """The s- or t-network of a coupling: Linear + LeakyReLU, ``depth`` hidden layers, Linear (zero-initialised)."""
    layers: list[nn.Module] = [nn.Linear(c_in, hidden), nn.LeakyReLU()]
    for _ in range(depth):
        layers += [nn.Linear(hidden, hidden), nn.LeakyReLU()]
    layers.append(nn.Linear(hidden, c_out))
    if zero_init:  # each coupling starts as the identity: stable maximum-likelihood training
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


class ConditionalINN(nn.Module):
    """``t(x | h)``: ``n_blocks`` x [ActNorm -> RNVP affine coupling (log-scales ``clamp * tanh``, ``h``
    concatenated to every s/t input) -> fixed random permutation], built with FrEIA 0.2's ``SequenceINN``.

    ``cond_dim=None`` gives the unconditional flow. ``forward`` returns ``(v, log|det dv/dx|)``.
    """

    def __init__(self, dim: int, cond_dim: int | None = None, n_blocks: int = 4, hidden: int = 256,
                 hidden_depth: int = 1, clamp: float = 1.0, permutation_seed: int = 0, zero_init: bool = True):
        super().__init__()
        self.dim = checks.integer(dim, "dim", minimum=2, error=InvarianceError)
        self.cond_dim = None if cond_dim is None else checks.integer(cond_dim, "cond_dim", error=InvarianceError)
        n_blocks = checks.integer(n_blocks, "n_blocks", error=InvarianceError)
        subnet = partial(_subnet, hidden=checks.integer(hidden, "hidden", error=InvarianceError), depth=int(hidden_depth), zero_init=zero_init)
        if isinstance(permutation_seed, bool) or not isinstance(permutation_seed, (int, np.integer)) \
                or permutation_seed < 0:
            raise InvarianceError(f"permutation_seed must be a non-negative integer, got {permutation_seed!r}")
        seeds = np.random.SeedSequence([int(permutation_seed), 7]).generate_state(n_blocks)
        self.flow = Ff.SequenceINN(self.dim)
        saved = np.random.get_state()  # FrEIA's PermuteRandom reseeds the global NumPy RNG: leave it as it was
        try:
            for k in range(n_blocks):
                self.flow.append(Fm.ActNorm)
                coupling = dict(subnet_constructor=subnet, clamp=checks.positive_number(clamp, "clamp", error=InvarianceError),
                                clamp_activation="TANH")
                if self.cond_dim is None:
                    self.flow.append(Fm.RNVPCouplingBlock, **coupling)
                else:
                    self.flow.append(Fm.RNVPCouplingBlock, cond=0, cond_shape=(self.cond_dim,), **coupling)
                self.flow.append(Fm.PermuteRandom, seed=int(seeds[k]))
        finally:
            np.random.set_state(saved)

    @property
    def actnorms(self) -> list[Fm.ActNorm]:
        return [m for m in self.flow.module_list if isinstance(m, Fm.ActNorm)]

    @property
    def initialized(self) -> bool:
        """True once every ActNorm has its data-dependent scale and bias (or loaded them from a state dict)."""
        return all(not m.init_on_next_batch for m in self.actnorms)

    def _check(self, x: Tensor, h: Tensor | None, name: str) -> list[Tensor]:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InvarianceError(f"{name} must be (N, {self.dim}), got {tuple(x.shape)}")
        if self.cond_dim is None:
            if h is not None:
                raise InvarianceError("this INN is unconditional (cond_dim=None) but a condition was given")
            return []
        if h is None or h.ndim != 2 or h.shape != (x.shape[0], self.cond_dim):
            raise InvarianceError(f"the condition must be ({x.shape[0]}, {self.cond_dim}), "
                                  f"got {None if h is None else tuple(h.shape)}")
        return [h]

    def initialize(self, x: Tensor, h: Tensor | None = None) -> None:
        """Data-dependent ActNorm initialisation: one forward pass on a real batch (at least 2 samples)."""
        if x.shape[0] < 2:
            raise InvarianceError(f"ActNorm needs a batch of at least 2 samples to initialise, got {x.shape[0]}")
        for m in self.actnorms:
            m.init_on_next_batch = True
        with torch.no_grad():
            self.flow(x, c=self._check(x, h, "x"), rev=False)

    def forward(self, x: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not self.initialized:
            raise NotInitializedError("call initialize(x, h) on a batch of real data (or load a state dict) before "
                                      "running the INN: FrEIA's ActNorm would initialise on whatever comes first")
        v, log_det = self.flow(x, c=self._check(x, h, "x"), rev=False, jac=True)
        return v, log_det

    def inverse(self, v: Tensor, h: Tensor | None = None) -> Tensor:
        if not self.initialized:
            raise NotInitializedError("call initialize(x, h) on real data before sampling: FrEIA's ActNorm would "
                                      "otherwise initialise on the latent batch")
        x, _ = self.flow(v, c=self._check(v, h, "v"), rev=True, jac=False)
        return x


class ConditionEmbedder(nn.Module):
    """The shallow network H: standardise z per channel, stride-2 4x4 convs + LeakyReLU down to at most 4x4, linear.

    The standardisation (``mean``/``std`` buffers) is set from data by :meth:`fit_standardization`.
    """

    def __init__(self, channels: int, size: int, emb_dim: int, width: int = 32):
        super().__init__()
        channels, size = checks.integer(channels, "channels", error=InvarianceError), checks.integer(size, "size", error=InvarianceError)
        emb_dim, width = checks.integer(emb_dim, "emb_dim", error=InvarianceError), checks.integer(width, "width", error=InvarianceError)
        layers: list[nn.Module] = []
        current, w = channels, width
        while size > 4:
            layers += [nn.Conv2d(current, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            current, size, w = w, size // 2, min(2 * w, 4 * width)
        self.shape = (channels,)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(current * size * size, emb_dim))
        self.register_buffer("mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def fit_standardization(self, z: Tensor) -> None:
        self.mean.copy_(z.mean(dim=(0, 2, 3), keepdim=True))
        self.std.copy_(z.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6))

    def forward(self, z: Tensor) -> Tensor:
        return self.net((z - self.mean) / self.std)


class InvarianceINN(nn.Module):
    """``t(zbar | z)`` for one layer: embedder ``h = H(z)`` + :class:`ConditionalINN` on ``zbar``."""

    def __init__(self, dim: int, cond_shape: Sequence[int], config: CINNConfig = CINNConfig(),
                 permutation_seed: int = 0):
        super().__init__()
        if len(cond_shape) != 3 or cond_shape[1] != cond_shape[2]:
            raise InvarianceError(f"cond_shape must be (C, s, s) of a square feature map, got {tuple(cond_shape)}")
        self.cond_shape = tuple(int(c) for c in cond_shape)
        self.embed = ConditionEmbedder(cond_shape[0], cond_shape[1], config.emb_dim, config.embed_width)
        self.flow = ConditionalINN(dim, config.emb_dim, config.n_blocks, config.hidden, config.hidden_depth,
                                   config.clamp, permutation_seed)

    @property
    def initialized(self) -> bool:
        return self.flow.initialized

    def initialize(self, zbar: Tensor, z: Tensor) -> None:
        """Set H's input standardisation and the flow's ActNorms from one real batch."""
        self.embed.fit_standardization(z)
        with torch.no_grad():
            h = self.embed(z)
        self.flow.initialize(zbar, h)

    def forward(self, zbar: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow(zbar, self.embed(z))

    def inverse(self, v: Tensor, z: Tensor) -> Tensor:
        return self.flow.inverse(v, self.embed(z))


def nll_loss(v: Tensor, log_det: Tensor) -> Tensor:
    """Negative log-likelihood per dimension, ``mean(||v||^2 / 2 - log|det|) / D`` (constant dropped)."""
    return (0.5 * v.pow(2).sum(1) - log_det).mean() / v.shape[1]


def _encode_pair(phi: nn.Module, vae: VAE, x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        return vae.encode(x).sample(generator), phi(x)


def train_invariance_inn(phi: nn.Module, vae: VAE, images: Tensor, config: CINNConfig = CINNConfig(), *,
                         seed: int = 0, device: str | torch.device = "cpu", checkpoint_dir: Path | str | None = None,
                         progress: bool = True, desc: str = "cINN") -> tuple[InvarianceINN, History]:
    """Train ``t(zbar | Phi(x))`` by maximum likelihood on ``images``; ``phi`` and ``vae`` stay frozen.

    ActNorm and H's standardisation are initialised on the first (up to) 256 images before training.
    """
    device = torch.device(device)
    phi, vae = freeze(phi).to(device), freeze(vae).to(device)
    with torch.no_grad():
        cond_shape = tuple(phi(images[:1].to(device)).shape[1:])
    model = init_model(lambda: InvarianceINN(vae.latent_dim, cond_shape, config, permutation_seed=seed),
                       init_seed=seed)
    model.to(device)
    first = images[:256].to(device)
    model.initialize(*_encode_pair(phi, vae, first, torch.Generator().manual_seed(seed)))

    def loss_fn(net: nn.Module, batch: Any) -> Tensor:
        indices, x = batch
        zbar, z = _encode_pair(phi, vae, x, batch_generator(seed, indices))
        return nll_loss(*net(zbar, z))

    history = fit(model, IndexedImages(images), loss_fn, epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  checkpoint_dir=checkpoint_dir, desc=desc, progress=progress, fingerprint=dataclasses.asdict(config))
    model.eval()
    return model, history


def latent_statistics(model: InvarianceINN, phi: nn.Module, vae: VAE, images: Tensor, *, seed: int = 0,
                      batch_size: int = 256) -> dict[str, Any]:
    """``v = t(E(x) | Phi(x))`` on (held-out) images: per-dimension mean and variance, and the NLL per dimension."""
    device = next(model.parameters()).device
    vs, nlls = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            zbar, z = _encode_pair(phi, vae, x, torch.Generator().manual_seed(seed + start))
            v, log_det = model(zbar, z)
            vs.append(v.cpu())
            nlls.append(float(nll_loss(v, log_det)) * x.shape[0])
    v = torch.cat(vs).double()
    mean, var = v.mean(0), v.var(0)
    return {"mean": mean.numpy(), "var": var.numpy(), "n": int(v.shape[0]),
            "max_abs_mean": float(mean.abs().max()), "mean_var": float(var.mean()),
            "min_var": float(var.min()), "max_var": float(var.max()),
            "nll_per_dim": float(np.sum(nlls) / v.shape[0]) + 0.5 * math.log(2 * math.pi)}


# --- sampling and checks ------------------------------------------------------------------------------------

def sample_invariances(model: InvarianceINN, vae: VAE, z: Tensor, n_samples: int,
                       generator: torch.Generator) -> Tensor:
    """``n_samples`` images ``D(t^-1(v | z))``, ``v ~ N(0, I)``, for one representation ``z`` (1, C, s, s)."""
    if z.ndim != 4 or z.shape[0] != 1:
        raise InvarianceError(f"z must be the representation of one image, (1, C, s, s); got {tuple(z.shape)}")
    n_samples = checks.integer(n_samples, "n_samples", error=InvarianceError)
    device = next(model.parameters()).device
    with torch.no_grad():
        h = model.embed(z.to(device)).expand(n_samples, -1)
        v = torch.randn((n_samples, vae.latent_dim), generator=generator).to(device)
        return vae.decode(model.flow.inverse(v, h))


def centred_cosine(a: Tensor, b: Tensor, centre: Tensor) -> Tensor:
    """Cosine similarity of ``a - centre`` and ``b - centre`` per sample (flattened); centre = mean feature map."""
    a, b = (a - centre).flatten(1).double(), (b - centre).flatten(1).double()
    return F.cosine_similarity(a, b, dim=1)


def _rmse_hu(a: Tensor, b: Tensor) -> Tensor:
    return ctdata.HU_SCALE * (a.double() - b.double()).pow(2).flatten(1).mean(1).sqrt()


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
            shown.append(ctdata.denormalize(samples[:n_shown, 0]).cpu().numpy())
            std_maps.append(ctdata.HU_SCALE * samples[:, 0].double().std(0).cpu().numpy())
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
    return float(ctdata.HU_SCALE * images[:, 0].double().std(0).mean())


# --- chapter pipeline through the store ------------------------------------------------------------------------

def pretrained_vae(images: Tensor, config: VAEConfig, *, data_key: Mapping[str, Any], seed: int = 0,
                   device: str | torch.device = "cpu", progress: bool = True) -> tuple[VAE, dict[str, Any]]:
    """The VAE for ``(config, data_key, seed)`` from the artifact store (trained on first use)."""
    from glassbox.store import get_or_compute

    def compute() -> dict[str, Any]:
        vae, history = train_vae(images, config, seed=seed, device=device, progress=progress)
        return {"state_dict": {k: v.cpu() for k, v in vae.state_dict().items()}, "history": history.epochs}

    record = get_or_compute("invariance-vae", {"config": config, "data": dict(data_key), "seed": seed}, compute,
                            seed=seed, device=device, progress=progress)
    vae = VAE(images.shape[-1], config.latent_dim, config.width)
    vae.load_state_dict(record["state_dict"])
    return freeze(vae).to(device), record


def pretrained_invariance_inn(network: str, net: nn.Module, layer: int, vae: VAE, images: Tensor,
                              config: CINNConfig, *, key: Mapping[str, Any], seed: int = 0,
                              device: str | torch.device = "cpu", progress: bool = True
                              ) -> tuple[InvarianceINN, dict[str, Any]]:
    """The cINN of ``layer`` of ``net`` from the artifact store (trained on first use).

    ``key`` must identify ``net``, ``vae`` and ``images`` (their configurations, data and seed).
    """
    from glassbox.store import get_or_compute

    phi = truncate(net, layer)

    def compute() -> dict[str, Any]:
        model, history = train_invariance_inn(phi, vae, images, config, seed=seed, device=device, progress=progress,
                                              desc=f"cINN {network} layer {layer}")
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history.epochs,
                "cond_shape": model.cond_shape}

    record = get_or_compute("invariance-cinn", {"network": network, "layer": layer, "config": config,
                                                "key": dict(key), "seed": seed}, compute,
                            seed=seed, device=device, progress=progress)
    model = InvarianceINN(vae.latent_dim, record["cond_shape"], config, permutation_seed=seed)
    model.load_state_dict(record["state_dict"])  # marks every ActNorm as initialised
    model.eval()
    return model.to(device), record


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
    hu = ctdata.denormalize(full.double())
    smooth = F.avg_pool2d(hu, 3, stride=1, padding=1, count_include_pad=False)
    local_range = F.max_pool2d(smooth, 7, stride=1, padding=3) + F.max_pool2d(-smooth, 7, stride=1, padding=3)
    return (local_range < max_range_hu) & (hu > -500.0)


def texture_sd(images: Tensor, mask: Tensor) -> float:
    """SD (HU) of the high-pass residual ``x - mean3x3(x)`` over ``mask``: the fine noise texture left in an image."""
    hu = ctdata.denormalize(images.double())
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
    images = {name: ctdata.denormalize(out[:, 0]).numpy() for name, out in outputs.items()}
    images["full dose y"] = ctdata.denormalize(full[:, 0]).numpy()
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


# --- figures ------------------------------------------------------------------------------------------------------

def display_window() -> tuple[float, float]:
    """(vmin, vmax) in HU of :data:`WINDOW_HU`."""
    level, width = WINDOW_HU
    return level - width / 2, level + width / 2


def plot_denoising(images: Mapping[str, np.ndarray], table: Any = None, n_images: int = 3) -> Any:
    """The paper's Fig. 1 layout: one row per test slice, one column per image kind (HU, abdomen window);
    PSNR/SSIM against the full-dose image from ``table`` (rows named like the columns) in the titles."""
    import matplotlib.pyplot as plt

    from glassbox.plotting import show_ct

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

    from glassbox.plotting import show_ct

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
        show_ct(axes[0, c], ctdata.denormalize(image[0, 0]).numpy(), name, window=WINDOW_HU)
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
