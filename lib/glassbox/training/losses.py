"""Losses for pixel-wise prediction, written as in ETH 227-0391-00, Section 6.

Segmentation (networks return *logits* :math:`a_k(r)`; the sigmoid / softmax of the notes'
last layer is applied here, which is the same function computed stably):

- :func:`bce_loss`  :math:`\\sum_r -\\mathbb 1(y=1)\\log f - \\mathbb 1(y=0)\\log(1-f)`, ``f = sigmoid(a)``;
- :func:`cross_entropy_loss`  :math:`\\sum_r -\\sum_k p(y(r)=k)\\log f_k(r)`, ``f = softmax(a)``;
- :func:`soft_dice`  the notes' differentiable Dice
  :math:`\\frac{2\\sum_r y f + s}{\\sum_r y^2 + \\sum_r f^2 + s}` per image and class, with a smoothing
  ``s`` (``s = 0`` is the notes' formula exactly; ``s > 0`` makes an empty target predicted empty a
  perfect 1 instead of 0/0);
- :func:`dice_loss` / :func:`binary_dice_loss`  one minus the soft Dice, averaged over classes and
  images (the notes' multi-class sum over k divided by the number of classes K);
- :func:`small_structure_share`  the fraction of each loss that comes from a small structure.

``reduction``: ``"sum"`` is the notes' L (summed over pixels and images), ``"mean"`` divides by the
number of pixels (the usual training scale, equal to torch's default), ``"none"`` returns the
per-pixel loss map used to split a loss into regions.

Restoration: :func:`perceptual_loss` with any feature network, and the Wasserstein-GAN helpers
:func:`wgan_critic_loss`, :func:`wgan_generator_loss` and :func:`gradient_penalty` (Gulrajani et
al. 2017) for the adversarial loss.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Reduction = Literal["mean", "sum", "none"]
FeatureExtractor = Callable[[Tensor], Sequence[Tensor]]


class LossInputError(ValueError):
    """A loss received inputs of the wrong shape, type or value range."""


def _reduce(per_pixel: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return per_pixel.mean()
    if reduction == "sum":
        return per_pixel.sum()
    if reduction == "none":
        return per_pixel
    raise LossInputError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_tensor(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise LossInputError(f"{name} must be a torch tensor, got {type(value).__name__}")
    return value


def _check_probabilities(target: Tensor, name: str) -> None:
    if target.is_floating_point() and (target.min() < 0 or target.max() > 1):
        raise LossInputError(f"{name} must hold probabilities in [0, 1], "
                             f"got values in [{float(target.min()):.3g}, {float(target.max()):.3g}]")


# --- binary --------------------------------------------------------------------------------------

def bce_loss(logits: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Pixel-wise binary cross-entropy of ``sigmoid(logits)`` against a 0/1 (or soft) ``target``.

    ``logits`` and ``target`` have the same shape; the sigmoid is folded into ``logsigmoid`` so that
    confident wrong pixels give large finite losses instead of ``log(0)``.
    """
    logits, target = _check_tensor(logits, "logits"), _check_tensor(target, "target")
    if logits.shape != target.shape:
        raise LossInputError(f"logits and target must have the same shape, got {tuple(logits.shape)} "
                             f"and {tuple(target.shape)}")
    target = target.to(logits.dtype)
    _check_probabilities(target, "target")
    per_pixel = -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    return _reduce(per_pixel, reduction)


def one_vs_rest_bce_loss(logits: Tensor, labels: Tensor, reduction: Reduction = "mean") -> Tensor:
    """The binary loss applied to each class channel (one sigmoid per class), summed over channels.

    ``logits`` (N, K, ...) and integer ``labels`` (N, ...); the per-pixel loss is the sum over the K
    binary problems "class k or not", so ``reduction='none'`` returns (N, ...).
    """
    target = one_hot(labels, _check_tensor(logits, "logits").shape[1], like=logits)
    return _reduce(bce_loss(logits, target, reduction="none").sum(dim=1), reduction)


# --- multi-class ---------------------------------------------------------------------------------

def one_hot(labels: Tensor, n_classes: int, like: Tensor | None = None) -> Tensor:
    """(N, ...) integer labels -> (N, K, ...) one-hot probabilities, with a clear error for bad labels."""
    labels = _check_tensor(labels, "labels")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise LossInputError(f"labels must be an integer tensor of class indices, got dtype {labels.dtype}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise LossInputError(f"labels must lie in [0, {n_classes - 1}] for {n_classes} classes, "
                             f"got values in [{int(labels.min())}, {int(labels.max())}]")
    encoded = F.one_hot(labels.long(), n_classes).movedim(-1, 1)
    return encoded.to(like.dtype if like is not None else torch.float32)


def _class_target(logits: Tensor, target: Tensor) -> Tensor:
    """Integer labels (N, ...) or probabilities (N, K, ...) -> probabilities (N, K, ...)."""
    logits, target = _check_tensor(logits, "logits"), _check_tensor(target, "target")
    if logits.ndim < 2:
        raise LossInputError(f"logits must have shape (N, K, ...), got {tuple(logits.shape)}")
    n_classes = logits.shape[1]
    if target.shape == logits.shape and target.is_floating_point():
        _check_probabilities(target, "target")
        return target.to(logits.dtype)
    if target.shape == logits.shape[:1] + logits.shape[2:] and not target.is_floating_point():
        return one_hot(target, n_classes, like=logits)
    raise LossInputError(f"target must be integer labels of shape {tuple(logits.shape[:1] + logits.shape[2:])} "
                         f"or float probabilities of shape {tuple(logits.shape)}; got {target.dtype} "
                         f"of shape {tuple(target.shape)}")


def cross_entropy_loss(logits: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Pixel-wise multi-class cross-entropy of ``softmax(logits, dim=1)``.

    ``target`` is integer labels (N, ...) or class probabilities p(y=k) of the logits' shape
    (N, K, ...), the notes' general form for uncertain labels. ``reduction='none'`` returns (N, ...).
    """
    target_probs = _class_target(logits, target)
    per_pixel = -(target_probs * F.log_softmax(logits, dim=1)).sum(dim=1)
    return _reduce(per_pixel, reduction)


# --- Dice ----------------------------------------------------------------------------------------

def soft_dice(probs: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """The notes' soft Dice per image and channel: (2 sum y f + s) / (sum y^2 + sum f^2 + s).

    ``probs`` and ``target`` are (N, C, ...) with values in [0, 1]; sums run over the pixels of each
    image. Returns (N, C). ``smooth=0`` is the formula exactly (0/0 -> NaN for an empty target
    predicted empty); ``smooth > 0`` scores that case 1.
    """
    probs, target = _check_tensor(probs, "probs"), _check_tensor(target, "target")
    if probs.shape != target.shape or probs.ndim < 3:
        raise LossInputError(f"probs and target must both have shape (N, C, ...), got {tuple(probs.shape)} "
                             f"and {tuple(target.shape)}")
    if smooth < 0:
        raise LossInputError(f"smooth must be >= 0, got {smooth!r}")
    _check_probabilities(probs, "probs")
    target = target.to(probs.dtype)
    _check_probabilities(target, "target")
    dims = tuple(range(2, probs.ndim))
    overlap = (target * probs).sum(dim=dims)
    squares = (target**2).sum(dim=dims) + (probs**2).sum(dim=dims)
    return (2 * overlap + smooth) / (squares + smooth)


def dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0,
              classes: Sequence[int] | None = None) -> Tensor:
    """1 - mean soft Dice of ``softmax(logits)`` over images and the chosen classes (all by default).

    Every class weighs 1/K whatever its size: the property that keeps small structures visible.
    """
    target_probs = _class_target(logits, target)
    dice = soft_dice(torch.softmax(logits, dim=1), target_probs, smooth)
    if classes is not None:
        chosen = list(classes)
        if not chosen or any(not 0 <= k < logits.shape[1] for k in chosen):
            raise LossInputError(f"classes must be a non-empty list of indices in [0, {logits.shape[1] - 1}], "
                                 f"got {classes!r}")
        dice = dice[:, chosen]
    return 1 - dice.mean()


def binary_dice_loss(logits: Tensor, target: Tensor, smooth: float = 1.0) -> Tensor:
    """1 - mean soft Dice of ``sigmoid(logits)`` against a 0/1 target (same shape, (N, ...) or (N, 1, ...))."""
    logits, target = _check_tensor(logits, "logits"), _check_tensor(target, "target")
    if logits.shape != target.shape:
        raise LossInputError(f"logits and target must have the same shape, got {tuple(logits.shape)} "
                             f"and {tuple(target.shape)}")
    probs = torch.sigmoid(logits).reshape(logits.shape[0], 1, -1)
    return 1 - soft_dice(probs, target.reshape(target.shape[0], 1, -1).to(probs.dtype), smooth).mean()


def combined_loss(logits: Tensor, labels: Tensor, dice_weight: float = 1.0, smooth: float = 1.0) -> Tensor:
    """Cross-entropy (mean over pixels) plus ``dice_weight`` times the multi-class Dice loss."""
    return cross_entropy_loss(logits, labels) + dice_weight * dice_loss(logits, labels, smooth)


SEGMENTATION_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "bce": one_vs_rest_bce_loss,
    "ce": cross_entropy_loss,
    "dice": dice_loss,
    "ce+dice": combined_loss,
}


def segmentation_loss(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``loss(logits (N, K, H, W), labels (N, H, W)) -> scalar`` by name: bce, ce, dice or ce+dice."""
    if name not in SEGMENTATION_LOSSES:
        raise LossInputError(f"unknown segmentation loss {name!r}; choose one of {sorted(SEGMENTATION_LOSSES)}")
    return SEGMENTATION_LOSSES[name]


def small_structure_share(logits: Tensor, labels: Tensor, small_class: int,
                          smooth: float = 1.0) -> dict[str, float]:
    """Fraction of each loss that comes from the small structure, for one prediction.

    BCE (one-vs-rest) and CE are sums over pixels, so the share is the sum over the small structure's
    pixels divided by the total (the notes' :math:`L_{\\Omega_{small}} / L`). The Dice loss is a sum
    of per-class terms, so its share is the small class's term (1 - DSC_small) over the sum of all
    classes' terms.
    """
    labels = _check_tensor(labels, "labels")
    n_classes = _check_tensor(logits, "logits").shape[1]
    if not 0 <= small_class < n_classes:
        raise LossInputError(f"small_class must be a class index in [0, {n_classes - 1}], got {small_class!r}")
    region = labels == small_class
    shares: dict[str, float] = {}
    for name, per_pixel in (("BCE", one_vs_rest_bce_loss(logits, labels, "none")),
                            ("CE", cross_entropy_loss(logits, labels, "none"))):
        total = per_pixel.sum()
        shares[name] = float(per_pixel[region].sum() / total) if total > 0 else float("nan")
    terms = (1 - soft_dice(torch.softmax(logits, dim=1), one_hot(labels, n_classes, like=logits), smooth)).sum(0)
    shares["Dice"] = float(terms[small_class] / terms.sum()) if terms.sum() > 0 else float("nan")
    return shares


# --- restoration: perceptual and adversarial ---------------------------------------------------

def perceptual_loss(x: Tensor, y: Tensor, features: FeatureExtractor,
                    weights: Sequence[float] | None = None) -> Tensor:
    """The notes' perceptual loss sum_j w_j MSE(phi_j(y), phi_j(x)) for a frozen feature network.

    ``features(image)`` returns the list of feature maps phi_j (any network: the CT-trained
    :class:`glassbox.models.feature_nets.FeatureNet`, a VGG-19, ...). Gradients flow to ``x`` only; the
    reference's features are computed without gradient. Each MSE is a mean over the map's elements
    (Yang et al. 2018's 1/(w h d) normalisation).
    """
    x, y = _check_tensor(x, "x"), _check_tensor(y, "y")
    if x.shape != y.shape:
        raise LossInputError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    with torch.no_grad():
        reference = list(features(y))
    estimate = list(features(x))
    if len(estimate) != len(reference) or not estimate:
        raise LossInputError(f"the feature network must return the same non-empty list of maps for x and y, "
                             f"got {len(estimate)} and {len(reference)}")
    weights = [1.0] * len(estimate) if weights is None else list(weights)
    if len(weights) != len(estimate):
        raise LossInputError(f"got {len(weights)} weights for {len(estimate)} feature maps")
    return sum(w * F.mse_loss(e, r) for w, e, r in zip(weights, estimate, reference))


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator) -> Tensor:
    """WGAN-GP penalty E[(||grad D(x_hat)||_2 - 1)^2] at random points x_hat between real and fake images.

    The mixing weights come from ``generator`` (one uniform number per image), so the penalty is
    reproducible.
    """
    if real.shape != fake.shape:
        raise LossInputError(f"real and fake must have the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    alpha = torch.rand(shape, generator=generator, device=generator.device).to(real.device, real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def wgan_critic_loss(critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator,
                     gp_weight: float = 10.0) -> Tensor:
    """Critic loss E[D(fake)] - E[D(real)] + gp_weight * gradient penalty (the critic minimises it)."""
    fake = fake.detach()
    loss = critic(fake).mean() - critic(real).mean()
    if gp_weight:
        loss = loss + gp_weight * gradient_penalty(critic, real, fake, generator)
    return loss


def wgan_generator_loss(critic: nn.Module, fake: Tensor) -> Tensor:
    """Adversarial term of the generator, -E[D(fake)]: lower when the critic scores fakes as real."""
    return -critic(fake).mean()
