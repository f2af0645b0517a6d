"""Yang et al.'s WGAN-VGG networks (IEEE TMI 2018): the generator and the critic.

- :class:`YangGenerator`: eight 3x3 convolutions, seven with 32 filters + ReLU, the last with one filter;
  :data:`YANG_LAYERS` = (1, 7, 13) are its convolutions 1, 4 and 7 (convolutions and ReLUs counted as
  layers, as in Table I of seed 004);
- :class:`WGANCritic`: six 3x3 convolutions of widths w, w, 2w, 2w, 4w, 4w with strides 1/2 alternating,
  LeakyReLU, FC 1024, FC 1.

Training (WGAN-GP with a perceptual term) lives in :mod:`glassbox.training.ct_denoisers`.
"""
from __future__ import annotations

from torch import Tensor, nn

from glassbox.core import checks
from glassbox.models.common import DenoiserError, check_images

YANG_LAYERS: tuple[int, ...] = (1, 7, 13)


class YangGenerator(nn.Module):
    """Yang et al.'s WGAN-VGG generator: 7 x (conv 3x3/32 + ReLU), conv 3x3/1; 15 layers in ``layers``."""

    def __init__(self, width: int = 32, n_convs: int = 8):
        super().__init__()
        width, n_convs = checks.integer(width, "width", error=DenoiserError), checks.integer(n_convs, "n_convs", error=DenoiserError)
        if n_convs < 2:
            raise DenoiserError(f"n_convs must be at least 2, got {n_convs}")
        modules: list[nn.Module] = []
        channels = 1
        for _ in range(n_convs - 1):
            modules += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        modules.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, "YangGenerator input")
        return self.layers(x)


class WGANCritic(nn.Module):
    """Yang et al.'s critic: six 3x3 convs (w, w/s2, 2w, 2w/s2, 4w, 4w/s2; no padding) + LeakyReLU, FC 1024, FC 1.

    ``width`` 64 and LeakyReLU slope 0.2 are the paper's (TF reimplementation); no sigmoid (Wasserstein).
    """

    def __init__(self, patch_size: int, width: int = 64, fc: int = 1024, slope: float = 0.2):
        super().__init__()
        patch_size, width, fc = (checks.integer(v, n, error=DenoiserError) for v, n in ((patch_size, "patch_size"), (width, "width"),
                                                                   (fc, "fc")))
        modules: list[nn.Module] = []
        channels, size = 1, patch_size
        for k, (factor, stride) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2), (4, 1), (4, 2)]):
            modules += [nn.Conv2d(channels, width * factor, 3, stride=stride), nn.LeakyReLU(slope)]
            channels, size = width * factor, (size - 3) // stride + 1
            if size < 1:
                raise DenoiserError(f"patch_size {patch_size} is too small for the critic's six unpadded "
                                    f"convolutions (nothing left after conv {k + 1}); use at least 29")
        self.patch_size = patch_size
        self.features = nn.Sequential(*modules)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * size * size, fc), nn.LeakyReLU(slope),
                                  nn.Linear(fc, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1:] != (1, self.patch_size, self.patch_size):
            raise DenoiserError(f"WGANCritic expects (N, 1, {self.patch_size}, {self.patch_size}) patches, "
                                f"got {tuple(x.shape)}")
        return self.head(self.features(x)).squeeze(1)
