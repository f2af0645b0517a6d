"""The variational autoencoder that gives the invariance analysis a complete representation of an image.

:class:`VAE` (encoder E, decoder D): stride-2 convolutions down to 4x4 and a linear layer giving the mean
and log-variance of :class:`DiagonalGaussian` ``q(zbar | x)``; the decoder mirrors it. The log-variance is
clamped to :data:`LOGVAR_RANGE`. Its training objective and recipe live in :mod:`glassbox.training.vae_cinn`.
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

LOGVAR_RANGE = (-30.0, 20.0)
"""Clamp of the VAE's log-variance (the reference ``DiagonalGaussianDistribution``'s [-30, 20])."""


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


def _check_patch(size: Any, name: str = "patch_size") -> int:
    size = checks.integer(size, name, minimum=8, error=InvarianceError)
    if size & (size - 1):
        raise InvarianceError(f"{name} must be a power of two >= 8 (the VAE halves it down to 4x4), got {size}")
    return size


def _randn_like(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
