"""Segmentation networks of ETH 227-0391-00, Section 6 ("Architecture"), small enough for a CPU.

- :class:`NaiveSegNet`  the notes' network: ``I -> 32 -> 128 -> 256`` (3x3 convolutions, ReLU,
  2x2 pooling), one up-sampling by ``s = 8`` back to the image size, then ``-> 128 -> 32 -> O``
  (3x3 convolutions, ReLU; the last one gives the class scores). All detail must pass through the
  1/8-resolution bottleneck.
- :class:`FCN`  the same encoder, with a 1x1 "score" layer at every scale (1/8, 1/4, 1/2) fused
  coarse-to-fine: up-sample by 2, add the next finer score, repeat (Long et al. 2015, FCN-8s in
  miniature; bilinear up-sampling, their fixed initialisation).
- :class:`SmallUNet`  a U-Net (Ronneberger et al. 2015) whose decoder up-samples either by
  ``"bilinear"`` interpolation followed by a 3x3 convolution and ReLU, or by a ``"transposed"``
  2x2 stride-2 convolution and ReLU (the notes' two options), then concatenates the encoder's
  features (the skip connection) and applies two 3x3 convolutions.

Every network returns class *logits* (N, K, H, W); the notes' final sigmoid / softmax lives in the
loss (:mod:`glassbox.training.losses`) and in :func:`predict_probs`. ``width`` scales every channel count
(1.0 = the notes' 32/128/256); BatchNorm after each convolution (``batch_norm=True``) lets a few
CPU epochs suffice and is applied the same way in all three networks. Build with
:func:`build_segnet` for reproducible initial weights.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glassbox.core import checks
from glassbox.models.common import init_model

UpMode = Literal["bilinear", "transposed"]
ARCHITECTURES: tuple[str, ...] = ("naive", "fcn", "unet-bilinear", "unet-transposed")
NOTES_WIDTHS = (32, 128, 256)      # encoder channels of the notes' binary network
NOTES_HEAD_WIDTHS = (128, 32)      # channels after the up-sampling


class SegNetInputError(ValueError):
    """A network got an input it cannot process (wrong channels or a size it cannot restore)."""


def _scaled(channels: int, width: float) -> int:
    checks.positive_number(width, "width (1.0 = the notes' channel counts)", error=SegNetInputError)
    return max(1, round(channels * width))


def _conv(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    """3x3 'same' convolution, optional BatchNorm, ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return layers


def _check_input(x: Tensor, in_channels: int, divisor: int, name: str) -> None:
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise SegNetInputError(f"{name} expects input of shape (N, {in_channels}, H, W), got {tuple(x.shape)}")
    if x.shape[-2] % divisor or x.shape[-1] % divisor:
        raise SegNetInputError(f"{name} needs height and width divisible by {divisor}, got "
                               f"{x.shape[-2]}x{x.shape[-1]}")


class _Encoder(nn.Module):
    """Three stages of (conv, ReLU, 2x2 max-pool): outputs at 1/2, 1/4 and 1/8 resolution."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int], batch_norm: bool):
        super().__init__()
        stages, previous = [], in_channels
        for channels in widths:
            stages.append(nn.Sequential(*_conv(previous, channels, batch_norm), nn.MaxPool2d(2)))
            previous = channels
        self.stages = nn.ModuleList(stages)

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


class NaiveSegNet(nn.Module):
    """The notes' ``I -> 32 -> 128 -> 256 -(up s=8)-> 128 -> 32 -> O`` network (channels times ``width``)."""

    divisor = 8

    def __init__(self, in_channels: int = 1, out_channels: int = 3, width: float = 1.0, *,
                 upsample: Literal["bilinear", "nearest"] = "bilinear", batch_norm: bool = True):
        super().__init__()
        if upsample not in ("bilinear", "nearest"):
            raise SegNetInputError(f"upsample must be 'bilinear' or 'nearest', got {upsample!r}")
        self.in_channels, self.out_channels, self.upsample = in_channels, out_channels, upsample
        enc = tuple(_scaled(c, width) for c in NOTES_WIDTHS)
        head = tuple(_scaled(c, width) for c in NOTES_HEAD_WIDTHS)
        self.encoder = _Encoder(in_channels, enc, batch_norm)
        self.decoder = nn.Sequential(*_conv(enc[-1], head[0], batch_norm), *_conv(head[0], head[1], batch_norm),
                                     nn.Conv2d(head[1], out_channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, self.divisor, type(self).__name__)
        deepest = self.encoder(x)[-1]
        up = F.interpolate(deepest, size=x.shape[-2:], mode=self.upsample,
                           **({"align_corners": False} if self.upsample == "bilinear" else {}))
        return self.decoder(up)


class FCN(nn.Module):
    """Encoder as :class:`NaiveSegNet`, plus a 1x1 score layer per scale, fused coarse to fine."""

    divisor = 8

    def __init__(self, in_channels: int = 1, out_channels: int = 3, width: float = 1.0, *, batch_norm: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        enc = tuple(_scaled(c, width) for c in NOTES_WIDTHS)
        self.encoder = _Encoder(in_channels, enc, batch_norm)
        # the "fully convolutional" classifier on the deepest features (FCN's fc6/fc7 as convolutions)
        self.classifier = nn.Sequential(*_conv(enc[-1], enc[-1], batch_norm))
        self.scores = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in enc)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, self.divisor, type(self).__name__)
        features = self.encoder(x)
        features[-1] = self.classifier(features[-1])
        fused = self.scores[-1](features[-1])                      # 1/8
        for level in (1, 0):                                       # + 1/4, + 1/2
            fused = F.interpolate(fused, scale_factor=2, mode="bilinear", align_corners=False)
            fused = fused + self.scores[level](features[level])
        return F.interpolate(fused, size=x.shape[-2:], mode="bilinear", align_corners=False)


class _Up(nn.Module):
    """Up-sample by 2 (bilinear + conv + ReLU, or transposed conv + ReLU), concatenate the skip, two convs."""

    def __init__(self, in_channels: int, out_channels: int, mode: UpMode, batch_norm: bool):
        super().__init__()
        if mode == "bilinear":
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    *_conv(in_channels, out_channels, batch_norm))
        elif mode == "transposed":
            self.up = nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2), nn.ReLU(inplace=True))
        else:
            raise SegNetInputError(f"up-sampling mode must be 'bilinear' or 'transposed', got {mode!r}")
        self.conv = nn.Sequential(*_conv(2 * out_channels, out_channels, batch_norm),
                                  *_conv(out_channels, out_channels, batch_norm))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class SmallUNet(nn.Module):
    """U-Net with ``levels`` poolings, ``base`` channels at full resolution, doubling per level.

    ``widths`` (one channel count per level plus the bottleneck) replaces the doubling of ``base``, so
    that a U-Net can be sized to a parameter budget (:func:`width_for_parameters`).

    ``residual=True`` returns ``input + output`` (a restoration network predicting a correction).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 3, base: int = 16, levels: int = 3, *,
                 up: UpMode = "bilinear", batch_norm: bool = True, residual: bool = False,
                 widths: Sequence[int] | None = None):
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 6:
            raise SegNetInputError(f"levels must be an integer in [1, 6], got {levels!r}")
        checks.integer(base, "base", error=SegNetInputError)
        if residual and in_channels != out_channels:
            raise SegNetInputError(f"residual=True needs in_channels == out_channels, got {in_channels}, {out_channels}")
        if widths is None:
            widths = [base * 2**i for i in range(levels + 1)]
        elif len(widths) != levels + 1 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise SegNetInputError(f"widths must be {levels + 1} positive integers (one per level and the "
                                   f"bottleneck), got {widths!r}")
        widths = list(widths)
        self.in_channels, self.out_channels, self.levels = in_channels, out_channels, levels
        self.up_mode, self.residual = up, residual
        self.down = nn.ModuleList()
        previous = in_channels
        for channels in widths[:-1]:
            self.down.append(nn.Sequential(*_conv(previous, channels, batch_norm), *_conv(channels, channels, batch_norm)))
            previous = channels
        self.bottleneck = nn.Sequential(*_conv(previous, widths[-1], batch_norm),
                                        *_conv(widths[-1], widths[-1], batch_norm))
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i], up, batch_norm) for i in reversed(range(levels)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    @property
    def divisor(self) -> int:
        return 2**self.levels

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, self.divisor, type(self).__name__)
        skips, h = [], x
        for block in self.down:
            h = block(h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.bottleneck(h)
        for block, skip in zip(self.ups, reversed(skips)):
            h = block(h, skip)
        out = self.head(h)
        return x + out if self.residual else out


def _unet_widths(width: float, levels: int = 3) -> list[int]:
    """Channels per level of the U-Nets of :func:`build_segnet`: the notes' 32 at full resolution, doubling."""
    return [_scaled(NOTES_WIDTHS[0] * 2**i, width) for i in range(levels + 1)]


def build_segnet(name: str, *, in_channels: int = 1, out_channels: int = 3, width: float = 0.25,
                 init_seed: int = 0, batch_norm: bool = True) -> nn.Module:
    """One of :data:`ARCHITECTURES` with initial weights drawn from ``init_seed`` (global RNG untouched).

    ``width`` scales the notes' channel counts (0.25 -> 8/32/64 encoder channels); the U-Nets use
    ``round(32 * 2**i * width)`` channels at level ``i`` (8/16/32/64 at 0.25) and three poolings, like
    the others. ``out_channels=1`` gives the notes' binary network (one logit per pixel, sigmoid in
    the loss).
    """
    if name not in ARCHITECTURES:
        raise SegNetInputError(f"unknown architecture {name!r}; choose one of {ARCHITECTURES}")
    kwargs = {"in_channels": in_channels, "out_channels": out_channels, "batch_norm": batch_norm}
    factories = {
        "naive": lambda: NaiveSegNet(width=width, **kwargs),
        "fcn": lambda: FCN(width=width, **kwargs),
        "unet-bilinear": lambda: SmallUNet(widths=_unet_widths(width), up="bilinear", **kwargs),
        "unet-transposed": lambda: SmallUNet(widths=_unet_widths(width), up="transposed", **kwargs),
    }
    return init_model(factories[name], init_seed)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Logits for a stack of images in eval mode, in batches, on the model's device; returned on CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        chunks = [model(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def predict_probs(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Class probabilities (softmax over channels) for a stack of images."""
    return torch.softmax(predict_logits(model, images, batch_size), dim=1)


def predict_labels(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Arg-max label maps (N, H, W) for a stack of images.

    The arg-max runs over a channels-last copy: the same labels (ties go to the lower class either way), about
    nine times faster on the CPU than reducing over the strided channel axis.
    """
    return predict_logits(model, images, batch_size).permute(0, 2, 3, 1).contiguous().argmax(dim=-1)


def parameter_count(name: str, width: float, *, in_channels: int = 1, out_channels: int = 3) -> int:
    """Trainable parameters of :func:`build_segnet` ``(name, width)``, without touching any random state."""
    if name not in ARCHITECTURES:
        raise SegNetInputError(f"unknown architecture {name!r}; choose one of {ARCHITECTURES}")
    with torch.random.fork_rng(devices=[]):
        return count_parameters(build_segnet(name, in_channels=in_channels, out_channels=out_channels, width=width))


def width_for_parameters(name: str, target: int, *, in_channels: int = 1, out_channels: int = 3,
                         low: float = 0.02, high: float = 2.0) -> tuple[float, int]:
    """The ``width`` at which ``name`` has the parameter count nearest ``target``: ``(width, count)``.

    Channel counts are rounded, so the count is a step function of ``width``; bisection finds the
    smallest width reaching ``target`` and the step below it is compared. Used to compare
    architectures at matched size instead of at matched ``width``.
    """
    checks.integer(target, "target (number of parameters)", error=SegNetInputError)

    def count(w: float) -> int:
        return parameter_count(name, w, in_channels=in_channels, out_channels=out_channels)

    if count(high) < target:
        raise SegNetInputError(f"{name} has fewer than {target} parameters even at width {high}")
    if count(low) >= target:
        return low, count(low)
    lo, hi = low, high                          # count(lo) < target <= count(hi)
    for _ in range(40):
        mid = (lo + hi) / 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid
    return min(((lo, count(lo)), (hi, count(hi))), key=lambda wc: (abs(wc[1] - target), wc[0]))


def receptive_field(model: nn.Module, size: int = 64, in_channels: int = 1) -> int:
    """Side (pixels) of the input region that can change the centre output pixel, measured by its gradient.

    The model is evaluated in eval mode with a random input; the gradient of the centre pixel's
    first output channel with respect to the input is non-zero exactly on the receptive field
    (clipped to the image). Returns the larger of its height and width.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, in_channels, size, size, generator=generator).to(device).requires_grad_(True)
    try:
        out = model(x)
        out[0, 0, size // 2, size // 2].backward()
    finally:
        model.train(was_training)
    touched = (x.grad.abs().sum(dim=(0, 1)) > 0).cpu()
    rows, cols = torch.nonzero(touched.any(dim=1)), torch.nonzero(touched.any(dim=0))
    if not len(rows):
        return 0
    return int(max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))


def conv3d_parameter_count(model: nn.Module) -> int:
    """Parameters the same network would have with every k x k convolution made k x k x k (its 3-D extension).

    Biases and BatchNorm parameters are unchanged; each 2-D kernel's weights grow by a factor k.
    """
    total = 0
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad:
                continue
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and p is module.weight:
                total += p.numel() * module.kernel_size[0]
            else:
                total += p.numel()
    return total
