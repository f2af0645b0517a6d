"""Training and scoring the segmentation networks of :mod:`glassbox.models.segnets` (ETH notes, Section 6).

One function, :func:`train_segmenter`, trains any of the networks with any of the notes' losses on
images and targets, which may be

- integer labels (N, H, W): the usual one label per pixel (``bce`` one-vs-rest, ``ce``, ``dice``,
  ``ce+dice``);
- class probabilities (N, K, H, W): the notes' p(y(r) = k) for uncertain labels (``ce`` and ``dice``
  take them as they are);
- a binary mask (N, 1, H, W) of 0/1 floats with ``loss="binary-bce"``: the notes' binary network, one
  output channel with a sigmoid, trained with the binary cross-entropy.

It returns a plain dict (weights, history, held-out scores, parameter count, seconds) that the
artifact store can keep; :func:`segmenter_from_result` rebuilds the network. The training loop is
:func:`glassbox.training.loop.fit` (Adam, fixed data order per seed).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from glassbox.core import checks, dryrun
from glassbox.core.training_settings import TrainingSettings
from glassbox.data import shapes
from glassbox.measure import image_metrics
from glassbox.models import segnets
from glassbox.training import losses
from glassbox.training.loop import cosine_adam, fit

BINARY_LOSS = "binary-bce"
LOSS_NAMES: tuple[str, ...] = (*losses.SEGMENTATION_LOSSES, BINARY_LOSS)
DRY_RUN_IMAGES = 2
"""In a dry run (:mod:`glassbox.core.dryrun`) a training takes its one step on this many images and is scored on as
many held-out ones: the configuration, the shapes and the code path are tried at a token cost (a paper-sized batch
of a full-width network takes 10-20 s per step on one CPU thread; the memory of a full batch is not tried)."""


class SegmentationTrainingError(ValueError):
    """A bad argument to :func:`train_segmenter` (unknown loss, targets of the wrong shape)."""


@dataclass(frozen=True)
class SegTraining(TrainingSettings):
    """How one segmentation network is trained: Adam with learning rate ``lr``, ``epochs`` x ``batch_size``.

    ``cosine=True`` lowers the rate along a half cosine to 5 % of ``lr`` by the last step
    (:class:`glassbox.training.loop.CosineAdam`), so that a short training ends on small steps.
    Not keyword-only: callers write ``SegTraining(epochs, batch_size, lr)`` (re-stated fields are positional).
    """

    error_type = SegmentationTrainingError

    epochs: int = 15  # defaults of TrainingSettings' fields for this training
    batch_size: int = 16
    lr: float = 3e-3
    cosine: bool = False

    def epochs_for(self, n_images: int, steps: int) -> SegTraining:
        """The same training with as many epochs as ``steps`` optimiser steps need on ``n_images`` images.

        Used to compare training-set sizes at an equal number of steps, not an equal number of epochs.
        """
        per_epoch = -(-checks.integer(n_images, "n_images") // self.batch_size)
        return SegTraining(max(1, round(steps / per_epoch)), self.batch_size, self.lr, self.cosine)

    def optimizer(self, n_images: int) -> Callable[[Any], torch.optim.Optimizer]:
        """The optimizer factory for a training set of ``n_images`` images."""
        if self.cosine:
            return cosine_adam(self.lr, self.epochs * -(-n_images // self.batch_size))
        return lambda parameters: torch.optim.Adam(parameters, lr=self.lr)


def _loss_function(loss_name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if loss_name == BINARY_LOSS:
        return losses.bce_loss
    if loss_name not in losses.SEGMENTATION_LOSSES:
        raise SegmentationTrainingError(f"unknown loss {loss_name!r}; choose one of {LOSS_NAMES}")
    return losses.segmentation_loss(loss_name)


def _check_targets(loss_name: str, images: Tensor, targets: Tensor, n_classes: int) -> None:
    n, _, h, w = images.shape
    if loss_name == BINARY_LOSS:
        if targets.shape != (n, 1, h, w) or not targets.is_floating_point():
            raise SegmentationTrainingError(f"loss {BINARY_LOSS!r} needs float 0/1 targets of shape {(n, 1, h, w)}, "
                                            f"got {targets.dtype} {tuple(targets.shape)}")
    elif targets.shape == (n, h, w):
        if targets.is_floating_point():
            raise SegmentationTrainingError("label targets (N, H, W) must be integers")
    elif targets.shape != (n, n_classes, h, w) or not targets.is_floating_point():
        raise SegmentationTrainingError(f"targets must be labels {(n, h, w)} or probabilities {(n, n_classes, h, w)}, "
                                        f"got {targets.dtype} {tuple(targets.shape)}")
    elif loss_name not in ("ce", "dice"):
        raise SegmentationTrainingError(f"probability targets work with 'ce' and 'dice', not {loss_name!r}")


def binary_predictions(model: nn.Module, images: Tensor) -> Tensor:
    """0/1 masks (N, H, W) of a one-channel (sigmoid) network: logit > 0, i.e. probability > 1/2."""
    return (segnets.predict_logits(model, images)[:, 0] > 0).long()


def predicted_probabilities(model: nn.Module, images: Tensor) -> Tensor:
    """Class probabilities (N, K, H, W); a one-channel network's sigmoid becomes (1 - p, p)."""
    logits = segnets.predict_logits(model, images)
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits)
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def evaluate_segmenter(model: nn.Module, images: Tensor, labels: Tensor, class_names: Sequence[str] = shapes.CLASS_NAMES,
                       boundary_width: int = 2) -> dict[str, float]:
    """Mean per-image hard Dice of each class and boundary accuracy (``boundary_width`` px band) on held-out data.

    ``labels`` are integer maps (N, H, W); a one-channel network is scored as the two classes
    (background, ``class_names[1]``) of its thresholded output.
    """
    out_channels = segnets.predict_logits(model, images[:1]).shape[1]
    if out_channels == 1:
        predicted, n_classes = binary_predictions(model, images), 2
    else:
        predicted, n_classes = segnets.predict_labels(model, images), out_channels
    dice = np.array([image_metrics.dice_per_class(p, r, n_classes) for p, r in zip(predicted, labels)])
    scores = {f"dice_{name}": float(value) for name, value in zip(class_names, dice.mean(axis=0))}
    scores["boundary_accuracy"] = image_metrics.boundary_accuracy(predicted, labels, width=boundary_width)
    return scores


def per_image_dice(model: nn.Module, images: Tensor, labels: Tensor, k: int) -> np.ndarray:
    """Hard Dice of class ``k`` for every held-out image (N,): the unit of a bootstrap over test images."""
    predicted = segnets.predict_labels(model, images)
    return np.array([image_metrics.dice_score(p == k, r == k) for p, r in zip(predicted, labels)])


def train_segmenter(architecture: str, loss_name: str, images: Tensor, targets: Tensor, *, width: float,
                    training: SegTraining, seed: int, test_images: Tensor | None = None,
                    test_labels: Tensor | None = None, class_names: Sequence[str] = shapes.CLASS_NAMES,
                    validate_every_epoch: bool = False, device: str | torch.device = "cpu",
                    progress: bool = True) -> dict[str, Any]:
    """Train one network with one loss; return weights, history and held-out scores (a store value).

    ``seed`` draws the initial weights and the data order. ``width`` scales the notes' channel
    counts (see :func:`glassbox.models.segnets.build_segnet`). With ``validate_every_epoch`` the
    held-out scores are recorded after every epoch (the history then shows when, and whether, a
    loss starts to segment a structure); otherwise only at the end, which is cheaper.
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise SegmentationTrainingError(f"images must be an (N, C, H, W) tensor, got {type(images).__name__}")
    n_classes = 1 if loss_name == BINARY_LOSS else len(class_names)
    loss = _loss_function(loss_name)
    _check_targets(loss_name, images, targets, len(class_names))
    if (test_images is None) != (test_labels is None):
        raise SegmentationTrainingError("give both test_images and test_labels, or neither")
    model = segnets.build_segnet(architecture, in_channels=images.shape[1], out_channels=n_classes, width=width,
                                 init_seed=seed)
    where = f"{architecture} / {loss_name}: {DRY_RUN_IMAGES} images"
    images, targets = (dryrun.head(t, DRY_RUN_IMAGES, where) for t in (images, targets))
    if test_images is not None:
        test_images, test_labels = (dryrun.head(t, DRY_RUN_IMAGES, where) for t in (test_images, test_labels))

    def loss_fn(net: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        x, y = batch
        return loss(net(x), y)

    def score(net: nn.Module) -> dict[str, float]:
        return evaluate_segmenter(net, test_images, test_labels, class_names)

    began = time.perf_counter()
    history = fit(model, torch.utils.data.TensorDataset(images, targets), loss_fn, epochs=training.epochs,
                  batch_size=training.batch_size, optimizer=training.optimizer(len(images)),
                  data_seed=seed, device=device, val_fn=score if validate_every_epoch and test_images is not None
                  else None, desc=f"{architecture} / {loss_name}", progress=progress)
    model.cpu()
    return {"architecture": architecture, "loss": loss_name, "width": float(width), "in_channels": images.shape[1],
            "out_channels": n_classes, "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": history.epochs, "scores": score(model) if test_images is not None else {},
            "parameters": segnets.count_parameters(model), "seconds": time.perf_counter() - began}


def segmenter_from_result(result: Mapping[str, Any]) -> nn.Module:
    """The trained network of a :func:`train_segmenter` result, in eval mode."""
    model = segnets.build_segnet(result["architecture"], in_channels=result.get("in_channels", 1),
                                 out_channels=result.get("out_channels", shapes.N_CLASSES), width=result["width"])
    model.load_state_dict(result["state_dict"])
    return model.eval()


def first_epoch_reaching(history: Sequence[Mapping[str, float]], key: str, level: float) -> int | None:
    """The first epoch whose ``history[key]`` reaches ``level`` (None if none does)."""
    for entry in history:
        if key in entry and entry[key] >= level:
            return int(entry["epoch"])
    return None
