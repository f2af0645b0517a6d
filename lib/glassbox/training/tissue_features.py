"""Training the tissue feature network whose features define the CT perceptual loss.

The ETH notes define the perceptual loss with the layers of "a previously trained CNN ... trained on
natural images, e.g. VGG, or a network trained on CT images for another task". ImageNet weights cannot be
downloaded here, so :func:`train_feature_net` trains :class:`glassbox.models.feature_nets.FeatureNet` on
another task on our simulated CT: predicting the tissue class map of abdominal phantoms from their noisy
low- and full-dose reconstructions, through a light hypercolumn head that is thrown away afterwards
(task-specific perceptual networks of this kind: Ouyang et al., Med Phys 2019).
:func:`pretrained_feature_net` trains it once per (config, seed) through the artifact store.

A second recipe trains the same network as an **autoencoder of full-dose images**
(:func:`train_feature_autoencoder`, :func:`pretrained_feature_autoencoder`): a classifier trained on noisy
images is taught to ignore noise, so a perceptual loss built on it cannot see noise texture; an encoder that
must let a decoder redraw full-dose images keeps their grain (Li et al.'s self-supervised perceptual network,
SACNN, IEEE TMI 2020). Its held-out reconstruction error, against the full-dose noise SD, says whether it did.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.core import checks, dryrun
from glassbox.core.store import get_or_compute
from glassbox.core.training_settings import TrainingSettings
from glassbox.data.phantoms import TISSUE_LABELS
from glassbox.data.tissue_crops import random_crops, simulated_ct
from glassbox.models.common import freeze, init_model
from glassbox.models.feature_nets import (
    FEATURE_LAYERS,
    HU_SCALE,
    FeatureDecoder,
    FeatureNet,
    FeatureNetError,
    TissueHead,
)
from glassbox.training.loop import fit


@dataclass(frozen=True, kw_only=True)
class FeatureNetConfig(TrainingSettings):
    """How the CT feature network is trained (simulated data and optimisation)."""

    error_type = FeatureNetError

    size: int = 128             # phantom and reconstruction grid (3.1 mm pixels)
    crop: int = 64              # training crops of crop x crop pixels
    crops_per_image: int = 2
    n_patients: int = 48        # one slice each, at low and full dose -> 2 * crops_per_image * n_patients crops
    dose: float = 0.25
    base: int = 16
    epochs: int = 6  # defaults of TrainingSettings' fields for this training
    batch_size: int = 16
    lr: float = 2e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 8 <= self.crop <= self.size or self.crop % 4:
            raise FeatureNetError(f"crop must be a multiple of 4 between 8 and size={self.size}, got {self.crop!r}")
        for name in ("n_patients", "crops_per_image", "base"):
            checks.integer(getattr(self, name), name, error=FeatureNetError)


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
    n_classes = max(TISSUE_LABELS.values()) + 1
    inputs, labels = tissue_training_set(config, seed)
    held_out = dataclasses.replace(config, n_patients=max(4, config.n_patients // 4))
    val_inputs, val_labels = tissue_training_set(held_out, seed + 1)
    val_inputs, val_labels = (dryrun.head(t, config.batch_size, "CT feature net: held-out crops")  # one batch
                              for t in (val_inputs, val_labels))
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
    state = get_or_compute("featurenet", {"config": config, "seed": seed},
                           lambda: train_feature_net(config, seed, device, progress), seed=seed, device=device,
                           progress=progress)
    return feature_net_from_state(state, layers).to(device), state


@dataclass(frozen=True, kw_only=True)
class FeatureAEConfig(TrainingSettings):
    """How the CT feature network is trained as an autoencoder of full-dose patches (MSE, Adam)."""

    error_type = FeatureNetError

    base: int = 16
    epochs: int = 4  # defaults of TrainingSettings' fields for this training
    batch_size: int = 32
    lr: float = 2e-3
    heldout_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        checks.integer(self.base, "base", error=FeatureNetError)
        if not 0 < self.heldout_fraction < 0.5:
            raise FeatureNetError(f"heldout_fraction must be in (0, 0.5), got {self.heldout_fraction!r}")


def train_feature_autoencoder(images: Tensor, config: FeatureAEConfig = FeatureAEConfig(), seed: int = 0,
                              device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train :class:`FeatureNet` + :class:`FeatureDecoder` to reproduce ``images`` (N, 1, p, p) in HU / 1000.

    The last ``heldout_fraction`` of the images is held out; returns ``state_dict`` (encoder only), ``config``
    (with ``base``, so :func:`feature_net_from_state` rebuilds it), ``history`` and ``heldout_rmse_hu``.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1 or images.shape[0] < 10:
        raise FeatureNetError(f"images must be a (N >= 10, 1, p, p) tensor, got {getattr(images, 'shape', images)}")
    n_held = max(1, int(round(config.heldout_fraction * images.shape[0])))
    train, held = images[:-n_held].float(), images[-n_held:].float()
    model = init_model(lambda: FeatureDecoder(FeatureNet(config.base)), init_seed=seed)

    def loss_fn(net: nn.Module, batch: Any) -> Tensor:
        (x,) = batch
        return F.mse_loss(net(x), x)

    def val_fn(net: nn.Module) -> dict[str, float]:
        device_of = next(net.parameters()).device
        chunks = dryrun.steps(held.split(256), "CT feature autoencoder validation")  # a dry run scores one chunk
        out = torch.cat([net(chunk.to(device_of)).cpu() for chunk in chunks])
        return {"heldout_rmse_hu": float(HU_SCALE * (out - held[:out.shape[0]]).pow(2).mean().sqrt())}

    history = fit(model, torch.utils.data.TensorDataset(train), loss_fn, epochs=config.epochs,
                  batch_size=config.batch_size, optimizer=lambda p: torch.optim.Adam(p, lr=config.lr),
                  data_seed=seed, device=device, val_fn=val_fn, desc="CT feature autoencoder", progress=progress,
                  fingerprint=dataclasses.asdict(config))
    model.cpu()
    return {"state_dict": {k: v.detach().clone() for k, v in model.encoder.state_dict().items()},
            "config": dataclasses.asdict(config), "history": history.epochs,
            "heldout_rmse_hu": history.epochs[-1]["heldout_rmse_hu"]}


def feature_autoencoder_entry(config: FeatureAEConfig, *, data_key: Mapping[str, Any], seed: int = 0
                              ) -> tuple[str, dict[str, Any]]:
    """The store entry name and key of :func:`pretrained_feature_autoencoder`."""
    return "featurenet-ae", {"config": config, "data": dict(data_key), "seed": seed}


def pretrained_feature_autoencoder(images: Tensor, config: FeatureAEConfig, *, data_key: Mapping[str, Any],
                                   seed: int = 0, device: str | torch.device = "cpu",
                                   layers: Sequence[str] = FEATURE_LAYERS, progress: bool = True
                                   ) -> tuple[FeatureNet, dict[str, Any]]:
    """The autoencoder-trained feature network for ``(config, data_key, seed)`` from the artifact store.

    ``data_key`` must identify ``images`` (HU / 1000). Returns the frozen encoder and the stored record.
    """
    name, key = feature_autoencoder_entry(config, data_key=data_key, seed=seed)
    state = get_or_compute(name, key, lambda: train_feature_autoencoder(images, config, seed, device, progress),
                           seed=seed, device=device, progress=progress)
    return feature_net_from_state(state, layers).to(device), state
