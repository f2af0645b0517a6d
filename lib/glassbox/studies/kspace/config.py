"""The k-space chapter's knobs (:class:`KSpaceConfig`, one per profile in :data:`PROFILES`), its constants and
the paper's numbers (Lu, Table 1)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassbox.core import checks as argcheck
from glassbox.core.training_settings import TrainingSettings
from glassbox.data.mri import (
    FACTORS,
    IMAGE_FACTORS,
    LINE_FACTORS,
    VENDOR_B_CALIBRATED,
    VENDORS,
    AnatomyConfig,
    Vendor,
)
from glassbox.models.kspace_sampler import (
    check_rate,
    unit_count,
)

SIMULATED_ONLY = "it simulates two MRI vendors from breast-like anatomy (the Duke data set is not available here)"
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""

CHAPTER = "kspace"
TRAIN_VENDORS: tuple[str, str] = ("A", "B")
KINDS: tuple[str, ...] = ("learned", "centre", "random", "full")
PROTOCOLS: tuple[str, ...] = ("topk", "sampled")

ABLATIONS: dict[str, tuple[str, ...]] = (
    {f"A+{f}": (f,) for f in FACTORS}
    | {"A+line": LINE_FACTORS, "A+image": IMAGE_FACTORS, "A+all": tuple(FACTORS)}
)
"""Ablation scan -> the factors of vendor B it takes on (A's test patients, A's other factors)."""

# --------------------------------------------------------------------------------------------
# The paper's numbers (Lu, Table 1: "AUC for different Sampling Rates at the End of Training").
# GE = our vendor A, Siemens = our vendor B. The paper initialises a line's logit as [log(r/(1-r)), 0] and
# "selected the second column", which samples with probability 1 - r; so the rate column may be the sampled
# fraction (reading 1, as the text reads it) or one minus it (reading 2). Both readings are shown.

PAPER_VENDOR_NAMES: dict[str, str] = {"A": "GE", "B": "Siemens"}
PAPER_TABLE1: dict[str, dict[str, tuple[float, ...]]] = {
    "A": {  # trained on GE
        "rate": (0.148, 0.242, 0.355, 0.496, 0.601, 0.664, 0.710, 0.804, 0.886, 1.0),
        "own": (0.837, 0.878, 0.884, 0.882, 0.889, 0.898, 0.897, 0.902, 0.887, 0.890),    # test on GE
        "other": (0.689, 0.625, 0.621, 0.605, 0.605, 0.635, 0.594, 0.630, 0.609, 0.659),  # test on Siemens
    },
    "B": {  # trained on Siemens
        "rate": (0.113, 0.222, 0.308, 0.464, 0.578, 0.674, 0.750, 0.781, 0.882, 1.0),
        "own": (0.822, 0.868, 0.859, 0.862, 0.879, 0.873, 0.855, 0.881, 0.854, 0.873),    # test on Siemens
        "other": (0.726, 0.714, 0.703, 0.731, 0.734, 0.748, 0.743, 0.743, 0.756, 0.750),  # test on GE
    },
}
PAPER_ROBUST_RATE: dict[str, float] = {"A": 0.242, "B": 0.222}
"""The rates at which Lu reports "maximum robustness" (Results, first paragraph)."""

VENDOR_B_CHOICES: dict[str, Vendor] = {"first": VENDORS["B"], "calibrated": VENDOR_B_CALIBRATED}
"""Vendor B's presets: ``first`` (:data:`glassbox.data.mri.VENDOR_B`, the values chosen before the chapter's first
verdicts; the default) and ``calibrated`` (:data:`~glassbox.data.mri.VENDOR_B_CALIBRATED`, whose contrast and coil
were changed after the chapter's first verdicts had been seen; an option, so that the effect can be shown)."""

VENDOR_B_TEXT: dict[str, str] = {
    "first": "values chosen before any verdict (vendor_b = 'first')",
    "calibrated": ("values picked after the first verdicts had been seen (vendor_b = 'calibrated'), and the claims "
                   "that use them say so in their note"),
}
"""How the chapter names the vendor B preset a run uses."""


@dataclass(frozen=True, kw_only=True)
class KSpaceConfig(TrainingSettings):
    """Knobs of the chapter (data, masks, training, evaluation). Defaults are the ``quick`` profile.

    ``epochs``, ``batch_size`` and ``lr`` (:class:`~glassbox.core.training_settings.TrainingSettings`) train every
    classifier on its fixed, or frozen learned, mask.
    """

    # data: separate training and test cohorts per vendor (so no patient is in both)
    size: int = 64                        # image side = number of phase-encode lines
    n_train: int = 120                    # training patients per vendor
    n_test: int = 50                      # test patients per vendor (and of every ablation scan)
    slices_per_patient: int = 4           # half through the tumour, half away from it
    # masks
    rates: tuple[float, ...] = (0.14, 0.23)      # learned-mask rates below 1; full sampling is always trained
    baseline_rates: tuple[float, ...] = (0.14,)  # centre and random masks at these rates (each one of `rates`)
    temperature: float = 1.0              # of the relaxed top-k (the gradient's smoothness)
    # classifier and training
    width: float = 0.5
    dropout: float = 0.5
    mask_epochs: int = 8                  # learned masks: the layer and a network trained end to end
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    logit_lr: float = 0.05
    n_seeds: int = 3                      # training seeds per (vendor, mask, rate)
    # evaluation
    eval_draws: int = 8                   # masks per test image in the sampled protocol
    n_boot: int = 1000                    # bootstrap resamples (training seeds x test patients)
    alpha: float = 0.05                   # 1 - interval level
    margin: float = 0.05                  # AUC difference that counts as "near" (robustness, equivalence)
    # vendor B's contrast and coil: "first" (chosen before the first verdicts) or "calibrated" (set after
    # the first verdicts had been seen; an option only)
    vendor_b: str = "first"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("size", "n_train", "n_test", "mask_epochs", "n_seeds", "eval_draws", "n_boot"):
            argcheck.integer(getattr(self, name), name)
        if self.size < 16:
            raise ValueError(f"size must be at least 16 (SmallAlexNet's smallest input), got {self.size}")
        if not self.rates or len(set(self.rates)) != len(self.rates):
            raise ValueError(f"rates must be distinct and non-empty, got {self.rates!r}")
        for r in (*self.rates, *self.baseline_rates):
            if check_rate(r, "rates/baseline_rates entry") >= 1.0:
                raise ValueError(f"rates hold the under-sampled rates only (full sampling is always trained), got {r}")
        ks = [unit_count(r, self.size) for r in self.rates]
        if len(set(ks)) != len(ks):
            raise ValueError(f"rates {self.rates} give repeated line counts {ks} at size {self.size}")
        if not set(self.baseline_rates) <= set(self.rates):
            raise ValueError(f"baseline_rates {self.baseline_rates} must be among rates {self.rates}")
        for name in ("logit_lr", "temperature", "width"):
            argcheck.positive_number(getattr(self, name), name)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0 < self.margin < 0.5 or not 0 < self.alpha < 1:
            raise ValueError(f"margin must be in (0, 0.5) and alpha in (0, 1), got {self.margin!r}, {self.alpha!r}")
        if self.vendor_b not in VENDOR_B_CHOICES:
            raise ValueError(f"vendor_b must be one of {sorted(VENDOR_B_CHOICES)}, got {self.vendor_b!r}")

    @property
    def vendors(self) -> dict[str, Vendor]:
        """The two training vendors of this config (B as chosen by ``vendor_b``)."""
        return {"A": VENDORS["A"], "B": VENDOR_B_CHOICES[self.vendor_b]}

    @property
    def anatomy(self) -> AnatomyConfig:
        return AnatomyConfig(size=self.size, slices_per_patient=self.slices_per_patient)

    def k(self, rate: float) -> int:
        """Lines kept at ``rate``: ``round(rate * size)``."""
        return unit_count(rate, self.size)

    @property
    def lowest_k(self) -> int:
        return self.k(min(self.rates))

    @property
    def claim_k(self) -> int:
        """The line count of the robustness claim: the learned rate nearest Lu's 0.242 / 0.222 (their mean)."""
        target = float(np.mean(list(PAPER_ROBUST_RATE.values())))
        return self.k(min(self.rates, key=lambda r: (abs(self.k(r) / self.size - target), r)))


PROFILES: dict[str, KSpaceConfig] = {
    # seconds: 32x32 images, one under-sampled rate, two seeds, one epoch per phase; checks the plumbing
    "smoke": KSpaceConfig(size=32, n_train=8, n_test=6, rates=(0.25,), baseline_rates=(0.25,), width=0.25,
                          mask_epochs=1, epochs=1, batch_size=16, n_seeds=2, eval_draws=2, n_boot=200),
    # minutes on a 2-core CPU: two under-sampled rates (Lu's lowest, ~0.14, and ~0.23, where Lu reports
    # maximum robustness) plus full sampling, baselines at the lowest rate, three seeds, 8 epochs per phase
    "quick": KSpaceConfig(),
    # Lu's design (ten rates), baselines at four of them, five seeds, four times the data, 30 epochs per
    # phase and the full-width network; 180 models, for a GPU
    "paper": KSpaceConfig(n_train=480, n_test=160, rates=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                          baseline_rates=(0.1, 0.2, 0.3, 0.5), width=1.0, mask_epochs=30, epochs=30, lr=5e-4,
                          logit_lr=0.01, n_seeds=5, n_boot=1000),
}
