"""Chen et al.'s three-layer CT denoiser (ISBI 2017), as analysed by Eulig et al.

:class:`ChenCNN`: conv 9x9/64, ReLU, conv 3x3/32, ReLU, conv k x k/1. Seed 004's Table I lists the last
kernel as 3x3; the journal version ("CNN-10") and the authors' benchmark code (ldct-benchmark) use 5x5, so
``last_kernel`` is a parameter with default 5. Layers are counted as in that table (every convolution and
every ReLU is one layer): :data:`CHEN_LAYERS` = (1, 3, 5) are the three convolutions. Training lives in
:mod:`glassbox.training.ct_denoisers`.
"""
from __future__ import annotations

from torch import Tensor, nn

from glassbox.models.common import DenoiserError, check_images

CHEN_LAYERS: tuple[int, ...] = (1, 3, 5)


class ChenCNN(nn.Module):
    """Chen et al.'s 3-layer CNN; ``layers`` holds conv, ReLU, conv, ReLU, conv ('same' padding)."""

    def __init__(self, last_kernel: int = 5):
        super().__init__()
        if isinstance(last_kernel, bool) or not isinstance(last_kernel, int) or last_kernel < 1 or last_kernel % 2 == 0:
            raise DenoiserError(f"last_kernel must be an odd positive integer (3 in seed 004's table, 5 in "
                                f"ldct-benchmark), got {last_kernel!r}")
        self.last_kernel = last_kernel
        self.layers = nn.Sequential(nn.Conv2d(1, 64, 9, padding=4), nn.ReLU(),
                                    nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(32, 1, last_kernel, padding=last_kernel // 2))

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, "ChenCNN input")
        return self.layers(x)
