"""The feature-space chapter's constants: its profiles (the U-Net grid's), metrics, the paper's N and alpha."""
from __future__ import annotations

from glassbox.training import unet_grid

CHAPTER = "feature_space"
PROFILES = unet_grid.PROFILES
"""This chapter runs on the U-Net grid's profiles (:data:`glassbox.training.unet_grid.PROFILES`)."""

METRICS: tuple[str, ...] = ("svcca", "pwcca", "linear_cka", "linear_cka_debiased", "cosine", "matched_cosine")
"""The metrics of the feature tables (see the module docstring)."""

PAPER_N = 2604
"""The paper's number of test images (Sec. IV-A)."""

ALPHA = 0.05
"""Significance level of every test behind a verdict (family-wise, with Holm's correction, for families)."""

LAYER_ORDER = ("Down1", "Down2", "Down3", "Down4", "Bottleneck", "Up1", "Up2", "Up3", "Up4")
