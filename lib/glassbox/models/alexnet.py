"""A small AlexNet for single-channel images that trains in seconds on a CPU.

Lu (seed 003) classifies the k-sampled images with AlexNet (Krizhevsky et al. 2012; the paper's
citation [7] is a different paper). torchvision's AlexNet has 57M parameters and trains at about
30 images/s on two CPU threads at 64x64 (``research/kspace.md`` section 3), far too slow for twenty
models. :class:`SmallAlexNet` keeps AlexNet's *topology* and shrinks its widths:

- a large strided first convolution (7x7, stride 2) followed by overlapping max pooling (3, stride 2),
  as AlexNet's 11x11/4 + pool 3/2;
- five convolutions (7x7, 5x5, 3x3, 3x3, 3x3) with ReLU, a final max pool;
- three fully connected layers with dropout before the first two;
- one output logit (tumour present), for ``BCEWithLogitsLoss``, instead of a softmax.

``batch_norm=True`` (default) puts BatchNorm after every convolution, in the place of AlexNet's
local response normalisation: without it the network barely moves from chance in the few epochs a
CPU budget allows on our phantoms (a deviation from 2012 AlexNet, stated in the chapter).

At width 1 and 64x64 it has about 575k parameters (width 0.5: about 260k, the hidden fully
connected width stays ``hidden``). The last pool is an adaptive max pool to 4x4, which equals a
2x2 max pool at 64x64 and lets other input sizes (>= 16) through.
"""
from __future__ import annotations

import torch
from torch import nn

from glassbox.core import checks

__all__ = ["SmallAlexNet"]


class SmallAlexNet(nn.Module):
    """AlexNet topology at a fraction of the width; ``forward`` returns one logit per image, shape (B,)."""

    def __init__(self, in_channels: int = 1, width: float = 1.0, hidden: int = 256, dropout: float = 0.5,
                 batch_norm: bool = True):
        super().__init__()
        checks.integer(in_channels, "in_channels")
        checks.positive_number(width, "width")
        checks.integer(hidden, "hidden")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        c1, c2, c3, c4, c5 = (max(1, int(round(c * width))) for c in (32, 64, 96, 96, 64))
        self.in_channels = in_channels

        def conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2,
                                                 bias=not batch_norm)]
            if batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(in_channels, c1, 7, stride=2), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            *conv(c1, c2, 5), nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            *conv(c2, c3, 3), *conv(c3, c4, 3), *conv(c4, c5, 3),
            nn.AdaptiveMaxPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout), nn.Linear(c5 * 16, hidden), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"SmallAlexNet expects (B, {self.in_channels}, H, W) images, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 16:
            raise ValueError(f"SmallAlexNet needs images of at least 16x16, got {tuple(x.shape[-2:])}")
        return self.classifier(self.features(x)).squeeze(-1)
