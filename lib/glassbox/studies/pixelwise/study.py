"""The pixel-wise chapter's entry point: :func:`run` and its :class:`PixelwiseResult`."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from glassbox.studies.pixelwise.config import PixelwiseConfig
from glassbox.studies.pixelwise.metrics import (
    ct_examples,
    degradation_table,
    equal_mse_gallery,
    metric_reference_check,
    rank_disagreements,
    window,
)
from glassbox.studies.pixelwise.restoration import (
    ImputationStudy,
    PixelLossStudy,
    RestorationStudy,
    imputation_study,
    pixel_loss_study,
    restoration_study,
)
from glassbox.studies.pixelwise.segmentation import (
    ArchitectureStudy,
    BinaryStudy,
    LearningCurve,
    LossShares,
    LossStudy,
    SoftLabelStudy,
    architecture_study,
    binary_study,
    learning_curve,
    loss_shares,
    loss_study,
    soft_label_study,
)

# ------------------------------------------------------------------------------------------------
# The chapter's result

@dataclass
class PixelwiseResult:
    """Everything the chapter computes, section by section (what :func:`claims` and :func:`checks` read)."""

    shares: LossShares
    losses: LossStudy
    soft: SoftLabelStudy
    binary: BinaryStudy
    architectures: ArchitectureStudy
    curve: LearningCurve
    reference_check: pd.DataFrame
    gallery: pd.DataFrame
    disagreements: pd.DataFrame
    n_pairs: int
    pixel_losses: PixelLossStudy
    restoration: RestorationStudy
    imputation: ImputationStudy


def run(config: PixelwiseConfig, seed: int, device: str | torch.device = "cpu", progress: bool = True
        ) -> PixelwiseResult:
    """Every experiment of the chapter, in its order (the chapter calls the same functions one by one)."""
    examples = ct_examples(config, seed)
    low_w, full_w = window(examples["low"][0]), window(examples["full"][0])
    typical = degradation_table(full_w, seed=seed)
    return PixelwiseResult(
        loss_shares(config, seed), loss_study(config, seed, device, progress),
        soft_label_study(config, seed, device, progress), binary_study(config, seed, device, progress),
        architecture_study(config, seed, device, progress), learning_curve(config, seed, device, progress),
        metric_reference_check(low_w, full_w), equal_mse_gallery(full_w, config.gallery_mse, seed=seed)[0],
        rank_disagreements(typical), len(typical) * (len(typical) - 1) // 2,
        pixel_loss_study(config, seed, device, progress), restoration_study(config, seed, examples, device, progress),
        imputation_study(config, seed, device, progress))
