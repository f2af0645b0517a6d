"""A synthetic segmentation task: a small structure beside a large one, on a noisy background.

Each scene holds a large ellipse ("organ", class 1) and, just beside it, a small disk ("lesion",
class 2) on background (class 0). The image is the blurred intensity map plus Gaussian noise, so a
single pixel is ambiguous and a network has to look at its neighbourhood. The sizes are the
experiment's knob: the small structure covers ~1 % of a 64x64 image by default, so cross-entropy,
a sum over pixels, hardly sees it (ETH 227-0391-00, Section 6, "Challenge with the cross entropy").

Scene ``i`` of a data set depends only on ``(seed, i)`` (one ``SeedSequence`` child per scene), so
a larger data set extends a smaller one instead of reshuffling it.

Two extensions serve the chapter's questions about data (ETH notes, Section 6, "Dataset"):

- :func:`make_volumes`: *volumes* of ``n_slices`` neighbouring slices through one subject, whose
  structures change only a little from slice to slice (the notes count labelled data in volumes: "3 - 5
  labeled volumes"); slices of one volume are far from independent examples.
- :func:`rater_labels`: several annotators' label maps of one scene, who agree inside structures and
  disagree near their boundaries ("Different people might create different labels"), and
  :func:`soft_labels` / :func:`majority_vote` to turn them into the notes' p(y(r) = k) or one label.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import TensorDataset

from glassbox.core import checks, dryrun

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
        checks.integer(self.size, "size", minimum=16, error=ShapesConfigError)
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
    """``images`` (N, 1, H, W) float32 and ``labels`` (N, H, W) int64, as torch tensors.

    ``volumes`` (N,) int64, when set, says which volume (subject) each slice comes from.
    """

    images: torch.Tensor
    labels: torch.Tensor
    volumes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def tensor_dataset(self) -> TensorDataset:
        """A ``TensorDataset`` yielding ``(image, labels)`` pairs, for a DataLoader."""
        return TensorDataset(self.images, self.labels)

    def class_fractions(self) -> np.ndarray:
        """Fraction of all pixels in each class (background, large, small)."""
        return class_fractions(self.labels)

    def select_volumes(self, chosen: Sequence[int]) -> SegmentationSet:
        """The slices of the volumes whose ids are in ``chosen`` (in data-set order)."""
        if self.volumes is None:
            raise ShapesConfigError("this data set has no volume ids; build it with make_volumes")
        chosen = [int(v) for v in chosen]
        unknown = sorted(set(chosen) - set(self.volumes.tolist()))
        if not chosen or unknown:
            raise ShapesConfigError(f"chosen must be a non-empty list of volume ids of this set, got unknown {unknown}"
                                    if unknown else "chosen must name at least one volume")
        keep = torch.isin(self.volumes, torch.tensor(chosen))
        return SegmentationSet(self.images[keep], self.labels[keep], self.volumes[keep])


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
    checks.integer(n, "n", error=ShapesConfigError)
    checks.seed(seed, error=ShapesConfigError)
    children = np.random.SeedSequence(int(seed)).spawn(int(n))
    if dryrun.active() and n > 1:  # a dry run draws one scene; the rest are copies (same shapes and memory)
        dryrun.note("shapes.make_dataset")
        one = make_dataset(1, config, seed)
        return SegmentationSet(images=one.images.repeat(int(n), 1, 1, 1), labels=one.labels.repeat(int(n), 1, 1))
    pairs = [make_scene(config, np.random.default_rng(child)) for child in children]
    images = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None])
    labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
    return SegmentationSet(images=images, labels=labels)


# ------------------------------------------------------------------------------------------------
# Volumes: neighbouring slices of one subject


def _draw_volume_geometry(config: ShapesConfig, rng: np.random.Generator) -> dict[str, float]:
    return {"r_small": float(rng.uniform(*config.small_radius)), "r_large": float(rng.uniform(*config.large_radius)),
            "aspect": float(rng.uniform(0.7, 1.0)), "angle": float(rng.uniform(0, np.pi)),
            "row": float(rng.uniform(0, 1)), "col": float(rng.uniform(0, 1)),
            "direction": float(rng.uniform(0, 2 * np.pi)), "drift": float(rng.uniform(0, 2 * np.pi))}


def volume_labels(config: ShapesConfig, rng: np.random.Generator, n_slices: int, *, spread: float = 0.6,
                  drift: float = 2.0) -> np.ndarray:
    """(n_slices, H, W) label maps of one subject: neighbouring cuts through a large ellipsoid and a small tube.

    Slice ``j`` sits at height ``z_j`` in ``[-spread, spread]`` (fractions of the large radius): the
    large section has radius ``r_large * sqrt(1 - z^2)``, the small structure's radius varies by up to
    10 %, and both drift by up to ``drift`` pixels across the volume. Its geometry is drawn once per
    volume, so its slices are strongly correlated examples.
    """
    checks.integer(n_slices, "n_slices", error=ShapesConfigError)
    if not 0 <= spread < 1:
        raise ShapesConfigError(f"spread must be in [0, 1), got {spread!r}")
    size = config.size
    heights = np.linspace(-spread, spread, int(n_slices)) if n_slices > 1 else np.zeros(1)
    for _ in range(_MAX_TRIES):
        g = _draw_volume_geometry(config, rng)
        r_large, r_small = g["r_large"], g["r_small"]
        reach = r_large + config.gap + 2 * 1.1 * r_small + drift + 1
        centre0 = (reach + g["row"] * (size - 2 * reach), reach + g["col"] * (size - 2 * reach))
        if size - 2 * reach < 0:
            continue
        stack = np.zeros((len(heights), size, size), dtype=np.int64)
        for j, z in enumerate(heights):
            shift = drift * z / max(spread, 1e-9)
            centre = (centre0[0] + shift * np.sin(g["drift"]), centre0[1] + shift * np.cos(g["drift"]))
            radius = r_large * np.sqrt(1 - z ** 2)
            small = r_small * (1 + 0.1 * np.cos(np.pi * z))
            distance = radius + config.gap + small
            small_centre = (centre[0] + distance * np.sin(g["direction"]), centre[1] + distance * np.cos(g["direction"]))
            stack[j][_ellipse(size, centre, (radius, radius * g["aspect"]), g["angle"])] = LARGE
            stack[j][_ellipse(size, small_centre, (small, small), 0.0)] = SMALL
        if all((s == SMALL).any() for s in stack) and not (stack[:, [0, -1], :] == SMALL).any() \
                and not (stack[:, :, [0, -1]] == SMALL).any():
            return stack
    raise ShapesConfigError(f"could not fit a volume of this configuration into {size}x{size} pixels; "
                            "use a larger size or smaller radii")


def volume_appearance(config: ShapesConfig, rng: np.random.Generator, spread: float) -> ShapesConfig:
    """``config`` with one volume's own intensity profile: each class intensity and the noise level scaled by a
    factor drawn from ``[1 - spread, 1 + spread]`` (as subjects and scanners differ); ``spread=0`` changes nothing."""
    if not 0 <= spread < 1:
        raise ShapesConfigError(f"spread must be in [0, 1), got {spread!r}")
    if spread == 0:
        return config
    factors = rng.uniform(1 - spread, 1 + spread, 3)
    return replace(config, large_intensity=config.large_intensity * factors[0],
                   small_intensity=config.small_intensity * factors[1], noise=config.noise * factors[2])


def make_volumes(n_volumes: int, n_slices: int, config: ShapesConfig = ShapesConfig(), seed: int = 0,
                 first: int = 0, intensity_spread: float = 0.0) -> SegmentationSet:
    """Volumes ``first .. first + n_volumes - 1`` of ``n_slices`` slices each, with their volume ids.

    Volume ``v`` depends only on ``(seed, v)``, so the first few volumes of a large pool are the same
    as a small pool's, and a training set of 3 volumes is a subset of one of 5. Every slice gets its
    own noise; with ``intensity_spread`` every volume also gets its own intensity profile
    (:func:`volume_appearance`), the same for all its slices.
    """
    n_volumes = _positive_count(n_volumes, "n_volumes")
    n_slices = _positive_count(n_slices, "n_slices")
    checks.integer(first, "first", minimum=0, error=ShapesConfigError)
    checks.seed(seed, error=ShapesConfigError)
    if dryrun.active() and n_volumes > 1:  # a dry run draws one volume; the rest are copies with their own ids
        dryrun.note("shapes.make_volumes")
        one = make_volumes(1, n_slices, config, seed, first, intensity_spread)
        ids = torch.arange(int(first), int(first) + n_volumes, dtype=torch.int64).repeat_interleave(n_slices)
        return SegmentationSet(images=one.images.repeat(n_volumes, 1, 1, 1), labels=one.labels.repeat(n_volumes, 1, 1),
                               volumes=ids)
    images, labels, ids = [], [], []
    for volume in range(int(first), int(first) + n_volumes):
        rng = np.random.default_rng([int(seed), volume])
        stack = volume_labels(config, rng, n_slices)
        looks = volume_appearance(config, np.random.default_rng([int(seed), volume, 1]), intensity_spread)
        images += [render(s, looks, rng) for s in stack]
        labels.append(stack)
        ids += [volume] * n_slices
    return SegmentationSet(images=torch.from_numpy(np.stack(images)[:, None]),
                           labels=torch.from_numpy(np.concatenate(labels)),
                           volumes=torch.tensor(ids, dtype=torch.int64))


def _positive_count(value: int, name: str) -> int:
    return checks.integer(value, name, error=ShapesConfigError)


def clean_image(labels: np.ndarray, config: ShapesConfig) -> np.ndarray:
    """The noise-free image of a label map (class intensities, blurred): what :func:`render` adds noise to."""
    return render(labels, replace(config, noise=0.0), np.random.default_rng(0))


# ------------------------------------------------------------------------------------------------
# Annotators who disagree near boundaries


def rater_labels(labels: np.ndarray, n_raters: int, rng: np.random.Generator, *, softness: float = 1.5,
                 threshold: tuple[float, float] = (0.25, 0.75), wobble: float = 0.15,
                 wobble_scale: float = 3.0) -> np.ndarray:
    """(n_raters, H, W) label maps of one scene, as ``n_raters`` annotators might draw them.

    Each structure's mask is blurred by a Gaussian of ``softness`` pixels (an image's fuzzy edge);
    a rater marks a pixel as the structure where the blurred mask exceeds the rater's own threshold
    (drawn from ``threshold`` per rater and scene, as a fraction of the blurred mask's peak, so that a
    small structure is outlined too: generous raters draw larger outlines, strict ones smaller) plus a
    smooth random field of amplitude ``wobble`` and correlation ``wobble_scale`` px (local hesitations). Raters therefore agree inside structures and far outside, and disagree in
    a band of a pixel or two around each boundary. The small structure is drawn over the large one.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= N_CLASSES:
        raise ShapesConfigError(f"labels must be a 2-D integer map of classes 0..{N_CLASSES - 1}")
    n_raters = _positive_count(n_raters, "n_raters")
    low, high = threshold
    if not 0 < low <= high < 1:
        raise ShapesConfigError(f"threshold must be a range (low, high) inside (0, 1), got {threshold!r}")
    if softness <= 0 or wobble < 0 or wobble_scale <= 0:
        raise ShapesConfigError(f"softness and wobble_scale must be > 0 and wobble >= 0, got {softness!r}, "
                                f"{wobble_scale!r}, {wobble!r}")
    soft = {k: ndimage.gaussian_filter((labels == k).astype(np.float64), softness) for k in (LARGE, SMALL)}
    out = np.zeros((n_raters,) + labels.shape, dtype=np.int64)
    for r in range(n_raters):
        level = rng.uniform(low, high)
        for k in (LARGE, SMALL):
            field = ndimage.gaussian_filter(rng.standard_normal(labels.shape), wobble_scale)
            field *= wobble / max(float(field.std()), 1e-12)
            out[r][soft[k] > (level + field) * soft[k].max()] = k
    return out


def soft_labels(raters: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The notes' p(y(r) = k): the fraction of raters who gave pixel r class k. (R, H, W) -> (K, H, W) float32."""
    values = torch.as_tensor(np.asarray(raters), dtype=torch.int64)
    if values.ndim < 2:
        raise ShapesConfigError(f"raters must be (R, H, W) label maps, got shape {tuple(values.shape)}")
    counts = torch.nn.functional.one_hot(values, N_CLASSES).sum(0).movedim(-1, 0)
    return (counts.float() / values.shape[0])


def majority_vote(raters: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The class most raters gave each pixel (ties go to the smaller structure: small over large over background)."""
    probs = soft_labels(raters)
    # a tie-break smaller than 1/R: prefer the later (smaller) class when votes are equal
    bonus = torch.arange(N_CLASSES, dtype=torch.float32)[:, None, None] * 1e-3
    return (probs + bonus).argmax(0)


@dataclass(frozen=True)
class RatedSet:
    """Scenes with several annotations: ``images`` (N, 1, H, W), ``truth`` (N, H, W) the labels the image was
    drawn from, ``raters`` (N, R, H, W) the annotators' maps, and their ``soft`` (N, K, H, W) and ``majority``
    (N, H, W) summaries."""

    images: torch.Tensor
    truth: torch.Tensor
    raters: torch.Tensor
    soft: torch.Tensor
    majority: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


def make_rated_set(n: int, n_raters: int, config: ShapesConfig = ShapesConfig(), seed: int = 0,
                   **rater_options: Any) -> RatedSet:
    """``n`` scenes of :func:`make_dataset` ``(n, config, seed)``, each annotated by ``n_raters`` raters."""
    if dryrun.active() and _positive_count(n, "n") > 1:  # a dry run rates one scene; the rest are copies
        dryrun.note("shapes.make_rated_set")
        one = make_rated_set(1, n_raters, config, seed, **rater_options)
        return RatedSet(*(t.repeat(n, *([1] * (t.ndim - 1))) for t in (one.images, one.truth, one.raters, one.soft,
                                                                         one.majority)))
    data = make_dataset(n, config, seed)
    children = np.random.SeedSequence([int(seed), 1]).spawn(_positive_count(n, "n"))
    raters = np.stack([rater_labels(lab, n_raters, np.random.default_rng(child), **rater_options)
                       for lab, child in zip(data.labels.numpy(), children)])
    soft = torch.stack([soft_labels(r) for r in raters])
    majority = torch.stack([majority_vote(r) for r in raters])
    return RatedSet(data.images, data.labels, torch.from_numpy(raters), soft, majority)
