"""The variational autoencoder that gives the invariance analysis a complete representation of an image.

:class:`VAE` (encoder E, decoder D): a residual convolutional encoder down to 4x4 and a linear layer giving
the mean and log-variance of :class:`DiagonalGaussian` ``q(zbar | x)``; the decoder mirrors it. The
log-variance is clamped to :data:`LOGVAR_RANGE`, as the reference code's ``DiagonalGaussianDistribution``
does. Its training objective and recipe live in :mod:`glassbox.training.vae_cinn`.

Every invariance sample is decoded by D, so what D cannot draw the analysis cannot show: the chapter reports
the reconstruction error of ``D(E(x))`` beside every spread. Residual blocks (``n_res`` per resolution) are
what brings that error down at a given width (measured in :mod:`glassbox.training.vae_cinn`'s notes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from glassbox.core import checks
from glassbox.models.common import (
    InvarianceError,
)

LOGVAR_RANGE = (-30.0, 10.0)
"""Clamp of the VAE's log-variance: [-30, 10], as ``DiagonalGaussianDistribution`` of the reference code
(CompVis/invariances, eeulig/ldct-invariances)."""


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


class ResidualBlock(nn.Module):
    """``x + conv(act(conv(act(x))))`` with 3x3 convolutions and LeakyReLU(0.2) (pre-activation).

    The second convolution starts at zero, so each block starts as the identity and a deep stack without
    normalisation layers trains stably (as in Fixup, Zhang et al. 2019).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VAE(nn.Module):
    """Convolutional VAE of ``(N, 1, p, p)`` patches (``p`` a power of two >= 8).

    Encoder: a 3x3 stem to ``width`` channels; per resolution ``n_res`` :class:`ResidualBlock` and a stride-2
    4x4 convolution (channels ``width * 2**k``, at most ``4 width``) down to ``bottom`` x ``bottom``; then
    (mean, logvar) of ``latent_dim`` each. With ``spatial=False`` a linear layer gives them (one code for the
    whole patch); with ``spatial=True`` a 3x3 convolution gives a latent *map* of ``latent_dim / bottom**2``
    channels, each latent vector describing its own block of pixels (as the autoencoders of latent diffusion
    do), which localises edges far better for the same number of latent dimensions. The decoder mirrors the
    encoder with nearest up-sampling and 3x3 convolutions. ``n_res=0`` is a plain convolution stack. Inputs are
    standardised by the ``shift``/``scale`` buffers (set from data by
    :func:`glassbox.training.vae_cinn.train_vae`). Codes are always flat ``(N, latent_dim)`` vectors.
    """

    def __init__(self, patch_size: int, latent_dim: int = 64, width: int = 32, n_res: int = 1, bottom: int = 4,
                 spatial: bool = False):
        super().__init__()
        self.patch_size = _check_patch(patch_size)
        self.latent_dim = checks.integer(latent_dim, "latent_dim", minimum=2, error=InvarianceError)
        width = checks.integer(width, "width", error=InvarianceError)
        checks.integer(n_res, "n_res", minimum=0, error=InvarianceError)
        bottom = checks.power_of_two(bottom, "bottom", minimum=1, error=InvarianceError)
        if bottom > patch_size // 2:
            raise InvarianceError(f"bottom ({bottom}) must be at most half the patch size ({patch_size})")
        if spatial and latent_dim % (bottom * bottom):
            raise InvarianceError(f"a spatial latent of {latent_dim} dimensions must fill a {bottom}x{bottom} map "
                                  f"(latent_dim a multiple of {bottom * bottom})")
        self.spatial = bool(spatial)
        n_down = int(math.log2(patch_size // bottom))
        channels = [width * 2 ** min(k, 2) for k in range(n_down + 1)]
        encoder: list[nn.Module] = [nn.Conv2d(1, channels[0], 3, padding=1)]
        for k in range(n_down):
            encoder += [ResidualBlock(channels[k]) for _ in range(n_res)]
            encoder += [nn.LeakyReLU(0.2), nn.Conv2d(channels[k], channels[k + 1], 4, stride=2, padding=1)]
        encoder += [ResidualBlock(channels[-1]) for _ in range(n_res)]
        self.bottom = (channels[-1], bottom, bottom)
        if spatial:
            self.latent_shape = (latent_dim // (bottom * bottom), bottom, bottom)
            head: list[nn.Module] = [nn.Conv2d(channels[-1], 2 * self.latent_shape[0], 3, padding=1)]
            entry: list[nn.Module] = [nn.Unflatten(1, self.latent_shape),
                                      nn.Conv2d(self.latent_shape[0], channels[-1], 3, padding=1)]
        else:
            self.latent_shape = (latent_dim,)
            head = [nn.Flatten(), nn.Linear(channels[-1] * bottom * bottom, 2 * latent_dim)]
            entry = [nn.Linear(latent_dim, channels[-1] * bottom * bottom), nn.Unflatten(1, self.bottom)]
        self.encoder = nn.Sequential(*encoder, nn.LeakyReLU(0.2), *head)
        decoder: list[nn.Module] = list(entry)
        decoder += [ResidualBlock(channels[-1]) for _ in range(n_res)]
        for k in reversed(range(n_down)):
            decoder += [nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.Conv2d(channels[k + 1], channels[k], 3, padding=1)]
            decoder += [ResidualBlock(channels[k]) for _ in range(n_res)]
        decoder += [nn.LeakyReLU(0.2), nn.Conv2d(channels[0], 1, 3, padding=1)]
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
        return DiagonalGaussian(mean.flatten(1), logvar.flatten(1))

    def decode(self, zbar: Tensor) -> Tensor:
        if zbar.ndim != 2 or zbar.shape[1] != self.latent_dim:
            raise InvarianceError(f"the decoder expects (N, {self.latent_dim}) codes, got {tuple(zbar.shape)}")
        return self.decoder(zbar) * self.scale + self.shift

    def reconstruct(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``D(E(x))``: decode the posterior mean, or a posterior sample when ``generator`` is given."""
        posterior = self.encode(x)
        return self.decode(posterior.mode() if generator is None else posterior.sample(generator))


def check_patch(size: Any, name: str = "patch_size") -> int:
    """A patch side the VAE can halve down to 4x4: a power of two >= 8."""
    size = checks.integer(size, name, minimum=8, error=InvarianceError)
    if size & (size - 1):
        raise InvarianceError(f"{name} must be a power of two >= 8 (the VAE halves it down to 4x4), got {size}")
    return size


_check_patch = check_patch


def _randn_like(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
