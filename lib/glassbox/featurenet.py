"""Feature networks for the perceptual loss: a small CT-trained one, or a user-supplied VGG-19.

The notes (ETH 227-0391-00, Section 6) define the perceptual loss with the layers of "a previously
trained CNN ... trained on natural images, e.g. VGG, or a network trained on CT images for another
task". ImageNet VGG weights cannot be downloaded here, so Glassbox trains its own:

- :class:`FeatureNet` is VGG-shaped (three stages of two 3x3 convolutions + ReLU, 2x2 max-pooling
  between stages; ``base``, ``2 base``, ``4 base`` channels). Its features are the ReLU outputs
  ``relu1_2``, ``relu2_2``, ``relu3_2`` (VGG naming).
- :func:`train_feature_net` trains it on **another task on our simulated CT**: predicting the
  tissue class map (:data:`glassbox.phantoms.TISSUE_LABELS`) of abdominal phantoms from their noisy
  low- and full-dose reconstructions, through a light hypercolumn head (1x1 convolutions on the
  three stages, up-sampled and summed) that is thrown away afterwards. Task-specific perceptual
  networks of this kind are Ouyang et al. (Med Phys 2019); it is *not* the ImageNet VGG-19 of
  WGAN-VGG (Yang et al. 2018).
- :func:`pretrained_feature_net` trains it once per (config, seed) through :mod:`glassbox.store`;
  other chapters reuse it from there.
- :class:`VGG19Features` builds torchvision's VGG-19 ``features`` layers and loads a weights file
  the user supplies by path (torchvision's ``vgg19-dcbb9e9d.pth`` naming), with a clear
  FileNotFoundError when it is missing. No weights are ever downloaded.

Inputs to the CT feature network are HU / :data:`HU_SCALE` (air -1, water 0, dense bone ~1); use
:func:`hu_to_input` to get there.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox import checks

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


@dataclass(frozen=True)
class FeatureNetConfig:
    """How the CT feature network is trained (simulated data and optimisation)."""

    size: int = 128             # phantom and reconstruction grid (3.1 mm pixels)
    crop: int = 64              # training crops of crop x crop pixels
    crops_per_image: int = 2
    n_patients: int = 48        # one slice each, at low and full dose -> 2 * crops_per_image * n_patients crops
    dose: float = 0.25
    base: int = 16
    epochs: int = 6
    batch_size: int = 16
    lr: float = 2e-3

    def __post_init__(self) -> None:
        if not 8 <= self.crop <= self.size or self.crop % 4:
            raise FeatureNetError(f"crop must be a multiple of 4 between 8 and size={self.size}, got {self.crop!r}")
        for name in ("n_patients", "crops_per_image", "epochs", "batch_size", "base"):
            checks.integer(getattr(self, name), name, error=FeatureNetError)


def simulated_ct(n_images: int, size: int, dose: float, seed: int, n_slices: int = 5) -> dict[str, np.ndarray]:
    """One slice of each of ``n_images`` phantom patients: HU ``phantom``, tissue ``labels`` and the ``low``- and
    ``full``-dose FBP reconstructions in HU from the same simulated scan (all (n_images, size, size)).

    Patient ``i`` is phantom seed ``seed * 100_003 + i`` at slice ``i % n_slices``; the scan noise comes from ``seed``.
    """
    from glassbox import ct, phantoms

    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise FeatureNetError(f"n_images must be a positive integer, got {n_images!r}")
    slices = [phantoms.abdominal_phantom_with_labels(size, seed * 100_003 + i, slice_index=i % n_slices,
                                                      n_slices=n_slices) for i in range(n_images)]
    phantom = np.stack([s[0] for s in slices])
    low, full = ct.simulate_paired(phantom, dose, seed=seed)
    return {"phantom": phantom, "labels": np.stack([s[1] for s in slices]).astype(np.int64), "low": low, "full": full}


def random_crops(arrays: Sequence[np.ndarray], crop: int, per_image: int, seed: int) -> list[np.ndarray]:
    """The same ``per_image`` random crop x crop windows of each image, cut from every array in ``arrays``.

    All arrays are (N, H, W) with equal N, H, W; returns arrays of shape (N * per_image, crop, crop),
    crops of image ``i`` at rows ``i * per_image ...``.
    """
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays) or len(shape) != 3:
        raise FeatureNetError(f"arrays must all have the same (N, H, W) shape, got {[a.shape for a in arrays]}")
    if not 1 <= crop <= min(shape[1:]):
        raise FeatureNetError(f"crop must be between 1 and {min(shape[1:])}, got {crop!r}")
    rng = np.random.default_rng(seed)
    corners = [(i, int(rng.integers(0, shape[1] - crop + 1)), int(rng.integers(0, shape[2] - crop + 1)))
               for i in range(shape[0]) for _ in range(per_image)]
    return [np.stack([a[i, r:r + crop, c:c + crop] for i, r, c in corners]) for a in arrays]


def tissue_training_set(config: FeatureNetConfig, seed: int) -> tuple[Tensor, Tensor]:
    """(inputs (M, 1, crop, crop) float32, tissue labels (M, crop, crop) int64) from low- and full-dose scans."""
    data = simulated_ct(config.n_patients, config.size, config.dose, seed)
    low, full, labels = random_crops([data["low"], data["full"], data["labels"]], config.crop,
                                     config.crops_per_image, seed)
    inputs = np.concatenate([low, full])[:, None] / HU_SCALE
    return torch.from_numpy(inputs.astype(np.float32)), torch.from_numpy(np.concatenate([labels, labels]))


def train_feature_net(config: FeatureNetConfig = FeatureNetConfig(), seed: int = 0, device: str | torch.device = "cpu",
                      progress: bool = True) -> dict[str, Any]:
    """Train :class:`FeatureNet` on tissue-class prediction; returns a dict for :func:`feature_net_from_state`.

    The dict holds ``state_dict`` (encoder only), ``config`` (as a dict), ``history`` (per epoch) and
    ``pixel_accuracy`` on a held-out set of phantoms (with ``chance``, the majority-class accuracy).
    """
    from glassbox.phantoms import TISSUE_LABELS
    from glassbox.train import fit, init_model

    n_classes = max(TISSUE_LABELS.values()) + 1
    inputs, labels = tissue_training_set(config, seed)
    held_out = dataclasses.replace(config, n_patients=max(4, config.n_patients // 4))
    val_inputs, val_labels = tissue_training_set(held_out, seed + 1)
    model = init_model(lambda: TissueHead(FeatureNet(config.base), n_classes), init_seed=seed)

    def loss_fn(net: nn.Module, batch: Any) -> Tensor:
        x, y = batch
        return F.cross_entropy(net(x), y)

    def val_fn(net: nn.Module) -> dict[str, float]:
        device_of = next(net.parameters()).device
        predicted = net(val_inputs.to(device_of)).argmax(1).cpu()
        return {"val_pixel_accuracy": float((predicted == val_labels).double().mean())}

    history = fit(model, torch.utils.data.TensorDataset(inputs, labels), loss_fn, epochs=config.epochs,
                  batch_size=config.batch_size, optimizer=lambda p: torch.optim.Adam(p, lr=config.lr),
                  data_seed=seed, device=device, val_fn=val_fn, desc="CT feature net", progress=progress)
    model.cpu()
    counts = np.bincount(val_labels.numpy().ravel(), minlength=n_classes)
    return {
        "state_dict": {k: v.detach().clone() for k, v in model.encoder.state_dict().items()},
        "config": dataclasses.asdict(config),
        "history": history.epochs,
        "pixel_accuracy": history.epochs[-1]["val_pixel_accuracy"],
        "chance": float(counts.max() / counts.sum()),
    }


def feature_net_from_state(state: Mapping[str, Any], layers: Sequence[str] = FEATURE_LAYERS) -> FeatureNet:
    """A frozen, eval-mode :class:`FeatureNet` from :func:`train_feature_net`'s result."""
    net = FeatureNet(int(state["config"]["base"]), layers=layers)
    net.load_state_dict(state["state_dict"])
    return freeze(net)


def pretrained_feature_net(config: FeatureNetConfig = FeatureNetConfig(), seed: int = 0,
                           device: str | torch.device = "cpu", layers: Sequence[str] = FEATURE_LAYERS,
                           progress: bool = True) -> tuple[FeatureNet, dict[str, Any]]:
    """The CT feature network for ``(config, seed)`` from the artifact store (trained on first use).

    Returns the frozen network (on ``device``) and the stored training record.
    """
    from glassbox.store import get_or_compute

    state = get_or_compute("featurenet", {"config": config, "seed": seed},
                           lambda: train_feature_net(config, seed, device, progress), seed=seed, device=device,
                           progress=progress)
    return feature_net_from_state(state, layers).to(device), state


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients (the feature network of a perceptual loss stays fixed)."""
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


# --- VGG-19 from a user-supplied weights file ---------------------------------------------------

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
            "the CT-trained glassbox.featurenet.FeatureNet instead")
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
