"""Feature networks for the perceptual loss: a small VGG-shaped CT network, or a user-supplied VGG-19.

- :class:`FeatureNet` is VGG-shaped (three stages of two 3x3 convolutions + ReLU, 2x2 max-pooling
  between stages; ``base``, ``2 base``, ``4 base`` channels). Its features are the ReLU outputs
  ``relu1_2``, ``relu2_2``, ``relu3_2`` (VGG naming). :class:`TissueHead` is the light hypercolumn head it
  is trained with (:mod:`glassbox.training.tissue_features`), thrown away afterwards; or
  :class:`FeatureDecoder`, with which it is trained as an autoencoder of full-dose CT instead. It is *not*
  the ImageNet VGG-19 of WGAN-VGG (Yang et al. 2018).
- :class:`VGG19Features` builds torchvision's VGG-19 ``features`` layers and loads a weights file
  the user supplies by path (torchvision's ``vgg19-dcbb9e9d.pth`` naming), with a clear
  FileNotFoundError when it is missing. No weights are ever downloaded.
- :class:`PerceptualFeatures` wraps a frozen feature network behind a fixed input map, for a loss.

Inputs to the CT feature network are HU / :data:`HU_SCALE` (air -1, water 0, dense bone ~1); use
:func:`hu_to_input` to get there.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.models.common import freeze

HU_SCALE = 1000.0


FEATURE_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_2")


class FeatureNetError(ValueError):
    """A feature network got a bad configuration, layer name or weights file content."""


def hu_to_input(hu: np.ndarray | Tensor) -> np.ndarray | Tensor:
    """HU -> the feature network's input scale: HU / 1000 (air -1, water 0)."""
    return hu / HU_SCALE


class FeatureNet(nn.Module):
    """Small VGG-shaped encoder; ``forward`` returns the feature maps of ``layers`` (a FeatureExtractor)."""

    def __init__(self, base: int = 16, in_channels: int = 1, layers: Sequence[str] = FEATURE_LAYERS):
        super().__init__()
        if isinstance(base, bool) or not isinstance(base, int) or base < 1:
            raise FeatureNetError(f"base must be a positive integer, got {base!r}")
        self.base, self.in_channels = base, in_channels
        self.stages = nn.ModuleList()
        previous = in_channels
        for stage in range(3):
            channels = base * 2**stage
            self.stages.append(nn.Sequential(nn.Conv2d(previous, channels, 3, padding=1), nn.ReLU(),
                                             nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()))
            previous = channels
        self.layers = self._check_layers(layers)

    @staticmethod
    def _check_layers(layers: Sequence[str]) -> tuple[str, ...]:
        layers = tuple(layers)
        if not layers or any(name not in FEATURE_LAYERS for name in layers):
            raise FeatureNetError(f"layers must be a non-empty subset of {FEATURE_LAYERS}, got {layers!r}")
        return layers

    @property
    def channels(self) -> dict[str, int]:
        return {name: self.base * 2**i for i, name in enumerate(FEATURE_LAYERS)}

    def stage_outputs(self, x: Tensor) -> list[Tensor]:
        """The three stage outputs (full, 1/2 and 1/4 resolution)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise FeatureNetError(f"FeatureNet expects (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        outputs = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            outputs.append(x)
        return outputs

    def forward(self, x: Tensor) -> list[Tensor]:
        by_name = dict(zip(FEATURE_LAYERS, self.stage_outputs(x)))
        return [by_name[name] for name in self.layers]


class TissueHead(nn.Module):
    """Hypercolumn head used only to train :class:`FeatureNet`: per-stage 1x1 scores, up-sampled, summed."""

    def __init__(self, encoder: FeatureNet, n_classes: int):
        super().__init__()
        self.encoder = encoder
        self.scores = nn.ModuleList(nn.Conv2d(c, n_classes, 1) for c in encoder.channels.values())

    def forward(self, x: Tensor) -> Tensor:
        total = 0
        for score, features in zip(self.scores, self.encoder.stage_outputs(x)):
            total = total + F.interpolate(score(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return total


class FeatureDecoder(nn.Module):
    """Decoder used only to train :class:`FeatureNet` as an autoencoder: from ``relu3_2`` (1/4 resolution) back
    to the image, two nearest up-samplings with 3x3 convolutions + ReLU, then a 3x3 convolution to one channel.

    An encoder trained this way must keep in ``relu3_2`` whatever the decoder needs to redraw its training
    images, the noise grain of full-dose CT included (Li et al.'s self-supervised perceptual network, SACNN,
    IEEE TMI 2020); thrown away afterwards.
    """

    def __init__(self, encoder: FeatureNet):
        super().__init__()
        self.encoder = encoder
        b = encoder.base
        self.decode = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4 * b, 2 * b, 3, padding=1),
                                    nn.ReLU(), nn.Upsample(scale_factor=2, mode="nearest"),
                                    nn.Conv2d(2 * b, b, 3, padding=1), nn.ReLU(), nn.Conv2d(b, encoder.in_channels, 3,
                                                                                            padding=1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise FeatureNetError(f"the autoencoder needs image sides divisible by 4, got {tuple(x.shape[-2:])}")
        return self.decode(self.encoder.stage_outputs(x)[-1])


VGG19_CONFIG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                       512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_layer_names() -> list[str]:
    """Names of torchvision's ``vgg19().features`` modules in order: conv1_1, relu1_1, ..., pool5."""
    names, block, index = [], 1, 1
    for item in VGG19_CONFIG:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return names


class VGG19Features(nn.Module):
    """torchvision's VGG-19 ``features`` up to the deepest requested layer, loaded from ``weights_path``.

    ``weights_path`` is a ``torch.save``'d state dict with torchvision's keys (``features.0.weight``...,
    as in ``vgg19-dcbb9e9d.pth``) or the ``features`` part alone (``0.weight``...). Grey inputs
    (N, 1, H, W) in [0, 1] are repeated to three channels and, with ``imagenet_normalise``, normalised
    by the ImageNet mean and std. ``layers`` defaults to ``conv5_4`` (WGAN-VGG's feature, before ReLU).
    """

    def __init__(self, weights_path: str | Path | None, layers: Sequence[str] = ("conv5_4",),
                 imagenet_normalise: bool = True):
        super().__init__()
        names = vgg19_layer_names()
        self.layers = tuple(layers)
        if not self.layers or any(name not in names for name in self.layers):
            raise FeatureNetError(f"layers must be VGG-19 layer names such as 'relu2_2' or 'conv5_4', got {layers!r}")
        last = max(names.index(name) for name in self.layers)
        modules: list[nn.Module] = []
        previous = 3
        for item in VGG19_CONFIG:
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules += [nn.Conv2d(previous, int(item), 3, padding=1), nn.ReLU(inplace=False)]
                previous = int(item)
        self.features = nn.Sequential(*modules[:last + 1])
        self.names = names[:last + 1]
        self.imagenet_normalise = imagenet_normalise
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.features.load_state_dict(load_vgg19_state(weights_path, len(self.features)))
        freeze(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise FeatureNetError(f"VGG19Features expects (N, 1 or 3, H, W), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if self.imagenet_normalise:
            x = (x - self.mean) / self.std
        wanted, outputs = set(self.layers), {}
        for name, module in zip(self.names, self.features):
            x = module(x)
            if name in wanted:
                outputs[name] = x
        return [outputs[name] for name in self.layers]


def load_vgg19_state(weights_path: str | Path | None, n_modules: int) -> dict[str, Tensor]:
    """The state dict of the first ``n_modules`` VGG-19 feature modules from a weights file."""
    if weights_path is None or not Path(weights_path).is_file():
        raise FileNotFoundError(
            f"VGG-19 weights file not found: {weights_path!r}. Glassbox never downloads weights; put "
            "torchvision's vgg19-dcbb9e9d.pth (ImageNet VGG-19) at a path of your choice and pass it, or use "
            "the CT-trained glassbox.models.feature_nets.FeatureNet instead")
    raw = torch.load(Path(weights_path), map_location="cpu", weights_only=True)
    if not isinstance(raw, Mapping):
        raise FeatureNetError(f"{weights_path} does not hold a state dict (got {type(raw).__name__})")
    if any(key.startswith("features.") for key in raw):
        raw = {key[len("features."):]: value for key, value in raw.items() if key.startswith("features.")}
    conv_indices = [i for i in range(n_modules) if _is_conv_index(i)]
    needed = [f"{i}.{kind}" for i in conv_indices for kind in ("weight", "bias")]
    missing = [key for key in needed if key not in raw]
    if missing:
        raise FeatureNetError(f"{weights_path} lacks VGG-19 feature weights {missing[:4]}"
                              f"{' ...' if len(missing) > 4 else ''}; expected torchvision's vgg19 state dict")
    return {key: raw[key] for key in needed}


def _is_conv_index(index: int) -> bool:
    position = 0
    for item in VGG19_CONFIG:
        if item == "M":
            if position == index:
                return False
            position += 1
        else:
            if position == index:
                return True
            position += 2
            if position - 1 == index:
                return False
    return False


class PerceptualFeatures(nn.Module):
    """A frozen feature network fed with network units ``(HU + 1000) / 1000`` through a fixed input map."""

    def __init__(self, network: nn.Module, offset: float, scale: float, clamp: tuple[float, float] | None = None):
        super().__init__()
        self.network = network
        self.offset, self.scale, self.clamp = float(offset), float(scale), clamp
        for parameter in self.network.parameters():
            parameter.requires_grad_(False)
        self.network.eval()

    def forward(self, x: Tensor) -> list[Tensor]:
        x = (x - self.offset) * self.scale
        if self.clamp is not None:
            x = x.clamp(*self.clamp)
        return list(self.network(x))

    def train(self, mode: bool = True) -> PerceptualFeatures:
        super().train(mode)
        self.network.eval()  # the feature network never leaves eval mode
        return self
