"""The conditional invertible network of Rombach et al.'s invariance method, built with FrEIA 0.2.

- :class:`ConditionalINN`: ``n_blocks`` (4 in the paper) x [ActNorm, affine coupling with tanh-clamped
  log-scales and the condition concatenated to every subnet input, fixed random permutation];
- :class:`ConditionEmbedder`: the shallow network ``h = H(z)`` that turns a layer's representation into
  the condition;
- :class:`InvarianceINN`: both together, ``v = t(zbar | z)`` and its inverse; :func:`nll_loss` is the
  maximum-likelihood objective ``0.5 |v|^2 - log |det dv/dzbar|``.

FrEIA pitfalls handled here (``shared/research/invariances.md``, section 2.4): ActNorm initialises on the
first batch in *either* direction, so :class:`ConditionalINN` refuses to run before
:meth:`ConditionalINN.initialize` saw real data (or a state dict was loaded); ``PermuteRandom(seed=k)``
reseeds the global NumPy RNG, so the global state is saved and restored around construction.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import FrEIA.framework as Ff
import FrEIA.modules as Fm
import numpy as np
import torch
from torch import Tensor, nn

from glassbox.core import checks
from glassbox.core.training_settings import TrainingSettings
from glassbox.models.common import (
    InvarianceError,
)


@dataclass(frozen=True, kw_only=True)
class CINNConfig(TrainingSettings):
    """The conditional INN: ``n_blocks`` (4 in the paper) x [ActNorm, affine coupling, permutation].

    ``hidden``/``hidden_depth``: the s- and t-subnets' width and number of hidden-to-hidden layers;
    ``clamp``: log-scales are ``clamp * tanh(.)``; ``emb_dim``/``embed_width``: H's output size and
    first convolution's width; ``embed_min_size``: H stops down-sampling at this side (4 in Rombach et al.'s
    embedder; a larger map keeps the fine spatial detail a spatial VAE code needs).

    ``conditional_affine`` (not in the paper) puts one condition-only affine layer in front of the blocks,
    ``zbar -> zbar * exp(s(h)) + t(h)`` with log-scales ``affine_clamp * tanh(.)`` (FrEIA's
    ``ConditionalAffineTransform``, SPADE-like). For a layer that keeps nearly everything, ``p(zbar | z)`` is the
    VAE's narrow posterior; the couplings, whose log-scales are clamped to (-1, 1), would need every block to
    reach its scale, while this layer centres and scales ``zbar`` on ``h`` alone in one step.

    ``spatial_condition`` (for a VAE whose code is a map, :class:`glassbox.models.vae.VAE` ``spatial=True``) uses
    :class:`SpatialConditionEmbedder`: H is fully convolutional and ends on ``condition_channels`` maps of the
    code's size, aligned with it, and the affine layer's subnet is a convolution over them
    (:class:`MapAffine`). Predicting a spatial code from a feature map is then a convolutional regression, with
    weights shared across positions, as the VAE's own encoder is -- instead of a dense one through a flat
    bottleneck. ``emb_dim`` is then ``condition_channels`` times the code's map size.
    """

    error_type = InvarianceError

    n_blocks: int = 4
    hidden: int = 256
    hidden_depth: int = 1
    clamp: float = 1.0
    emb_dim: int = 64
    embed_width: int = 32
    embed_min_size: int = 4
    conditional_affine: bool = False
    affine_clamp: float = 4.0
    spatial_condition: bool = False
    condition_channels: int = 1
    epochs: int = 10  # defaults of TrainingSettings' fields for this training
    batch_size: int = 64
    lr: float = 5e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_blocks", "hidden", "emb_dim", "embed_width", "embed_min_size", "condition_channels"):
            checks.integer(getattr(self, name), name, error=InvarianceError)
        checks.positive_number(self.affine_clamp, "affine_clamp", error=InvarianceError)
        checks.integer(self.hidden_depth, "hidden_depth", minimum=0, error=InvarianceError)
        checks.positive_number(self.clamp, "clamp", error=InvarianceError)


class NotInitializedError(RuntimeError):
    """A cINN was run before its ActNorm layers were initialised from data."""


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


def _linear(c_in: int, c_out: int, *, zero_init: bool) -> nn.Module:
    """The condition-only affine layer's subnet: one linear map of h (zero-initialised: the layer starts as the
    identity)."""
    layer = nn.Linear(c_in, c_out)
    if zero_init:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layer


class ConditionalINN(nn.Module):
    """``t(x | h)``: ``n_blocks`` x [ActNorm -> RNVP affine coupling (log-scales ``clamp * tanh``, ``h``
    concatenated to every s/t input) -> fixed random permutation], built with FrEIA 0.2's ``SequenceINN``.

    ``cond_dim=None`` gives the unconditional flow. ``forward`` returns ``(v, log|det dv/dx|)``.
    """

    def __init__(self, dim: int, cond_dim: int | None = None, n_blocks: int = 4, hidden: int = 256,
                 hidden_depth: int = 1, clamp: float = 1.0, permutation_seed: int = 0, zero_init: bool = True,
                 conditional_affine: bool = False, affine_clamp: float = 4.0,
                 affine_subnet: Callable[[int, int], nn.Module] | None = None):
        super().__init__()
        self.dim = checks.integer(dim, "dim", minimum=2, error=InvarianceError)
        self.cond_dim = None if cond_dim is None else checks.integer(cond_dim, "cond_dim", error=InvarianceError)
        n_blocks = checks.integer(n_blocks, "n_blocks", error=InvarianceError)
        subnet = partial(_subnet, hidden=checks.integer(hidden, "hidden", error=InvarianceError), depth=int(hidden_depth), zero_init=zero_init)
        checks.seed(permutation_seed, "permutation_seed", error=InvarianceError)
        seeds = np.random.SeedSequence([int(permutation_seed), 7]).generate_state(n_blocks)
        self.flow = Ff.SequenceINN(self.dim)
        if conditional_affine and self.cond_dim is None:
            raise InvarianceError("conditional_affine needs a condition (cond_dim)")
        if conditional_affine:
            self.flow.append(Fm.ConditionalAffineTransform, cond=0, cond_shape=(self.cond_dim,),
                             subnet_constructor=affine_subnet or partial(_linear, zero_init=zero_init),
                             clamp=checks.positive_number(affine_clamp, "affine_clamp", error=InvarianceError),
                             clamp_activation="TANH")
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
    """The shallow network H: standardise z, stride-2 4x4 convs + LeakyReLU down to at most 4x4, linear.

    The standardisation (``mean``/``std`` buffers) is set from data by :meth:`fit_standardization`: the mean
    feature *map* (per channel and position) is subtracted, so a pattern every image shares -- the imprint of
    zero padding at the border of a convolution's output -- does not hide what varies between images; then each
    channel is divided by its standard deviation.
    """

    def __init__(self, channels: int, size: int, emb_dim: int, width: int = 32, min_size: int = 4):
        super().__init__()
        min_size = checks.integer(min_size, "min_size", error=InvarianceError)
        channels, size = checks.integer(channels, "channels", error=InvarianceError), checks.integer(size, "size", error=InvarianceError)
        size_in = size
        emb_dim, width = checks.integer(emb_dim, "emb_dim", error=InvarianceError), checks.integer(width, "width", error=InvarianceError)
        layers: list[nn.Module] = []
        current, w = channels, width
        while size > min_size:
            layers += [nn.Conv2d(current, w, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            current, size, w = w, size // 2, min(2 * w, 4 * width)
        self.shape = (channels,)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(current * size * size, emb_dim))
        self.register_buffer("mean", torch.zeros(1, channels, size_in, size_in))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))

    def fit_standardization(self, z: Tensor) -> None:
        if z.shape[1:] != self.mean.shape[1:]:
            raise InvarianceError(f"z must be (N, {', '.join(map(str, self.mean.shape[1:]))}), got {tuple(z.shape)}")
        self.mean.copy_(z.mean(dim=0, keepdim=True))
        self.std.copy_((z - self.mean).std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6))

    def forward(self, z: Tensor) -> Tensor:
        return self.net((z - self.mean) / self.std)


class SpatialConditionEmbedder(ConditionEmbedder):
    """H for a spatial code of shape (c, L, L): standardise z as :class:`ConditionEmbedder` does, a 3x3 convolution
    to ``width`` channels, stride-2 4x4 convolutions down to L x L, a 3x3 convolution and a 1x1 convolution to
    ``out_channels`` maps; flattened to ``out_channels * L * L`` numbers, position by position aligned with the
    code."""

    def __init__(self, channels: int, size: int, code_side: int, width: int = 16, out_channels: int = 1):
        nn.Module.__init__(self)
        channels, size = checks.integer(channels, "channels", error=InvarianceError), checks.integer(size, "size", error=InvarianceError)
        code_side = checks.integer(code_side, "code_side", error=InvarianceError)
        width = checks.integer(width, "width", error=InvarianceError)
        size_in = size
        if size < code_side or size % code_side or (size // code_side) & (size // code_side - 1):
            raise InvarianceError(f"the condition map ({size}x{size}) must be the code's side ({code_side}) times a "
                                  "power of two")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
        while size > code_side:
            layers += [nn.Conv2d(width, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            size //= 2
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(width, out_channels, 1),
                   nn.Flatten()]
        self.shape = (channels,)
        self.net = nn.Sequential(*layers)
        self.register_buffer("mean", torch.zeros(1, channels, size_in, size_in))
        self.register_buffer("std", torch.ones(1, channels, 1, 1))


class MapAffine(nn.Module):
    """Subnet of the condition-only affine layer on a spatial code: h (N, k L L) -> a 3x3 convolution (zero-
    initialised) to ``2 c`` maps -> (N, 2 c L L), log-scales of the c code channels first, then shifts."""

    def __init__(self, in_channels: int, code_shape: Sequence[int], zero_init: bool = True):
        super().__init__()
        self.in_channels, self.code_shape = int(in_channels), tuple(int(v) for v in code_shape)
        self.conv = nn.Conv2d(self.in_channels, 2 * self.code_shape[0], 3, padding=1)
        if zero_init:
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, h: Tensor) -> Tensor:
        c, side = self.code_shape[0], self.code_shape[1]
        out = self.conv(h.reshape(h.shape[0], self.in_channels, side, side))
        return torch.cat([out[:, :c].flatten(1), out[:, c:].flatten(1)], dim=1)


class InvarianceINN(nn.Module):
    """``t(zbar | z)`` for one layer: embedder ``h = H(z)`` + :class:`ConditionalINN` on ``zbar``.

    ``code_shape`` is the shape of the VAE's code before flattening (``(dim,)`` for a flat code, ``(c, L, L)`` for
    a spatial one; needed by ``config.spatial_condition``).
    """

    def __init__(self, dim: int, cond_shape: Sequence[int], config: CINNConfig = CINNConfig(),
                 permutation_seed: int = 0, code_shape: Sequence[int] | None = None):
        super().__init__()
        if len(cond_shape) != 3 or cond_shape[1] != cond_shape[2]:
            raise InvarianceError(f"cond_shape must be (C, s, s) of a square feature map, got {tuple(cond_shape)}")
        self.cond_shape = tuple(int(c) for c in cond_shape)
        code_shape = tuple(code_shape) if code_shape is not None else (dim,)
        affine_subnet = None
        if config.spatial_condition:
            if len(code_shape) != 3 or math.prod(code_shape) != dim:
                raise InvarianceError(f"spatial_condition needs a spatial code (c, L, L) of {dim} numbers, got "
                                      f"{code_shape}")
            self.embed = SpatialConditionEmbedder(cond_shape[0], cond_shape[1], code_shape[1], config.embed_width,
                                                  config.condition_channels)
            emb_dim = config.condition_channels * code_shape[1] * code_shape[2]
            affine_subnet = lambda c_in, c_out: MapAffine(config.condition_channels, code_shape)  # noqa: E731
        else:
            self.embed = ConditionEmbedder(cond_shape[0], cond_shape[1], config.emb_dim, config.embed_width,
                                           config.embed_min_size)
            emb_dim = config.emb_dim
        self.flow = ConditionalINN(dim, emb_dim, config.n_blocks, config.hidden, config.hidden_depth,
                                   config.clamp, permutation_seed, conditional_affine=config.conditional_affine,
                                   affine_clamp=config.affine_clamp, affine_subnet=affine_subnet)

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


