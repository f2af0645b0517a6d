"""The pixel-wise chapter's knobs: :class:`PixelwiseConfig`, one per profile in :data:`PROFILES`, and its constants."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from glassbox.data import shapes
from glassbox.measure import stats
from glassbox.models import segnets
from glassbox.training import restoration as rst
from glassbox.training import segmentation as seg
from glassbox.training.tissue_features import FeatureNetConfig

CHAPTER = "pixelwise"
SOURCE = "ETH 227-0391-00 §6"
REFERENCE = "eth2025section6"
"""BibTeX key of the course notes: the ``reference`` of every claim whose source is the notes."""
SIMULATED_ONLY = ("its tasks are synthetic shapes, simulated CT and simulated MRI, built so that the right answer "
                  "is known")
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""

ABDOMEN_WINDOW = (40.0, 400.0)          # (centre, width) in HU, the usual soft-tissue window
RESTORATION_LOSSES = rst.RESTORATION_LOSSES


class PixelwiseError(ValueError):
    """A bad argument to one of the chapter's experiments."""


@dataclass(frozen=True)
class PixelwiseConfig:
    """Every knob of the chapter; the defaults are the ``quick`` profile."""

    # segmentation task (glassbox.data.shapes), sizes relative to image_size
    image_size: int = 64
    repeat_image_size: int = 48          # scene size of the sections trained over several seeds (cost ~ pixels)
    n_train: int = 128
    n_test: int = 48
    small_intensity: float = 1.5
    noise: float = 0.35
    width: float = 0.25
    seg_training: seg.SegTraining = seg.SegTraining(epochs=15, batch_size=16, lr=3e-3)
    # losses: one network per loss, with the held-out small-structure Dice after every epoch
    loss_names: tuple[str, ...] = ("ce", "dice")
    loss_architecture: str = "unet-bilinear"
    loss_seeds: int = 1
    reach_level: float = 0.5             # "finds the small structure": held-out small Dice reaches this
    # loss share against size
    share_radii: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    share_scenes: int = 6
    share_blur: float = 1.5
    ce_share_below: float = 0.1          # "L_small << L": the small structure's CE share below 10 %
    # uncertain labels: several raters, soft targets against their majority vote
    n_raters: int = 5
    rater_softness: float = 2.0          # raters see each edge blurred by this many pixels ...
    rater_threshold: tuple[float, float] = (0.15, 0.85)   # ... and draw it at their own level: +-2 px disagreement
    rated_train: int = 64
    rated_test: int = 24
    soft_training: seg.SegTraining = seg.SegTraining(epochs=12, batch_size=8, lr=6e-3, cosine=True)
    soft_width: float = 0.25
    soft_seeds: int = 3
    calibration_bins: int = 10
    soft_dice_margin: float = 0.02       # soft labels "keep" the Dice if the difference is within this
    # the notes' binary network (sigmoid + BCE) against a two-class softmax + CE
    binary_architecture: str = "naive"
    binary_width: float = 0.25
    binary_n_train: int = 64
    binary_training: seg.SegTraining = seg.SegTraining(epochs=8, batch_size=8, lr=6e-3, cosine=True)
    binary_seeds: int = 3
    binary_margin: float = 0.02          # the two parametrisations agree if their Dice differs by less
    # architectures: as built (one width) and at matched parameter counts, over seeds
    architectures: tuple[str, ...] = segnets.ARCHITECTURES
    architecture_loss: str = "dice"
    arch_n_train: int = 64
    arch_training: seg.SegTraining = seg.SegTraining(epochs=15, batch_size=8, lr=6e-3, cosine=True)
    arch_seeds: int = 3
    matched_to: str = "naive"            # every network sized to this one's parameter count at `width`
    up_mode_margin: float = 0.01         # bilinear and transposed up-sampling "alike" within this
    # labelled volumes: learning curve
    volume_slices: int = 12
    curve_volumes: tuple[int, ...] = (1, 3, 5, 10)
    test_volumes: int = 4
    curve_training: seg.SegTraining = seg.SegTraining(epochs=1, batch_size=8, lr=6e-3, cosine=True)  # epochs: steps
    curve_steps: int = 120               # optimiser steps per training, the same for every training-set size
    curve_width: float = 0.25
    intensity_spread: float = 0.4        # each volume's class intensities and noise scaled by 1 +- up to this
    curve_seeds: int = 3
    notes_volumes: int = 5               # the notes: "3 - 5 labeled volumes" suffice for large structures
    curve_margin: float = 0.05           # "suffice": large-structure Dice within this of the largest set's
    # restoration metrics on CT
    ct_size: int = 128
    dose: float = 0.1
    n_ct_test: int = 8
    gallery_mse: float = 4e-3            # on the [0, 1] window scale: PSNR 24 dB
    # L1 against L2 training: targets with impulse noise
    impulse_fraction: float = 0.3
    impulse_value: float = 2.0
    pixel_n_train: int = 64
    pixel_training: rst.RegressorTraining = rst.RegressorTraining(base=8, levels=2, epochs=12, batch_size=8, lr=4e-3,
                                                                  cosine=True)
    pixel_seeds: int = 3
    slope_margin: float = 0.05           # slope equals its prediction (q for L2, 0 for L1) within this
    # perceptual and adversarial demo
    featurenet: FeatureNetConfig = field(default_factory=FeatureNetConfig)
    n_restore_patients: int = 24
    restore_crop: int = 64
    restore_crops_per_image: int = 4
    restore_training: rst.RegressorTraining = rst.RegressorTraining(base=16, levels=2, epochs=10, batch_size=8,
                                                                    lr=1e-3, cosine=True)
    adversarial: rst.AdversarialTraining = rst.AdversarialTraining(perceptual_weight=0.1, adversarial_weight=5e-3,
                                                                   critic_lr=1e-4)
    # imputing a missing MRI sequence
    impute_patients: int = 24
    impute_test_patients: int = 8
    impute_slices: int = 4
    impute_noise: float = 0.03
    impute_training: rst.RegressorTraining = rst.RegressorTraining(base=8, levels=3, epochs=12, batch_size=8, lr=6e-3,
                                                                   cosine=True)
    impute_seeds: int = 3
    mapping_bins: int = 64

    def __post_init__(self) -> None:
        for name in ("loss_seeds", "soft_seeds", "binary_seeds", "arch_seeds", "curve_seeds", "pixel_seeds",
                     "impute_seeds", "n_raters", "volume_slices", "test_volumes", "curve_steps"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < 1:
                raise PixelwiseError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.notes_volumes not in self.curve_volumes:
            raise PixelwiseError(f"curve_volumes {self.curve_volumes} must include notes_volumes={self.notes_volumes}")
        if self.matched_to not in self.architectures:
            raise PixelwiseError(f"matched_to={self.matched_to!r} must be one of architectures {self.architectures}")

    def shapes_config(self, size: int | None = None) -> shapes.ShapesConfig:
        """The scene configuration: a large ellipse of radius 19-28 % and a small disk of 3-5.5 % of the side.

        ``size`` defaults to ``image_size``; the sections repeated over seeds use ``repeat_image_size``.
        """
        size = self.image_size if size is None else size
        return shapes.ShapesConfig(size=size, large_radius=(0.19 * size, 0.28 * size),
                                   small_radius=(max(1.0, 0.03 * size), max(1.5, 0.055 * size)),
                                   small_intensity=self.small_intensity, noise=self.noise)


PROFILES: dict[str, PixelwiseConfig] = {
    "smoke": PixelwiseConfig(
        image_size=40, repeat_image_size=40, n_train=16, n_test=8, width=0.125,
        seg_training=seg.SegTraining(1, 8, 3e-3),
        loss_names=("ce", "dice"),
        share_radii=(1.0, 2.0, 4.0), share_scenes=2,
        n_raters=3, rated_train=8, rated_test=4, soft_training=seg.SegTraining(1, 8, 3e-3), soft_seeds=2,
        binary_n_train=8, binary_training=seg.SegTraining(1, 8, 3e-3), binary_seeds=2,
        arch_n_train=8, arch_training=seg.SegTraining(1, 8, 3e-3), arch_seeds=2,
        volume_slices=4, curve_volumes=(1, 2), notes_volumes=2, test_volumes=1, curve_steps=2, curve_seeds=2,
        curve_width=0.125,
        ct_size=64, n_ct_test=2,
        pixel_n_train=8, pixel_training=rst.RegressorTraining(base=4, levels=2, epochs=1, batch_size=8), pixel_seeds=2,
        featurenet=FeatureNetConfig(size=64, crop=32, crops_per_image=1, n_patients=4, base=4, epochs=1, batch_size=8),
        n_restore_patients=4, restore_crop=32, restore_crops_per_image=1,
        restore_training=rst.RegressorTraining(base=4, levels=2, epochs=1, batch_size=8),
        impute_patients=3, impute_test_patients=2, impute_slices=2,
        impute_training=rst.RegressorTraining(base=4, levels=3, epochs=1, batch_size=8), impute_seeds=2,
        mapping_bins=16),
    "quick": PixelwiseConfig(),
    "paper": PixelwiseConfig(
        image_size=128, n_train=1024, n_test=256, width=1.0, seg_training=seg.SegTraining(60, 16, 3e-3),
        loss_names=("bce", "ce", "dice", "ce+dice"), loss_seeds=5, share_scenes=32,
        rated_train=512, rated_test=128, soft_training=seg.SegTraining(40, 16, 3e-3), soft_width=0.5, soft_seeds=5,
        binary_n_train=512, binary_training=seg.SegTraining(40, 16, 3e-3), binary_width=0.5, binary_seeds=5,
        arch_n_train=1024, arch_training=seg.SegTraining(60, 16, 3e-3), arch_seeds=5,
        repeat_image_size=128, volume_slices=64, curve_volumes=(1, 2, 3, 5, 10, 20), test_volumes=8, curve_steps=2000,
        curve_width=0.5,
        curve_seeds=5, ct_size=256, n_ct_test=16,
        pixel_n_train=512, pixel_training=rst.RegressorTraining(base=16, levels=3, epochs=40, batch_size=16),
        pixel_seeds=5,
        featurenet=FeatureNetConfig(size=256, crop=128, crops_per_image=4, n_patients=400, base=32, epochs=40),
        n_restore_patients=400, restore_crop=128, restore_crops_per_image=4,
        restore_training=rst.RegressorTraining(base=32, levels=2, epochs=60, batch_size=8, lr=1e-3),
        impute_patients=200, impute_test_patients=50, impute_slices=8, impute_seeds=5,
        impute_training=rst.RegressorTraining(base=32, levels=3, epochs=40, batch_size=16)),
}


def replicate_seed(seed: int, replicate: int) -> int:
    """The training seed of replicate ``replicate`` of a chapter run with ``seed`` (init and data order)."""
    return 1000 * int(seed) + int(replicate)


def interval_of(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95 % t interval of a mean (over seeds or test images)."""
    return stats.interval(values)
