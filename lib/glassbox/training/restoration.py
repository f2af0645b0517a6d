"""Training image-to-image networks with the restoration losses of ETH 227-0391-00, Section 6.

- :func:`train_image_regressor`: a small residual U-Net (:func:`build_regressor`) trained with a
  pixel-wise loss, ``"l1"`` (the notes' MAE) or ``"l2"`` (their MSE). Minimising the L2 loss makes the
  network predict the *mean* of the targets that go with an input, the L1 loss their *median*
  (e.g. Lehtinen et al. 2018, "Noise2Noise"). Used for denoising and for imputing a missing sequence.
- :func:`train_restorer`: the same network trained with MSE, MSE + perceptual (a frozen feature
  network) or MSE + adversarial (a WGAN-GP :class:`Critic` trained alongside).

Every function returns a plain dict (weights, history, seconds) for the artifact store;
:func:`regressor_from_result` rebuilds the network and :func:`apply_regressor` runs it.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.core import checks, dryrun, repro
from glassbox.core.progress import Progress
from glassbox.core.training_settings import TrainingSettings
from glassbox.models import common, segnets
from glassbox.models.common import init_model
from glassbox.training import losses
from glassbox.training.loop import cosine_adam, epoch_order, fit
from glassbox.training.segmentation import DRY_RUN_IMAGES

PIXEL_LOSSES: tuple[str, ...] = ("l1", "l2")
RESTORATION_LOSSES: tuple[str, ...] = ("mse", "mse+perceptual", "mse+adversarial")


class RestorationTrainingError(ValueError):
    """A bad argument to a restoration training (unknown loss, missing feature network, bad shapes)."""


@dataclass(frozen=True, kw_only=True)
class RegressorTraining(TrainingSettings):
    """The network (``base`` channels, ``levels`` poolings) and its optimisation (Adam; with ``cosine``, its rate
    falls along a half cosine to 5 % by the last step, :class:`glassbox.training.loop.CosineAdam`)."""

    error_type = RestorationTrainingError

    base: int = 16
    levels: int = 2
    epochs: int = 10  # defaults of TrainingSettings' fields for this training (batch_size keeps its 8)
    lr: float = 1e-3
    cosine: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("base", "levels"):
            checks.integer(getattr(self, name), name, error=RestorationTrainingError)

    def optimizer(self, n_images: int) -> Callable[[Any], torch.optim.Optimizer]:
        """The optimizer factory for a training set of ``n_images`` images."""
        if self.cosine:
            return cosine_adam(self.lr, self.epochs * -(-n_images // self.batch_size))
        return lambda parameters: torch.optim.Adam(parameters, lr=self.lr)


def build_regressor(training: RegressorTraining, init_seed: int, in_channels: int = 1) -> nn.Module:
    """Residual U-Net (bilinear up-sampling) predicting a correction to its (first) input channel.

    The 1x1 output layer starts at zero, so training starts from the identity (the input itself)
    instead of from random corrections.
    """
    model = init_model(lambda: segnets.SmallUNet(in_channels, in_channels, base=training.base, levels=training.levels,
                                                 residual=True), init_seed)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


def _pairs(inputs: Tensor, targets: Tensor) -> None:
    for name, value in (("inputs", inputs), ("targets", targets)):
        if not isinstance(value, Tensor) or value.ndim != 4 or not value.is_floating_point():
            raise RestorationTrainingError(f"{name} must be a float (N, C, H, W) tensor, got "
                                           f"{getattr(value, 'shape', type(value).__name__)}")
    if inputs.shape != targets.shape:
        raise RestorationTrainingError(f"inputs and targets must have the same shape, got {tuple(inputs.shape)} "
                                       f"and {tuple(targets.shape)}")


def pixel_loss(loss_name: str, estimate: Tensor, target: Tensor) -> Tensor:
    """The notes' MAE (``"l1"``) or MSE (``"l2"``), averaged over pixels."""
    if loss_name == "l1":
        return F.l1_loss(estimate, target)
    if loss_name == "l2":
        return F.mse_loss(estimate, target)
    raise RestorationTrainingError(f"loss must be one of {PIXEL_LOSSES}, got {loss_name!r}")


def train_image_regressor(loss_name: str, inputs: Tensor, targets: Tensor, training: RegressorTraining, *, seed: int,
                          device: str | torch.device = "cpu", progress: bool = True) -> dict[str, Any]:
    """Train :func:`build_regressor` to map ``inputs`` to ``targets`` with the L1 or L2 loss."""
    if loss_name not in PIXEL_LOSSES:
        raise RestorationTrainingError(f"loss must be one of {PIXEL_LOSSES}, got {loss_name!r}")
    _pairs(inputs, targets)
    inputs, targets = (dryrun.head(t, DRY_RUN_IMAGES, f"regressor / {loss_name}: {DRY_RUN_IMAGES} images")
                       for t in (inputs, targets))
    model = build_regressor(training, seed, in_channels=inputs.shape[1])

    def loss_fn(net: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        x, y = batch
        return pixel_loss(loss_name, net(x), y)

    began = time.perf_counter()
    history = fit(model, torch.utils.data.TensorDataset(inputs, targets), loss_fn, epochs=training.epochs,
                  batch_size=training.batch_size, optimizer=training.optimizer(len(inputs)),
                  data_seed=seed, device=device, desc=f"regressor / {loss_name}", progress=progress)
    model.cpu().eval()
    return {"loss": loss_name, "training": training, "in_channels": int(inputs.shape[1]),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": history.epochs, "seconds": time.perf_counter() - began}


def regressor_from_result(result: Mapping[str, Any]) -> nn.Module:
    """The trained network of :func:`train_image_regressor` or :func:`train_restorer`, in eval mode."""
    model = build_regressor(result["training"], 0, in_channels=result.get("in_channels", 1))
    model.load_state_dict(result["state_dict"])
    return model.eval()


def apply_regressor(result: Mapping[str, Any], inputs: Tensor) -> Tensor:
    """The network's outputs for ``inputs`` (N, C, H, W), in batches, on CPU."""
    return segnets.predict_logits(regressor_from_result(result), inputs)


# ------------------------------------------------------------------------------------------------
# Perceptual and adversarial losses

@dataclass(frozen=True)
class AdversarialTraining:
    """Weights of the extra terms and the critic's learning rate."""

    perceptual_weight: float = 0.1
    adversarial_weight: float = 5e-3
    critic_lr: float = 1e-4


class Critic(nn.Module):
    """WGAN critic: three stride-2 convolutions with LeakyReLU, global average, linear score (no BatchNorm,
    which would break the per-sample gradient penalty)."""

    def __init__(self, base: int = 16):
        super().__init__()
        layers, previous = [], 1
        for i in range(3):
            layers += [nn.Conv2d(previous, base * 2**i, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            previous = base * 2**i
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(previous, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.score(self.features(x).mean(dim=(2, 3))).squeeze(1)


def train_restorer(loss_name: str, low: Tensor, full: Tensor, training: RegressorTraining,
                   extra: AdversarialTraining = AdversarialTraining(), *, seed: int,
                   feature_net: nn.Module | None = None, device: str | torch.device = "cpu",
                   progress: bool = True) -> dict[str, Any]:
    """Train the denoiser on ``low`` -> ``full`` with ``mse``, ``mse+perceptual`` or ``mse+adversarial``.

    ``mse+perceptual`` adds ``extra.perceptual_weight`` times :func:`glassbox.training.losses.perceptual_loss`
    with ``feature_net``; ``mse+adversarial`` adds ``extra.adversarial_weight`` times the WGAN generator
    loss of a :class:`Critic` trained alongside (one critic step per generator step, gradient penalty 10).
    """
    if loss_name not in RESTORATION_LOSSES:
        raise RestorationTrainingError(f"loss_name must be one of {RESTORATION_LOSSES}, got {loss_name!r}")
    if loss_name == "mse+perceptual" and feature_net is None:
        raise RestorationTrainingError("loss 'mse+perceptual' needs a feature_net (see glassbox.models.feature_nets)")
    _pairs(low, full)
    low, full = (dryrun.head(t, DRY_RUN_IMAGES, f"denoiser / {loss_name}: {DRY_RUN_IMAGES} images") for t in (low, full))
    device = torch.device(device)
    model = build_regressor(training, seed)
    began = time.perf_counter()
    if loss_name == "mse+adversarial":
        history = _train_adversarial(model, low, full, training, extra, seed, device, progress)
    else:
        if feature_net is not None:
            feature_net = common.freeze(feature_net).to(device)

        def loss_fn(net: nn.Module, batch: Sequence[Tensor]) -> Tensor:
            x, y = batch
            estimate = net(x)
            value = F.mse_loss(estimate, y)
            if loss_name == "mse+perceptual":
                value = value + extra.perceptual_weight * losses.perceptual_loss(estimate, y, feature_net)
            return value

        history = fit(model, torch.utils.data.TensorDataset(low, full), loss_fn, epochs=training.epochs,
                      batch_size=training.batch_size, optimizer=lambda p: torch.optim.Adam(p, lr=training.lr),
                      data_seed=seed, device=device, desc=f"denoiser / {loss_name}", progress=progress).epochs
    model.cpu().eval()
    return {"loss": loss_name, "training": training, "in_channels": 1,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": history, "seconds": time.perf_counter() - began}


def _train_adversarial(model: nn.Module, low: Tensor, full: Tensor, training: RegressorTraining,
                       extra: AdversarialTraining, seed: int, device: torch.device,
                       progress: bool) -> list[dict[str, float]]:
    """WGAN-GP training of ``model`` (generator) with an MSE term; data order from :func:`epoch_order`."""
    repro.ensure_pinned_threads()
    critic = init_model(lambda: Critic(), seed + 1).to(device)
    model.to(device).train()
    gen_opt = torch.optim.Adam(model.parameters(), lr=training.lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=extra.critic_lr, betas=(0.5, 0.9))
    generator = torch.Generator(device=device).manual_seed(seed)
    size, history = len(low), []
    batches = -(-size // training.batch_size)
    with Progress(training.epochs * batches, "denoiser / mse+adversarial", unit="batch", epochs=training.epochs,
                  enabled=progress) as bar:
        for epoch in dryrun.steps(range(1, training.epochs + 1), "denoiser / mse+adversarial"):
            began, totals = time.perf_counter(), np.zeros(3)
            order = epoch_order(size, seed, epoch)
            for start in dryrun.steps(range(0, size, training.batch_size), "denoiser / mse+adversarial"):
                index = order[start:start + training.batch_size]
                x, y = low[index].to(device), full[index].to(device)
                critic_loss = losses.wgan_critic_loss(critic, y, model(x), generator)
                critic_opt.zero_grad(set_to_none=True)
                critic_loss.backward()
                critic_opt.step()
                estimate = model(x)
                mse = F.mse_loss(estimate, y)
                gen_loss = mse + extra.adversarial_weight * losses.wgan_generator_loss(critic, estimate)
                gen_opt.zero_grad(set_to_none=True)
                gen_loss.backward()
                gen_opt.step()
                totals += np.array([gen_loss.item(), mse.item(), critic_loss.item()]) * len(index)
                bar.update(1)
            history.append({"epoch": epoch, "train_loss": totals[0] / size, "mse": totals[1] / size,
                            "critic_loss": totals[2] / size, "seconds": time.perf_counter() - began})
            bar.end_epoch(epoch, history[-1])
            if not np.isfinite(totals).all():
                raise FloatingPointError(f"adversarial training diverged in epoch {epoch}; lower adversarial_weight")
    return history
