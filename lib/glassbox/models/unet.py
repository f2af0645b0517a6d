"""The U-Net-5, -7 and -9 of Qu et al. ("Beware the Black-Box of Medical Image Generation").

What the paper says (Sec. III and IV-B, Fig. 3 caption, Tables II/III):

- U-Net-5 has two encoding and two decoding layers, U-Net-7 three and three, U-Net-9 four and four.
- Each block is a double convolution, 3x3 kernels, each convolution followed by BatchNorm and ReLU;
  the contracting path down-samples with 2x2 max pooling, the expansive path up-samples with 2x2
  "up-convolutions" (transposed convolutions, stride 2). Skip connections are the U-Net's
  (Ronneberger et al. 2015, the paper's [10]): concatenation of encoder features.
- The analysed layers are named ``Down1..Down4``, ``Bottleneck``, ``Up1..Up4`` (Tables II/III,
  Fig. 4 (a)-(h)); ``M in [64, 512]`` feature maps per analysed layer.

Our reading (the seed text holds only the caption of Fig. 3, not its drawing; where the text is
silent we follow Ronneberger's U-Net and say so):

- **"5/7/9" counts double-convolution blocks**: ``levels`` encoder blocks + 1 bottleneck +
  ``levels`` decoder blocks = 2 * levels + 1, so depth 5/7/9 <-> 2/3/4 levels. The 1x1 output
  convolution is not counted. This matches the tables: U-Net-5 lists Down1-2/Up1-2, U-Net-9
  lists Down1-4/Up1-4, all with a Bottleneck row; and Sec. III-A's "K in [4, 8] layers" is the
  Down + Up count (4 for U-Net-5, 8 for U-Net-9) -- the bottleneck row of the tables is empty.
- **Widths**: encoder level ``i`` (1-based) has ``base * 2**(i-1)`` channels, i.e. 64, 128, 256,
  512 on the paper's width; the bottleneck doubles the deepest encoder width (Ronneberger), so it
  has 256 / 512 / 1024 channels for U-Net-5 / 7 / 9. This keeps every *analysed* layer (Down*, Up*)
  inside the paper's stated range M in [64, 512]; the bottleneck is listed in the tables without
  values, so its width is not constrained by the paper. Decoder block ``Up{j}`` mirrors encoder
  level ``levels + 1 - j``: ``Up1`` is the deepest (first applied) decoder block, ``Up{levels}``
  the last one, at the base width (Fig. 4 orders Up1..Up4 after Down1..Down4).
- **Padding 1** ("same" convolutions; Ronneberger used unpadded ones), so output size = input size
  and inputs must be divisible by ``2**levels``.
- **Convolutions have no bias** (it is cancelled by the following BatchNorm); the 1x1 head has one.
- **Output**: a 1x1 convolution to ``out_channels``. The paper is silent on a residual (input +
  correction) output; the default ``residual=False`` is the plain U-Net the text describes.
- **Initialisation**: PyTorch's defaults (the paper only says "randomly ... under the normal
  distribution" in its background section). Seed it with :func:`glassbox.models.common.init_model`.

The module names ``Down{i}``, ``Bottleneck``, ``Up{j}`` are attributes of the model, so
``dict(model.named_modules())["Up2"]`` is the block whose output the feature analysis hooks.
``Down{i}`` is the double convolution *before* pooling (the skip features); ``Up{j}`` is
transposed convolution -> concatenation -> double convolution, and its output is the block's
double-convolution output.
"""
from __future__ import annotations

import re
from typing import Literal

import torch
from torch import nn

from glassbox.core import checks

Depth = Literal[5, 7, 9]
DEPTHS: tuple[int, ...] = (5, 7, 9)
PAPER_BASE_CHANNELS = 64


class DoubleConv(nn.Sequential):
    """(3x3 conv, padding 1 -> BatchNorm -> ReLU) twice: the paper's 'double-convolution block'."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )
        self.out_channels = out_channels


class UpBlock(nn.Module):
    """2x2 transposed convolution (stride 2), concatenation with the skip, double convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        self.conv = DoubleConv(2 * out_channels, out_channels)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


def levels_of(depth: int) -> int:
    """Number of encoder (= decoder) blocks of U-Net-``depth``: (depth - 1) / 2."""
    if isinstance(depth, bool) or depth not in DEPTHS:
        raise ValueError(f"U-Net depth must be one of {DEPTHS} (number of double-convolution blocks), "
                         f"got {depth!r}")
    return (depth - 1) // 2


def base_channels(width: float) -> int:
    """Channels of the first level: ``round(64 * width)``, at least 1 (``width=0.25`` -> 16)."""
    checks.positive_number(width, "width (1.0 = the paper's 64 base channels)")
    return max(1, round(PAPER_BASE_CHANNELS * width))


class UNet(nn.Module):
    """U-Net-``depth`` of Qu et al.; see the module docstring for the reading of Fig. 3.

    ``width`` scales all channel counts (1.0 -> 64..512 as in the paper). ``residual=True`` adds the
    input to the output (needs ``in_channels == out_channels``).
    """

    def __init__(self, depth: Depth = 9, width: float = 1.0, *, in_channels: int = 1, out_channels: int = 1,
                 residual: bool = False):
        super().__init__()
        self.depth = depth
        self.levels = levels_of(depth)
        self.width = width
        self.residual = residual
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            checks.integer(value, name)
        if residual and in_channels != out_channels:
            raise ValueError(f"residual=True needs in_channels == out_channels, got {in_channels} and {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels

        base = base_channels(width)
        widths = [base * 2**i for i in range(self.levels)]
        previous = in_channels
        for i, channels in enumerate(widths, start=1):
            self.add_module(f"Down{i}", DoubleConv(previous, channels))
            previous = channels
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.Bottleneck = DoubleConv(previous, 2 * previous)
        previous = 2 * previous
        for j, channels in enumerate(reversed(widths), start=1):
            self.add_module(f"Up{j}", UpBlock(previous, channels))
            previous = channels
        self.head = nn.Conv2d(previous, out_channels, kernel_size=1)

    @property
    def divisor(self) -> int:
        """Height and width of inputs must be multiples of this (one halving per level)."""
        return 2**self.levels

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError for inputs that are not (N, in_channels, H, W) with H, W divisible by 2**levels."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"U-Net-{self.depth} expects input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if height % self.divisor or width % self.divisor:
            raise ValueError(f"U-Net-{self.depth} needs height and width divisible by {self.divisor} "
                             f"(2**{self.levels} for {self.levels} poolings), got {height}x{width}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        h = x
        for i in range(1, self.levels + 1):
            h = getattr(self, f"Down{i}")(h)
            skips.append(h)
            h = self.pool(h)
        h = self.Bottleneck(h)
        for j in range(1, self.levels + 1):
            h = getattr(self, f"Up{j}")(h, skips[-j])
        out = self.head(h)
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}, residual={self.residual}"


def layer_names(model: UNet) -> list[str]:
    """The analysed blocks of ``model`` in forward (encoder -> bottleneck -> decoder) order."""
    if not isinstance(model, UNet):
        raise TypeError(f"layer_names expects a glassbox.models.unet.UNet, got {type(model).__name__}")
    levels = model.levels
    return ([f"Down{i}" for i in range(1, levels + 1)] + ["Bottleneck"]
            + [f"Up{j}" for j in range(1, levels + 1)])


def channels_of(model: UNet) -> dict[str, int]:
    """Output channels of each analysed block, in :func:`layer_names` order."""
    modules = dict(model.named_modules())
    return {name: modules[name].out_channels for name in layer_names(model)}


VALID_NAMES = ("unet5", "unet7", "unet9", "U-Net-5", "U-Net-7", "U-Net-9", "U5", "U7", "U9")
_NAME_PATTERN = re.compile(r"^u(?:-?net)?-?(\d+)$")


def depth_of_name(name: str) -> int:
    """5, 7 or 9 from a model name such as ``"unet5"``, ``"U-Net-7"`` or ``"U9"`` (case-insensitive)."""
    match = _NAME_PATTERN.match(name.strip().lower().replace("_", "-")) if isinstance(name, str) else None
    if match is None or int(match.group(1)) not in DEPTHS:
        raise ValueError(f"unknown U-Net name {name!r}; valid names are {', '.join(VALID_NAMES)} "
                         "(case-insensitive)")
    return int(match.group(1))


def unet(name: str, width: float = 1.0, **kwargs) -> UNet:
    """Build a U-Net from its name (``"unet5"``, ``"U-Net-7"``, ``"U9"``...); kwargs go to :class:`UNet`."""
    return UNet(depth_of_name(name), width, **kwargs)
