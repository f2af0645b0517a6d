"""Pieces every network module shares: seeded construction, freezing, cutting a layer stack, errors.

- :func:`init_model` builds a network with its random initialisation drawn from one explicit seed,
  leaving the global RNG state untouched;
- :func:`freeze` puts a network under analysis (or behind a perceptual loss) in eval mode without gradients;
- :func:`n_layers` / :func:`truncate` count and cut the ``layers`` Sequential of Chen's CNN and Yang's
  generator: ``truncate(net, k)`` is the paper's Phi, the denoiser up to layer ``k``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from glassbox.core import checks

M = TypeVar("M", bound=nn.Module)


class DenoiserError(ValueError):
    """A denoiser got a bad configuration, layer index or training input."""


class InvarianceError(ValueError):
    """Bad configuration, shape or layer for the invariance analysis."""


def init_model(factory: Callable[[], M], init_seed: int) -> M:
    """``factory()`` with its random initialisation drawn from ``init_seed``; global RNG state is untouched.

    Only the CPU default generator is seeded, inside ``torch.random.fork_rng``; build on CPU and
    move the model afterwards.
    """
    init_seed = checks.seed(init_seed, "init_seed")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(init_seed)
        return factory()


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: a network under analysis, or behind a perceptual loss, stays fixed."""
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def check_images(x: Any, name: str) -> None:
    """``x`` must be a ``(N, 1, H, W)`` tensor (a batch of single-channel images)."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise DenoiserError(f"{name} must be a (N, 1, H, W) tensor, got {shape}")


def n_layers(net: nn.Module) -> int:
    """Number of layers (convolutions and ReLUs) of a denoiser with a ``layers`` Sequential."""
    layers = getattr(net, "layers", None)
    if not isinstance(layers, nn.Sequential):
        raise DenoiserError(f"{type(net).__name__} has no `layers` Sequential; expected ChenCNN or YangGenerator")
    return len(layers)


def truncate(net: nn.Module, layer: int) -> nn.Sequential:
    """Phi: the denoiser up to and including ``layer`` (1-based, conv and ReLU counted separately).

    Shares the weights of ``net``; ``truncate(net, n_layers(net))`` is the whole network f.
    """
    total = n_layers(net)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer <= total:
        raise DenoiserError(f"layer must be an integer in [1, {total}] for {type(net).__name__}, got {layer!r}")
    return nn.Sequential(*list(net.layers)[:int(layer)])
