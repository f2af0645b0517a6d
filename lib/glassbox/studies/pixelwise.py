"""Experiments of the teaching chapter on pixel-wise prediction (ETH 227-0391-00, Section 6).

The chapter ``book/pixelwise.ipynb`` calls these functions; its knobs are :class:`PixelwiseConfig`
with one entry per profile in :data:`PROFILES`.

- Segmentation losses: :func:`share_vs_size` (how much of each loss the small structure owns, as
  its size grows), :func:`missed_structure_table` (what each loss says when the network misses the
  small structure), and :func:`train_segmenter` (one network, one loss, Dice per class and
  boundary accuracy on held-out scenes).
- Architectures: the same :func:`train_segmenter` for the networks of :mod:`glassbox.models.segnets`.
- Restoration metrics: :func:`ct_examples` (simulated low/full-dose CT), :func:`window`,
  :func:`equal_mse_gallery` (degradations with the same MSE, hence the same PSNR, and very different
  SSIM) and :func:`rank_disagreements` (pairs that PSNR and SSIM order differently).
- Perceptual and adversarial losses: :func:`train_restorer` trains a small residual U-Net denoiser
  with MSE, MSE + perceptual (CT feature network, :mod:`glassbox.models.feature_nets`) or MSE + adversarial
  (WGAN-GP critic) loss, and :func:`high_frequency_ratio` measures how much fine texture survives.
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn

from glassbox.core import repro
from glassbox.core.progress import Progress
from glassbox.data import degrade, shapes, tissue_crops
from glassbox.measure import image_metrics
from glassbox.models import common, feature_nets, segnets
from glassbox.models.common import init_model
from glassbox.training import losses
from glassbox.training.loop import epoch_order, fit
from glassbox.training.tissue_features import FeatureNetConfig

SIMULATED_ONLY = ("its tasks are synthetic shapes and simulated CT, built so that the right answer is known")
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""

ABDOMEN_WINDOW = (40.0, 400.0)          # (centre, width) in HU, the usual soft-tissue window
RESTORATION_LOSSES: tuple[str, ...] = ("mse", "mse+perceptual", "mse+adversarial")


class PixelwiseError(ValueError):
    """A bad argument to one of the chapter's experiments."""


@dataclass(frozen=True)
class PixelwiseConfig:
    """Every knob of the chapter; the defaults are the ``quick`` profile."""

    # segmentation task (glassbox.data.shapes), sizes relative to image_size
    image_size: int = 64
    n_train: int = 128
    n_test: int = 48
    small_intensity: float = 1.5
    noise: float = 0.35
    # segmentation training
    width: float = 0.25
    epochs: int = 15
    batch_size: int = 16
    lr: float = 3e-3
    loss_names: tuple[str, ...] = ("bce", "ce", "dice")
    loss_architecture: str = "unet-bilinear"
    architectures: tuple[str, ...] = segnets.ARCHITECTURES
    architecture_loss: str = "dice"
    # loss share against size
    share_radii: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    share_scenes: int = 6
    share_blur: float = 1.5
    # restoration metrics on CT
    ct_size: int = 128
    dose: float = 0.1
    n_ct_test: int = 4
    gallery_mse: float = 4e-3            # on the [0, 1] window scale: PSNR 24 dB
    # perceptual and adversarial demo
    featurenet: FeatureNetConfig = field(default_factory=FeatureNetConfig)
    n_restore_patients: int = 32
    restore_crop: int = 64
    restore_crops_per_image: int = 4
    restore_base: int = 16
    restore_batch_size: int = 8
    restore_epochs: int = 10
    restore_lr: float = 1e-3
    perceptual_weight: float = 0.1
    adversarial_weight: float = 5e-3
    critic_lr: float = 1e-4

    def shapes_config(self) -> shapes.ShapesConfig:
        """The scene configuration: a large ellipse of radius 19-28 % and a small disk of 3-5.5 % of the side."""
        size = self.image_size
        return shapes.ShapesConfig(size=size, large_radius=(0.19 * size, 0.28 * size),
                                   small_radius=(max(1.0, 0.03 * size), max(1.5, 0.055 * size)),
                                   small_intensity=self.small_intensity, noise=self.noise)


PROFILES: dict[str, PixelwiseConfig] = {
    "smoke": PixelwiseConfig(
        image_size=40, n_train=16, n_test=8, width=0.125, epochs=1, batch_size=8,
        loss_names=("ce", "dice"), architectures=("naive", "unet-bilinear"),
        share_radii=(1.0, 2.0, 4.0), share_scenes=2, ct_size=64, n_ct_test=2,
        featurenet=FeatureNetConfig(size=64, crop=32, crops_per_image=1, n_patients=4, base=4, epochs=1, batch_size=8),
        n_restore_patients=4, restore_crop=32, restore_crops_per_image=1, restore_base=4, restore_epochs=1),
    "quick": PixelwiseConfig(),
    "paper": PixelwiseConfig(
        image_size=128, n_train=1024, n_test=256, width=1.0, epochs=60, loss_names=("bce", "ce", "dice", "ce+dice"),
        share_scenes=32, ct_size=256, n_ct_test=16,
        featurenet=FeatureNetConfig(size=256, crop=128, crops_per_image=4, n_patients=400, base=32, epochs=40),
        n_restore_patients=400, restore_crop=128, restore_crops_per_image=4, restore_base=32, restore_epochs=60),
}


# ------------------------------------------------------------------------------------------------
# Segmentation: loss shares

def blurred_prediction_logits(labels: Tensor, n_classes: int, sigma: float) -> Tensor:
    """Log-probabilities of a prediction that is right but unsure near boundaries.

    The one-hot labels are blurred with a Gaussian of ``sigma`` pixels and renormalised (a floor of
    1e-4 keeps the logarithm finite), which is roughly what a trained network outputs.
    """
    if sigma <= 0:
        raise PixelwiseError(f"sigma must be > 0 pixels, got {sigma!r}")
    onehot = losses.one_hot(labels, n_classes, like=torch.zeros((), dtype=torch.float64)).numpy()
    blurred = ndimage.gaussian_filter(onehot, sigma=(0, 0, sigma, sigma), mode="nearest")
    blurred = np.maximum(blurred, 1e-4)
    blurred /= blurred.sum(axis=1, keepdims=True)
    return torch.from_numpy(np.log(blurred))


def share_vs_size(config: PixelwiseConfig, seed: int) -> pd.DataFrame:
    """Share of BCE, CE and Dice loss owned by the small structure, for each small radius.

    For every radius in ``config.share_radii`` and ``config.share_scenes`` scenes, the prediction is
    :func:`blurred_prediction_logits` of the true labels (the same boundary uncertainty for both
    structures). Returns one row per (radius, loss) with the mean share and the small structure's
    pixel fraction.
    """
    scene_config = config.shapes_config()
    rows = []
    for radius in config.share_radii:
        for scene in range(config.share_scenes):
            rng = np.random.default_rng([seed, scene])
            labels = shapes.scene_labels(scene_config, rng, small_radius=float(radius))
            label_tensor = torch.from_numpy(labels)[None]
            logits = blurred_prediction_logits(label_tensor, shapes.N_CLASSES, config.share_blur)
            shares = losses.small_structure_share(logits, label_tensor, shapes.SMALL)
            fraction = float((labels == shapes.SMALL).mean())
            rows += [{"radius": float(radius), "scene": scene, "pixel_fraction": fraction, "loss": name,
                      "share": value} for name, value in shares.items()]
    frame = pd.DataFrame(rows)
    return frame.groupby(["radius", "loss"], as_index=False)[["pixel_fraction", "share"]].mean()


def missed_structure_table(config: PixelwiseConfig, seed: int, confidence: float = 0.95) -> pd.DataFrame:
    """Each loss for a confident correct prediction and for the same prediction with the small structure missed.

    The second prediction labels the small structure's pixels as background with the same
    confidence. Columns: loss, ``correct``, ``missed``, ``relative increase`` (missed / correct - 1).
    """
    if not 0.5 < confidence < 1:
        raise PixelwiseError(f"confidence must be in (0.5, 1), got {confidence!r}")
    image_labels = shapes.scene_labels(config.shapes_config(), np.random.default_rng(seed))
    labels = torch.from_numpy(image_labels)[None]
    other = (1 - confidence) / (shapes.N_CLASSES - 1)
    correct = torch.full((1, shapes.N_CLASSES, *image_labels.shape), other, dtype=torch.float64)
    correct.scatter_(1, labels[:, None], confidence)
    missed = correct.clone()
    region = labels[0] == shapes.SMALL
    missed[0, shapes.SMALL][region] = other
    missed[0, shapes.BACKGROUND][region] = confidence
    rows = []
    for name in ("bce", "ce", "dice"):
        loss = losses.segmentation_loss(name)
        values = [float(loss(p.log(), labels)) for p in (correct, missed)]
        rows.append({"loss": name, "correct": values[0], "missed": values[1],
                     "relative increase": values[1] / values[0] - 1})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# Segmentation: training and evaluation

def segmentation_data(config: PixelwiseConfig, seed: int) -> tuple[shapes.SegmentationSet, shapes.SegmentationSet]:
    """(train, test) scene sets; the test scenes come from a different seed stream."""
    scene_config = config.shapes_config()
    return (shapes.make_dataset(config.n_train, scene_config, seed=2 * seed),
            shapes.make_dataset(config.n_test, scene_config, seed=2 * seed + 1))


def evaluate_segmenter(model: nn.Module, test: shapes.SegmentationSet) -> dict[str, float]:
    """Mean per-image Dice of each class and boundary accuracy (2 px band) on ``test``."""
    predicted = segnets.predict_labels(model, test.images)
    dice = np.array([image_metrics.dice_per_class(p, r, shapes.N_CLASSES) for p, r in zip(predicted, test.labels)])
    scores = {f"dice_{name}": float(value) for name, value in zip(shapes.CLASS_NAMES, dice.mean(axis=0))}
    scores["boundary_accuracy"] = image_metrics.boundary_accuracy(predicted, test.labels, width=2)
    return scores


def train_segmenter(architecture: str, loss_name: str, config: PixelwiseConfig, seed: int,
                    device: str | torch.device = "cpu", progress: bool = True,
                    data: tuple[shapes.SegmentationSet, shapes.SegmentationSet] | None = None) -> dict[str, Any]:
    """Train one network with one loss; return weights, history and held-out scores (a store value).

    Validation after every epoch records the small structure's Dice, so the history shows when (and
    whether) each loss starts to segment it.
    """
    train, test = data if data is not None else segmentation_data(config, seed)
    loss = losses.segmentation_loss(loss_name)
    model = segnets.build_segnet(architecture, out_channels=shapes.N_CLASSES, width=config.width, init_seed=seed)

    def loss_fn(net: nn.Module, batch: Sequence[Tensor]) -> Tensor:
        images, labels = batch
        return loss(net(images), labels)

    def val_fn(net: nn.Module) -> dict[str, float]:
        return evaluate_segmenter(net, test)

    began = time.perf_counter()
    history = fit(model, train.tensor_dataset(), loss_fn, epochs=config.epochs, batch_size=config.batch_size,
                  optimizer=lambda p: torch.optim.Adam(p, lr=config.lr), data_seed=seed, device=device,
                  val_fn=val_fn, desc=f"{architecture} / {loss_name}", progress=progress)
    model.cpu()
    return {"architecture": architecture, "loss": loss_name, "width": config.width,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": history.epochs, "scores": evaluate_segmenter(model, test),
            "parameters": segnets.count_parameters(model), "seconds": time.perf_counter() - began}


def segmenter_from_result(result: Mapping[str, Any]) -> nn.Module:
    """The trained network of a :func:`train_segmenter` result, in eval mode."""
    model = segnets.build_segnet(result["architecture"], out_channels=shapes.N_CLASSES, width=result["width"])
    model.load_state_dict(result["state_dict"])
    return model.eval()


def results_table(results: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per trained network: architecture, loss, parameters, scores and training seconds."""
    return pd.DataFrame([{"architecture": r["architecture"], "loss": r["loss"], "parameters": r["parameters"],
                          **r["scores"], "seconds": r["seconds"]} for r in results])


# ------------------------------------------------------------------------------------------------
# Restoration metrics

def window(hu: np.ndarray, centre: float = ABDOMEN_WINDOW[0], width: float = ABDOMEN_WINDOW[1]) -> np.ndarray:
    """HU mapped linearly to [0, 1] over ``[centre - width / 2, centre + width / 2]`` and clipped."""
    if width <= 0:
        raise PixelwiseError(f"window width must be > 0 HU, got {width!r}")
    return np.clip((np.asarray(hu, dtype=np.float64) - (centre - width / 2)) / width, 0.0, 1.0)


def ct_examples(config: PixelwiseConfig, seed: int) -> dict[str, np.ndarray]:
    """``config.n_ct_test`` simulated slices at ``config.ct_size``: phantom, labels, low and full dose (HU)."""
    return tissue_crops.simulated_ct(config.n_ct_test, config.ct_size, config.dose, seed=1_000 + seed)


def equal_mse_gallery(reference: np.ndarray, target_mse: float, data_range: float = 1.0,
                      seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every degradation kind of :mod:`glassbox.data.degrade` tuned to the same MSE against ``reference``.

    Returns the metrics table (one row per kind, with the strength used) and the degraded images.
    Equal MSE means equal PSNR; the SSIM column shows how differently the structure suffers.
    """
    rows, images = [], {}
    for kind in degrade.KINDS:
        chosen, image = degrade.match_mse(reference, kind, target_mse, seed=seed)
        images[kind] = image
        strength = {"noise": chosen.noise, "blur": chosen.blur, "shift": chosen.shift,
                    "contrast": 1 - chosen.gain, "offset": chosen.offset}[kind]
        rows.append({"degradation": kind, "strength": strength,
                     **image_metrics.restoration_metrics(image, reference, data_range)})
    return pd.DataFrame(rows), images


def rank_disagreements(table: pd.DataFrame, label: str = "degradation", tolerance: float = 0.1) -> pd.DataFrame:
    """Pairs of rows that PSNR and SSIM order differently (PSNR gap above ``tolerance`` dB)."""
    rows = []
    for (_, a), (_, b) in itertools.combinations(table.iterrows(), 2):
        psnr_gap, ssim_gap = a["PSNR [dB]"] - b["PSNR [dB]"], a["SSIM"] - b["SSIM"]
        if abs(psnr_gap) > tolerance and psnr_gap * ssim_gap < 0:
            better_psnr, better_ssim = (a, b) if psnr_gap > 0 else (b, a)
            rows.append({"better PSNR": better_psnr[label], "better SSIM": better_ssim[label],
                         "PSNR gap [dB]": abs(psnr_gap), "SSIM gap": abs(ssim_gap)})
    return pd.DataFrame(rows, columns=["better PSNR", "better SSIM", "PSNR gap [dB]", "SSIM gap"])


def high_frequency_ratio(x: np.ndarray, ref: np.ndarray, sigma: float = 1.0, mask: np.ndarray | None = None) -> float:
    """Energy of ``x``'s fine detail (x minus its Gaussian blur) relative to ``ref``'s, inside ``mask``.

    Below 1: the estimate is smoother than the reference (over-smoothing, the classic MSE look).
    """
    x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
    if x.shape != ref.shape:
        raise PixelwiseError(f"x and ref must have the same shape, got {x.shape} and {ref.shape}")
    sigmas = (0,) * (x.ndim - 2) + (sigma, sigma)
    detail_x, detail_ref = x - ndimage.gaussian_filter(x, sigmas), ref - ndimage.gaussian_filter(ref, sigmas)
    region = np.ones(x.shape, bool) if mask is None else np.asarray(mask, bool)
    return float(np.sqrt((detail_x[region] ** 2).mean() / (detail_ref[region] ** 2).mean()))


# ------------------------------------------------------------------------------------------------
# Perceptual and adversarial losses: a small denoiser

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


def restoration_data(config: PixelwiseConfig, seed: int) -> dict[str, Tensor]:
    """Training crops (low -> full dose, HU / 1000) from ``config.n_restore_patients`` simulated patients."""
    data = tissue_crops.simulated_ct(config.n_restore_patients, config.ct_size, config.dose, seed=2_000 + seed)
    low, full = tissue_crops.random_crops([data["low"], data["full"]], config.restore_crop,
                                        config.restore_crops_per_image, seed)
    as_input = lambda a: torch.from_numpy((a / feature_nets.HU_SCALE).astype(np.float32))[:, None]  # noqa: E731
    return {"low": as_input(low), "full": as_input(full)}


def build_denoiser(config: PixelwiseConfig, init_seed: int) -> nn.Module:
    """Residual two-level U-Net (bilinear up-sampling) predicting a correction to the low-dose image.

    The 1x1 output layer starts at zero, so training starts from the identity (the low-dose image
    itself) instead of from random corrections.
    """
    model = init_model(lambda: segnets.SmallUNet(1, 1, base=config.restore_base, levels=2, residual=True), init_seed)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    return model


def train_restorer(loss_name: str, config: PixelwiseConfig, seed: int, feature_net: nn.Module | None = None,
                   device: str | torch.device = "cpu", progress: bool = True,
                   data: Mapping[str, Tensor] | None = None) -> dict[str, Any]:
    """Train the denoiser with ``mse``, ``mse+perceptual`` or ``mse+adversarial``; returns weights and history.

    ``mse+perceptual`` adds ``perceptual_weight`` times :func:`glassbox.training.losses.perceptual_loss` with
    ``feature_net``; ``mse+adversarial`` adds ``adversarial_weight`` times the WGAN generator loss of a
    :class:`Critic` trained alongside (one critic step per generator step, gradient penalty 10).
    """
    if loss_name not in RESTORATION_LOSSES:
        raise PixelwiseError(f"loss_name must be one of {RESTORATION_LOSSES}, got {loss_name!r}")
    if loss_name == "mse+perceptual" and feature_net is None:
        raise PixelwiseError("loss 'mse+perceptual' needs a feature_net (see glassbox.models.feature_nets)")
    device = torch.device(device)
    data = data if data is not None else restoration_data(config, seed)
    model = build_denoiser(config, seed)
    began = time.perf_counter()
    if loss_name == "mse+adversarial":
        history = _train_adversarial(model, data, config, seed, device, progress)
    else:
        if feature_net is not None:
            feature_net = common.freeze(feature_net).to(device)

        def loss_fn(net: nn.Module, batch: Sequence[Tensor]) -> Tensor:
            low, full = batch
            estimate = net(low)
            value = F.mse_loss(estimate, full)
            if loss_name == "mse+perceptual":
                value = value + config.perceptual_weight * losses.perceptual_loss(estimate, full, feature_net)
            return value

        history = fit(model, torch.utils.data.TensorDataset(data["low"], data["full"]), loss_fn,
                      epochs=config.restore_epochs, batch_size=config.restore_batch_size,
                      optimizer=lambda p: torch.optim.Adam(p, lr=config.restore_lr), data_seed=seed, device=device,
                      desc=f"denoiser / {loss_name}", progress=progress).epochs
    model.cpu().eval()
    return {"loss": loss_name, "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "history": history, "seconds": time.perf_counter() - began}


def _train_adversarial(model: nn.Module, data: Mapping[str, Tensor], config: PixelwiseConfig, seed: int,
                       device: torch.device, progress: bool) -> list[dict[str, float]]:
    """WGAN-GP training of ``model`` (generator) with an MSE term; data order from :func:`epoch_order`."""
    repro.ensure_pinned_threads()
    critic = init_model(lambda: Critic(), seed + 1).to(device)
    model.to(device).train()
    gen_opt = torch.optim.Adam(model.parameters(), lr=config.restore_lr)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=config.critic_lr, betas=(0.5, 0.9))
    generator = torch.Generator(device=device).manual_seed(seed)
    low, full = data["low"], data["full"]
    size, history = len(low), []
    batches = -(-size // config.restore_batch_size)
    with Progress(config.restore_epochs * batches, "denoiser / mse+adversarial", unit="batch",
                  epochs=config.restore_epochs, enabled=progress) as bar:
        for epoch in range(1, config.restore_epochs + 1):
            began, totals = time.perf_counter(), np.zeros(3)
            order = epoch_order(size, seed, epoch)
            for start in range(0, size, config.restore_batch_size):
                index = order[start:start + config.restore_batch_size]
                x, y = low[index].to(device), full[index].to(device)
                critic_loss = losses.wgan_critic_loss(critic, y, model(x), generator)
                critic_opt.zero_grad(set_to_none=True)
                critic_loss.backward()
                critic_opt.step()
                estimate = model(x)
                mse = F.mse_loss(estimate, y)
                adversarial = losses.wgan_generator_loss(critic, estimate)
                gen_loss = mse + config.adversarial_weight * adversarial
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


def denoise(result: Mapping[str, Any], config: PixelwiseConfig, low_hu: np.ndarray) -> np.ndarray:
    """Apply a :func:`train_restorer` result to low-dose images in HU (N, H, W); returns HU."""
    model = build_denoiser(config, 0)
    model.load_state_dict(result["state_dict"])
    inputs = torch.from_numpy((np.asarray(low_hu) / feature_nets.HU_SCALE).astype(np.float32))[:, None]
    return segnets.predict_logits(model, inputs)[:, 0].numpy().astype(np.float64) * feature_nets.HU_SCALE


def restoration_scores(estimates_hu: np.ndarray, full_hu: np.ndarray, phantom_labels: np.ndarray | None = None,
                       ) -> dict[str, float]:
    """PSNR / SSIM in the abdomen window (data range 1), MAE in HU, and fine-detail ratio in soft tissue."""
    x, ref = window(estimates_hu), window(full_hu)
    soft_tissue = None
    if phantom_labels is not None:
        from glassbox.data.phantoms import TISSUE_LABELS

        soft = [TISSUE_LABELS[k] for k in ("liver", "spleen", "muscle", "kidney")]
        soft_tissue = np.isin(phantom_labels, soft)
    return {"PSNR [dB]": float(np.mean([image_metrics.psnr(a, b, 1.0) for a, b in zip(x, ref)])),
            "SSIM": float(np.mean([image_metrics.ssim(a, b, 1.0) for a, b in zip(x, ref)])),
            "MAE [HU]": image_metrics.mae(estimates_hu, full_hu),
            "detail ratio": high_frequency_ratio(estimates_hu, full_hu, mask=soft_tissue)}




# ------------------------------------------------------------------------------------------------
# Figures

LOSS_LABELS = {"bce": "BCE (one-vs-rest)", "ce": "cross-entropy", "dice": "soft Dice", "ce+dice": "CE + Dice",
               "BCE": "BCE (one-vs-rest)", "CE": "cross-entropy", "Dice": "soft Dice"}
_LABEL_COLOURS = ("#1b1b1b", "#4c9be8", "#f0a030")      # background, large, small
_LABEL_COLOURS_RGB = [tuple(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)) for c in _LABEL_COLOURS]


def _label_image(labels: np.ndarray) -> np.ndarray:
    """A label map as an RGB image in the chapter's class colours."""
    return np.asarray(_LABEL_COLOURS_RGB)[np.asarray(labels)]


def plot_scenes(data: shapes.SegmentationSet, count: int = 4) -> plt.Figure:
    """Images (top) and label maps (bottom; background, large, small) of the first ``count`` scenes."""
    count = min(count, len(data))
    figure, axes = plt.subplots(2, count, figsize=(2.4 * count, 4.9), squeeze=False)
    for k in range(count):
        axes[0, k].imshow(data.images[k, 0], cmap="gray")
        axes[1, k].imshow(_label_image(data.labels[k].numpy()), interpolation="nearest")
        small = int((data.labels[k] == shapes.SMALL).sum())
        axes[0, k].set_title(f"scene {k}", fontsize=9)
        axes[1, k].set_title(f"small: {small} px", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_share_vs_size(table: pd.DataFrame) -> plt.Figure:
    """Share of each loss owned by the small structure against its pixel fraction (log-log), with share = fraction."""
    figure, ax = plt.subplots(figsize=(5.6, 4.0))
    for name, group in table.groupby("loss"):
        group = group.sort_values("pixel_fraction")
        ax.plot(group.pixel_fraction, group.share, "o-", label=LOSS_LABELS.get(name, name))
    span = np.array([table.pixel_fraction.min(), table.pixel_fraction.max()])
    ax.plot(span, span, "k:", label="share = pixel fraction")
    ax.axhline(1 / shapes.N_CLASSES, color="grey", lw=0.8, ls="--", label="1 / number of classes")
    ax.set(xscale="log", yscale="log", xlabel="small structure: fraction of the image's pixels",
           ylabel="share of the loss from the small structure")
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_training_curves(results: Sequence[Mapping[str, Any]], key: str = "dice_small",
                         label: str = "loss") -> plt.Figure:
    """Held-out ``key`` (default: the small structure's Dice) after each epoch, one line per trained network."""
    figure, ax = plt.subplots(figsize=(5.6, 3.6))
    for result in results:
        epochs = [e["epoch"] for e in result["history"]]
        ax.plot(epochs, [e[key] for e in result["history"]], "o-", ms=3,
                label=LOSS_LABELS.get(result[label], result[label]))
    ax.set(xlabel="epoch", ylabel=key.replace("_", " "), ylim=(-0.02, 1.02))
    ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_predictions(results: Sequence[Mapping[str, Any]], test: shapes.SegmentationSet, scenes: Sequence[int],
                     label: str = "loss", show_small_probability: bool = False) -> plt.Figure:
    """For each scene: image, truth, and each network's labels (or its small-class probability)."""
    models = [segmenter_from_result(r) for r in results]
    columns = 2 + len(models)
    figure, axes = plt.subplots(len(scenes), columns, figsize=(2.3 * columns, 2.4 * len(scenes)), squeeze=False)
    for row, scene in enumerate(scenes):
        image = test.images[scene:scene + 1]
        axes[row, 0].imshow(image[0, 0], cmap="gray")
        axes[row, 1].imshow(_label_image(test.labels[scene].numpy()), interpolation="nearest")
        for col, (model, result) in enumerate(zip(models, results), start=2):
            if show_small_probability:
                logits = segnets.predict_logits(model, image)[0]
                # one-vs-rest BCE networks have one sigmoid per class, the others one softmax over classes
                probability = (torch.sigmoid(logits[shapes.SMALL]) if result["loss"] == "bce"
                               else torch.softmax(logits, dim=0)[shapes.SMALL]).numpy()
                axes[row, col].imshow(probability, cmap="magma", vmin=0, vmax=1, interpolation="nearest")
            else:
                axes[row, col].imshow(_label_image(segnets.predict_labels(model, image)[0].numpy()),
                                      interpolation="nearest")
            if row == 0:
                axes[row, col].set_title(LOSS_LABELS.get(result[label], result[label]), fontsize=9)
        if row == 0:
            axes[row, 0].set_title("image", fontsize=9)
            axes[row, 1].set_title("truth", fontsize=9)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_gallery(reference: np.ndarray, images: Mapping[str, np.ndarray], table: pd.DataFrame) -> plt.Figure:
    """The reference and each equally-MSE degraded image, titled with its PSNR and SSIM."""
    figure, axes = plt.subplots(1, 1 + len(images), figsize=(2.5 * (1 + len(images)), 2.9))
    axes[0].imshow(reference, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("reference", fontsize=9)
    rows = table.set_index("degradation")
    for ax, (kind, image) in zip(axes[1:], images.items()):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{kind}\nPSNR {rows.loc[kind, 'PSNR [dB]']:.1f} dB, SSIM {rows.loc[kind, 'SSIM']:.2f}",
                     fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


def plot_restorations(images_hu: Mapping[str, np.ndarray], crop: tuple[slice, slice] | None = None,
                      difference_to: str | None = "full dose") -> plt.Figure:
    """Each image (abdomen window) and, below, its difference to ``difference_to`` (+-100 HU)."""
    crop = crop or (slice(None), slice(None))
    names = list(images_hu)
    rows = 2 if difference_to else 1
    figure, axes = plt.subplots(rows, len(names), figsize=(2.6 * len(names), 2.7 * rows), squeeze=False)
    low, high = ABDOMEN_WINDOW[0] - ABDOMEN_WINDOW[1] / 2, ABDOMEN_WINDOW[0] + ABDOMEN_WINDOW[1] / 2
    for col, name in enumerate(names):
        axes[0, col].imshow(images_hu[name][crop], cmap="gray", vmin=low, vmax=high)
        axes[0, col].set_title(name, fontsize=9)
        if difference_to and name != difference_to:
            axes[1, col].imshow((images_hu[name] - images_hu[difference_to])[crop], cmap="RdBu_r", vmin=-100, vmax=100)
            axes[1, col].set_title(f"{name} − {difference_to} (±100 HU)", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.tight_layout()
    return figure


# ------------------------------------------------------------------------------------------------
# More restoration-metric experiments (kept below the figures so the figure helpers stay together)

TYPICAL_DEGRADATIONS: dict[str, degrade.Degradation] = {
    "noise σ 0.04": degrade.Degradation(noise=0.04),
    "blur σ 1.5 px": degrade.Degradation(blur=1.5),
    "shift 1 px": degrade.Degradation(shift=1.0),
    "contrast × 0.8": degrade.Degradation(gain=0.8),
    "brightness + 0.06": degrade.Degradation(offset=0.06),
}


def degradation_table(reference: np.ndarray, degradations: Mapping[str, degrade.Degradation] = TYPICAL_DEGRADATIONS,
                      data_range: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """All restoration metrics of each named degradation of ``reference`` (one row per degradation)."""
    return pd.DataFrame([{"degradation": name,
                          **image_metrics.restoration_metrics(degrade.degrade(reference, d, seed), reference, data_range)}
                         for name, d in degradations.items()])


def convention_table(x_hu: np.ndarray, ref_hu: np.ndarray) -> pd.DataFrame:
    """One image pair scored under different conventions: what a metric's number means depends on them."""
    x_w, ref_w = window(x_hu), window(ref_hu)
    width = ABDOMEN_WINDOW[1]
    rows = [
        ("MSE", "HU", "none", image_metrics.mse(x_hu, ref_hu)),
        ("MSE", "abdomen window → [0, 1]", "none", image_metrics.mse(x_w, ref_w)),
        ("NMSE (energy)", "HU", "÷ Σ ref²", image_metrics.nmse(x_hu, ref_hu, "energy")),
        ("NMSE (energy)", "abdomen window → [0, 1]", "÷ Σ ref²", image_metrics.nmse(x_w, ref_w, "energy")),
        ("NMSE (range)", "HU", "÷ (max − min)²", image_metrics.nmse(x_hu, ref_hu, "range")),
        ("PSNR [dB]", "HU", f"data range {width:.0f} HU", image_metrics.psnr(x_hu, ref_hu, width)),
        ("PSNR [dB]", "HU", "data range 2000 HU", image_metrics.psnr(x_hu, ref_hu, 2000.0)),
        ("PSNR [dB]", "HU", "notes: max(ref)", image_metrics.psnr(x_hu, ref_hu, float(np.max(ref_hu)))),
        ("PSNR [dB]", "abdomen window → [0, 1]", "data range 1", image_metrics.psnr(x_w, ref_w, 1.0)),
        ("SSIM", "HU", "data range 2000 HU", image_metrics.ssim(x_hu, ref_hu, 2000.0)),
        ("SSIM", "abdomen window → [0, 1]", "data range 1", image_metrics.ssim(x_w, ref_w, 1.0)),
    ]
    return pd.DataFrame(rows, columns=["metric", "images", "normalisation", "value"])
