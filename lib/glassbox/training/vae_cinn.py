"""Training the VAE and the conditional INNs of the invariance analysis (Rombach et al.; Eulig et al.).

- :func:`train_vae` minimises the negative ELBO with a Gaussian likelihood (:func:`vae_loss`);
- :func:`train_invariance_inn` trains one cINN ``t(. | z)`` per analysed layer by maximum likelihood, with
  the VAE and the denoiser frozen; the cINN sees a *posterior sample* ``mu + sigma * eps`` of the VAE, as in
  the reference code;
- :func:`sample_invariances` draws ``v ~ N(0, I)`` and decodes ``D(t^-1(v | z))``;
  :func:`latent_statistics` checks that ``v`` is standard normal on held-out data;
- :func:`pretrained_vae` / :func:`pretrained_invariance_inn` go through the artifact store.

Randomness: posterior samples during training come from a generator seeded by ``(seed, the batch's sample
indices)``, so training through :func:`glassbox.training.loop.fit` stays a pure function of its seeds (and
resumes exactly); sampling takes an explicit ``torch.Generator``.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from glassbox.core import checks, dryrun
from glassbox.core.store import get_or_compute
from glassbox.core.training_settings import TrainingSettings
from glassbox.data import lowdose_ct
from glassbox.models.cinn import CINNConfig, InvarianceINN, nll_loss
from glassbox.models.common import (
    InvarianceError,
    freeze,
    init_model,
    truncate,
)
from glassbox.models.vae import VAE, DiagonalGaussian
from glassbox.training.loop import History, fit

PRECOMPUTE_BYTES = 1 << 30
"""Largest stack of layer representations (bytes) :func:`train_invariance_inn` keeps in memory instead of
recomputing ``Phi`` for every batch."""


@dataclass(frozen=True, kw_only=True)
class VAEConfig(TrainingSettings):
    """The VAE of CT patches: residual conv encoder/decoder (``n_res`` blocks per resolution) down to a
    ``bottom`` x ``bottom`` map, a flat or ``spatial`` latent (see :class:`glassbox.models.vae.VAE`), Gaussian
    likelihood with std ``recon_sigma_hu``, KL weight ``kl_weight``, Adam at ``lr``.

    Design measurement (``invariances`` quick data, 2016 training patches of 32 x 32, seed 0, one thread; RMSE of
    ``D(E(x))`` in the abdomen window on the 16 analysed test patches / on held-out patches):

    ======================================  ======  =========  ==========  =======
    latent                                  epochs  analysed   held-out    CPU s
    ======================================  ======  =========  ==========  =======
    flat 128 (4x4 bottleneck, width 16)     6       89.3 HU    57.9 HU     30
    flat 256 (4x4, width 16)                6       87.0       56.7        28
    flat 256 + residual blocks (lr 3e-4)    6       89.5       58.1        65
    spatial 8x8x4 = 256 (width 16)          6       55.8       34.1        25
    spatial 8x8x4 = 256                     12      43.0       32.7        46
    spatial 16x16x1 = 256                   12      33.2       23.8        37
    ======================================  ======  =========  ==========  =======

    The low-dose noise itself is about 20 HU in that window. With a flat latent, residual blocks at width 32 and
    Adam at 1e-3 diverged (loss 1e10 by epoch 3) even with zero-initialised branches.
    """

    error_type = InvarianceError

    latent_dim: int = 64
    width: int = 32
    n_res: int = 1
    bottom: int = 4
    spatial: bool = False
    epochs: int = 10  # defaults of TrainingSettings' fields for this training
    batch_size: int = 64
    lr: float = 1e-3
    recon_sigma_hu: float = 20.0
    kl_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.integer(self.latent_dim, "latent_dim", minimum=2, error=InvarianceError)
        checks.integer(self.width, "width", error=InvarianceError)
        checks.integer(self.n_res, "n_res", minimum=0, error=InvarianceError)
        for name in ("recon_sigma_hu", "kl_weight"):
            checks.positive_number(getattr(self, name), name, error=InvarianceError)

    def build(self, patch_size: int) -> VAE:
        """An untrained :class:`VAE` of this configuration."""
        return VAE(patch_size, self.latent_dim, self.width, self.n_res, self.bottom, self.spatial)




class IndexedImages(Dataset):
    """``(index, image)`` pairs of a stack of images (``(index, image, paired image)`` with ``paired``): lets a
    loss draw noise as a pure function of the batch."""

    def __init__(self, images: Tensor, paired: Tensor | None = None):
        for name, value in (("images", images), ("paired", paired)):
            if value is None:
                continue
            if not isinstance(value, Tensor) or value.ndim != 4 or value.shape[1] != 1:
                raise InvarianceError(f"{name} must be a (N, 1, H, W) tensor, got {getattr(value, 'shape', type(value))}")
        if paired is not None and paired.shape != images.shape:
            raise InvarianceError(f"paired images must match images, got {tuple(paired.shape)} and {tuple(images.shape)}")
        self.images, self.paired = images, paired

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[Tensor, ...]:
        if self.paired is None:
            return torch.tensor(index), self.images[index]
        return torch.tensor(index), self.images[index], self.paired[index]


def batch_generator(seed: int, indices: Tensor) -> torch.Generator:
    """A CPU generator seeded by ``(seed, indices)``: the same batch always gets the same noise."""
    entropy = [int(seed), *(int(i) for i in indices.reshape(-1).tolist())]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))




def vae_loss(vae: VAE, x: Tensor, generator: torch.Generator, config: VAEConfig) -> Tensor:
    """Negative ELBO per image: sum (x - D(zbar))^2 / (2 sigma^2) + kl_weight * KL, zbar a posterior sample."""
    posterior = vae.encode(x)
    reconstruction = vae.decode(posterior.sample(generator))
    sigma = config.recon_sigma_hu / lowdose_ct.HU_SCALE
    squared = (reconstruction - x).pow(2).flatten(1).sum(1) / (2 * sigma**2)
    return (squared + config.kl_weight * posterior.kl()).mean()


def train_vae(images: Tensor, config: VAEConfig = VAEConfig(), *, seed: int = 0, device: str | torch.device = "cpu",
              checkpoint_dir: Path | str | None = None, progress: bool = True) -> tuple[VAE, History]:
    """Fit the :class:`VAE` to ``images`` (N, 1, p, p) (network units) through :func:`glassbox.training.loop.fit`."""
    data = IndexedImages(images)
    vae = init_model(lambda: config.build(images.shape[-1]), init_seed=seed)
    vae.shift.fill_(float(images.mean()))
    vae.scale.fill_(float(images.std().clamp_min(1e-3)))

    def loss_fn(model: nn.Module, batch: Any) -> Tensor:
        indices, x = batch
        return vae_loss(model, x, batch_generator(seed, indices), config)

    history = fit(vae, data, loss_fn, epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  checkpoint_dir=checkpoint_dir, desc="VAE", progress=progress,
                  fingerprint=dataclasses.asdict(config))
    return freeze(vae), history


def _encode_pair(phi: nn.Module, vae: VAE, x: Tensor, generator: torch.Generator,
                 x_vae: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(a posterior sample of ``E(x_vae)``, ``Phi(x)``); ``x_vae`` defaults to ``x``."""
    with torch.no_grad():
        return vae.encode(x if x_vae is None else x_vae).sample(generator), phi(x)


def train_invariance_inn(phi: nn.Module, vae: VAE, images: Tensor, config: CINNConfig = CINNConfig(), *,
                         seed: int = 0, device: str | torch.device = "cpu", checkpoint_dir: Path | str | None = None,
                         progress: bool = True, desc: str = "cINN", vae_images: Tensor | None = None
                         ) -> tuple[InvarianceINN, History]:
    """Train ``t(zbar | Phi(x))`` by maximum likelihood on ``images``; ``phi`` and ``vae`` stay frozen.

    ``zbar`` encodes ``vae_images`` (paired with ``images``, e.g. the full-dose images for invariances shown
    in the target domain; default: ``images`` themselves). ActNorm and H's standardisation are initialised on
    the first (up to) 256 images before training.

    Both networks are frozen, so the VAE's posterior of every image and ``Phi`` of every image are computed once
    (``Phi`` only while the stack stays under ``PRECOMPUTE_BYTES``); each step then draws its posterior sample
    ``mu + sigma * eps`` from a generator seeded by the batch, as before -- the same objective for a fraction of
    the cost of encoding every batch again in every epoch.
    """
    device = torch.device(device)
    phi, vae = freeze(phi).to(device), freeze(vae).to(device)
    if dryrun.active() and images.shape[0] > config.batch_size:  # one step: encode only the batch it draws from
        dryrun.note("cINN encoding")
        images = images[:config.batch_size]
        vae_images = None if vae_images is None else vae_images[:config.batch_size]
    with torch.no_grad():
        cond_shape = tuple(phi(images[:1].to(device)).shape[1:])
        encoded = images if vae_images is None else vae_images
        posteriors = [vae.encode(chunk.to(device)) for chunk in encoded.split(256)]
        mean = torch.cat([p.mean for p in posteriors])
        logvar = torch.cat([p.logvar for p in posteriors])
        z_all = None
        if images.shape[0] * math.prod(cond_shape) * 4 <= PRECOMPUTE_BYTES:
            z_all = torch.cat([phi(chunk.to(device)) for chunk in images.split(256)])
    model = init_model(lambda: InvarianceINN(vae.latent_dim, cond_shape, config, permutation_seed=seed,
                                             code_shape=getattr(vae, "latent_shape", None)),
                       init_seed=seed)
    model.to(device)
    first = images[:256].to(device)
    first_vae = None if vae_images is None else vae_images[:256].to(device)
    model.initialize(*_encode_pair(phi, vae, first, torch.Generator().manual_seed(seed), first_vae))

    def loss_fn(net: nn.Module, batch: Any) -> Tensor:
        indices, x = batch
        index = indices.to(mean.device)
        zbar = DiagonalGaussian(mean[index], logvar[index]).sample(batch_generator(seed, indices))
        with torch.no_grad():
            z = z_all[index] if z_all is not None else phi(x)
        return nll_loss(*net(zbar, z))

    history = fit(model, IndexedImages(images), loss_fn, epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  checkpoint_dir=checkpoint_dir, desc=desc, progress=progress, fingerprint=dataclasses.asdict(config))
    model.eval()
    return model, history


def latent_statistics(model: InvarianceINN, phi: nn.Module, vae: VAE, images: Tensor, *, seed: int = 0,
                      batch_size: int = 256, vae_images: Tensor | None = None) -> dict[str, Any]:
    """``v = t(E(x) | Phi(x))`` on (held-out) images: per-dimension mean and variance, and the NLL per dimension.

    ``vae_images``: what the VAE encodes, paired with ``images`` (as in :func:`train_invariance_inn`)."""
    device = next(model.parameters()).device
    vs, nlls = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(device)
            x_vae = None if vae_images is None else vae_images[start:start + batch_size].to(device)
            zbar, z = _encode_pair(phi, vae, x, torch.Generator().manual_seed(seed + start), x_vae)
            v, log_det = model(zbar, z)
            vs.append(v.cpu())
            nlls.append(float(nll_loss(v, log_det)) * x.shape[0])
    v = torch.cat(vs).double()
    mean, var = v.mean(0), v.var(0)
    return {"mean": mean.numpy(), "var": var.numpy(), "n": int(v.shape[0]),
            "max_abs_mean": float(mean.abs().max()), "mean_var": float(var.mean()),
            "min_var": float(var.min()), "max_var": float(var.max()),
            "nll_per_dim": float(np.sum(nlls) / v.shape[0]) + 0.5 * math.log(2 * math.pi)}


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


def vae_entry(config: VAEConfig, *, data_key: Mapping[str, Any], seed: int = 0, domain: str | None = None
              ) -> tuple[str, dict[str, Any]]:
    """The store entry name and key of :func:`pretrained_vae` (what a study's ``plan()`` lists)."""
    key = {"config": config, "data": dict(data_key), "seed": seed}
    return "invariance-vae", key if domain is None else key | {"domain": domain}


def pretrained_vae(images: Tensor, config: VAEConfig, *, data_key: Mapping[str, Any], seed: int = 0,
                   device: str | torch.device = "cpu", progress: bool = True, domain: str | None = None
                   ) -> tuple[VAE, dict[str, Any]]:
    """The VAE for ``(config, data_key, seed)`` from the artifact store (trained on first use).

    ``domain`` (e.g. ``"low dose"``, ``"full dose"``) names which images of the data set ``images`` are; it is
    part of the store key, so the VAEs of two domains never share an entry.
    """
    def compute() -> dict[str, Any]:
        vae, history = train_vae(images, config, seed=seed, device=device, progress=progress)
        return {"state_dict": {k: v.cpu() for k, v in vae.state_dict().items()}, "history": history.epochs}

    name, key = vae_entry(config, data_key=data_key, seed=seed, domain=domain)
    record = get_or_compute(name, key, compute, seed=seed, device=device, progress=progress)
    vae = config.build(images.shape[-1])
    vae.load_state_dict(record["state_dict"])
    return freeze(vae).to(device), record


def invariance_inn_entry(network: str, layer: int, config: CINNConfig, *, key: Mapping[str, Any], seed: int = 0
                         ) -> tuple[str, dict[str, Any]]:
    """The store entry name and key of :func:`pretrained_invariance_inn`."""
    return "invariance-cinn", {"network": network, "layer": layer, "config": config, "key": dict(key), "seed": seed}


def pretrained_invariance_inn(network: str, net: nn.Module | None, layer: int, vae: VAE, images: Tensor,
                              config: CINNConfig, *, key: Mapping[str, Any], seed: int = 0,
                              device: str | torch.device = "cpu", progress: bool = True,
                              phi: nn.Module | None = None, vae_images: Tensor | None = None
                              ) -> tuple[InvarianceINN, dict[str, Any]]:
    """The cINN of ``layer`` of ``net`` from the artifact store (trained on first use).

    ``phi`` replaces ``truncate(net, layer)`` (e.g. an identity map: ``net=None``); ``vae_images`` is what the
    VAE encodes (see :func:`train_invariance_inn`). ``key`` must identify ``net`` (or ``phi``), ``vae``,
    ``images`` and ``vae_images`` (their configurations, data and seed).
    """
    if phi is None:
        if net is None:
            raise InvarianceError("pass the network `net` (and its `layer`), or the representation map `phi`")
        phi = truncate(net, layer)

    def compute() -> dict[str, Any]:
        model, history = train_invariance_inn(phi, vae, images, config, seed=seed, device=device, progress=progress,
                                              desc=f"cINN {network} layer {layer}", vae_images=vae_images)
        return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history.epochs,
                "cond_shape": model.cond_shape}

    name, entry_key = invariance_inn_entry(network, layer, config, key=key, seed=seed)
    record = get_or_compute(name, entry_key, compute, seed=seed, device=device, progress=progress)
    model = InvarianceINN(vae.latent_dim, record["cond_shape"], config, permutation_seed=seed,
                          code_shape=getattr(vae, "latent_shape", None))
    model.load_state_dict(record["state_dict"])  # marks every ActNorm as initialised
    model.eval()
    return model.to(device), record
