"""A synthetic segmentation task: a small structure beside a large one, on a noisy background.

Each scene holds a large ellipse ("organ", class 1) and, just beside it, a small disk ("lesion",
class 2) on background (class 0). The image is the blurred intensity map plus Gaussian noise, so a
single pixel is ambiguous and a network has to look at its neighbourhood. The sizes are the
experiment's knob: the small structure covers ~1 % of a 64x64 image by default, so cross-entropy,
a sum over pixels, hardly sees it (ETH 227-0391-00, Section 6, "Challenge with the cross entropy").

Scene ``i`` of a data set depends only on ``(seed, i)`` (one ``SeedSequence`` child per scene), so
a larger data set extends a smaller one instead of reshuffling it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import TensorDataset

BACKGROUND, LARGE, SMALL = 0, 1, 2
CLASS_NAMES = ("background", "large", "small")
N_CLASSES = len(CLASS_NAMES)
_MAX_TRIES = 200


class ShapesConfigError(ValueError):
    """A scene configuration that cannot be drawn."""


@dataclass(frozen=True)
class ShapesConfig:
    """How scenes look. Radii are ranges (low, high) in pixels, drawn uniformly per scene."""

    size: int = 64
    large_radius: tuple[float, float] = (12.0, 18.0)
    small_radius: tuple[float, float] = (2.0, 3.5)
    gap: float = 2.0                 # pixels between the edges of the two structures
    large_intensity: float = 1.0
    small_intensity: float = 0.7
    noise: float = 0.35              # standard deviation of the additive Gaussian noise
    blur: float = 1.0                # sigma (pixels) of the Gaussian blur of the intensity map

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16:
            raise ShapesConfigError(f"size must be an integer >= 16, got {self.size!r}")
        for name in ("large_radius", "small_radius"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ShapesConfigError(f"{name} must be a range (low, high) with 0 < low <= high, got {(low, high)}")
        if self.small_radius[1] > self.large_radius[0]:
            raise ShapesConfigError(f"the small structure must be smaller than the large one: small_radius "
                                    f"{self.small_radius} overlaps large_radius {self.large_radius}")
        if self.gap < 1:
            raise ShapesConfigError(f"gap must be >= 1 pixel so that the structures do not touch, got {self.gap!r}")
        if self.noise < 0 or self.blur < 0:
            raise ShapesConfigError(f"noise and blur must be >= 0, got noise={self.noise!r}, blur={self.blur!r}")
        needed = self.large_radius[1] + self.gap + 2 * self.small_radius[1] + 2
        if needed > self.size / 2:
            raise ShapesConfigError(f"a {self.size}x{self.size} image cannot hold a large structure of radius "
                                    f"{self.large_radius[1]} plus a small one of radius {self.small_radius[1]} "
                                    f"{self.gap} px beside it (needs size >= {int(np.ceil(2 * needed))})")


@dataclass(frozen=True)
class SegmentationSet:
    """``images`` (N, 1, H, W) float32 and ``labels`` (N, H, W) int64, as torch tensors."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def tensor_dataset(self) -> TensorDataset:
        """A ``TensorDataset`` yielding ``(image, labels)`` pairs, for a DataLoader."""
        return TensorDataset(self.images, self.labels)

    def class_fractions(self) -> np.ndarray:
        """Fraction of all pixels in each class (background, large, small)."""
        return class_fractions(self.labels)


def class_fractions(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    """Fraction of pixels of each of the three classes in a label map or stack of them."""
    values = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    return np.bincount(values.ravel().astype(np.int64), minlength=N_CLASSES)[:N_CLASSES] / values.size


def _ellipse(size: int, centre: tuple[float, float], axes: tuple[float, float], angle: float) -> np.ndarray:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = rows - centre[0], cols - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return (u / axes[0]) ** 2 + (v / axes[1]) ** 2 <= 1.0


def scene_labels(config: ShapesConfig, rng: np.random.Generator, *, small_radius: float | None = None,
                 large_radius: float | None = None) -> np.ndarray:
    """One (H, W) int64 label map; ``small_radius`` / ``large_radius`` override the configured ranges."""
    size = config.size
    r_small = float(rng.uniform(*config.small_radius)) if small_radius is None else float(small_radius)
    r_large = float(rng.uniform(*config.large_radius)) if large_radius is None else float(large_radius)
    if r_small <= 0 or r_large <= r_small:
        raise ShapesConfigError(f"need 0 < small_radius < large_radius, got {r_small} and {r_large}")
    for _ in range(_MAX_TRIES):
        aspect = rng.uniform(0.7, 1.0)
        axes = (r_large, r_large * aspect)
        angle = rng.uniform(0, np.pi)
        margin = r_large + 1
        centre = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
        direction = rng.uniform(0, 2 * np.pi)
        distance = r_large + config.gap + r_small   # from the large centre, beyond its major axis
        small_centre = (centre[0] + distance * np.sin(direction), centre[1] + distance * np.cos(direction))
        if not all(r_small + 1 <= c <= size - 1 - r_small - 1 for c in small_centre):
            continue
        labels = np.zeros((size, size), dtype=np.int64)
        labels[_ellipse(size, centre, axes, angle)] = LARGE
        small = _ellipse(size, small_centre, (r_small, r_small), 0.0)
        if not small.any():
            continue
        labels[small] = SMALL
        return labels
    raise ShapesConfigError(f"could not place a radius-{r_small:.1f} structure beside a radius-{r_large:.1f} one "
                            f"inside {size}x{size} pixels in {_MAX_TRIES} tries; use a larger size")


def render(labels: np.ndarray, config: ShapesConfig, rng: np.random.Generator) -> np.ndarray:
    """The image of a label map: class intensities, blurred, plus Gaussian noise (float32)."""
    intensity = np.zeros(labels.shape, dtype=np.float64)
    intensity[labels == LARGE] = config.large_intensity
    intensity[labels == SMALL] = config.small_intensity
    if config.blur > 0:
        intensity = ndimage.gaussian_filter(intensity, config.blur, mode="constant")
    return (intensity + config.noise * rng.standard_normal(labels.shape)).astype(np.float32)


def make_scene(config: ShapesConfig, seed: int | np.random.Generator, *, small_radius: float | None = None,
               large_radius: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image, labels)`` pair, (H, W) float32 and (H, W) int64."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    labels = scene_labels(config, rng, small_radius=small_radius, large_radius=large_radius)
    return render(labels, config, rng), labels


def make_dataset(n: int, config: ShapesConfig = ShapesConfig(), seed: int = 0) -> SegmentationSet:
    """``n`` scenes; scene ``i`` is a function of ``(seed, i)`` only."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ShapesConfigError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ShapesConfigError(f"seed must be a non-negative integer, got {seed!r}")
    children = np.random.SeedSequence(int(seed)).spawn(int(n))
    pairs = [make_scene(config, np.random.default_rng(child)) for child in children]
    images = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
    labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return SegmentationSet(images=images, labels=labels)
