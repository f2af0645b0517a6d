"""The randomness chapter's knobs: :class:`RandomnessConfig`, one per profile in :data:`PROFILES`."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from glassbox.core import checks as argcheck
from glassbox.core import repro
from glassbox.data import ct_physics, lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES
from glassbox.studies.randomness.conditions import CONDITIONS, CPU_ONLY, CUDA_ONLY
from glassbox.training.unet_denoiser import DenoiserConfig


@dataclass(frozen=True)
class RandomnessConfig:
    """Knobs of the randomness chapter.

    ``denoiser.split_seed`` is replaced by the chapter's seed. ``torch_threads`` is the thread count of
    every trial (None: whatever torch uses when the experiment starts); ``alt_threads`` is trial B's in the
    ``threads`` condition. Features are the spatial channel means on ``n_feature_images`` crops of
    ``feature_patch_size`` from the test slices; along training, on the first ``curve_feature_images`` of
    them (None: all), and outputs on the first ``curve_slices`` test slices (None: all). Weights kept per snapshot: all parameters, or a fixed
    random subset of ``weight_probe`` of them for larger models.
    """

    data: lowdose_ct.CTDataConfig
    denoiser: DenoiserConfig
    conditions: tuple[str, ...] = tuple(CONDITIONS)
    n_pairs: int = 3
    feature_patch_size: int = 32
    n_feature_images: int = 256
    curve_feature_images: int | None = None
    curve_slices: int | None = None
    snapshot_every_epochs: int = 1
    weight_probe: int = 1 << 22
    torch_threads: int | None = 1
    alt_threads: int = 2
    chance_draws: int = 20
    cka_test_draws: int = 199
    bootstrap: int = 2000

    def __post_init__(self) -> None:
        if not isinstance(self.data, lowdose_ct.CTDataConfig) or not isinstance(self.denoiser, DenoiserConfig):
            raise ValueError("data must be a glassbox.data.lowdose_ct.CTDataConfig and denoiser a glassbox.training.unet_denoiser.DenoiserConfig")
        unknown = [c for c in self.conditions if c not in CONDITIONS]
        if unknown or not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions must be distinct names from {tuple(CONDITIONS)}, got {self.conditions!r}")
        argcheck.integer(self.n_pairs, "n_pairs", 1)
        size = argcheck.integer(self.feature_patch_size, "feature_patch_size", 2)
        if size % self.denoiser_divisor or size > self.data.n:
            raise ValueError(f"feature_patch_size ({size}) must divide by {self.denoiser_divisor} "
                             f"(U-Net-{self.denoiser.depth}) and fit the {self.data.n}-pixel slices")
        argcheck.integer(self.n_feature_images, "n_feature_images", 4)
        if self.curve_feature_images is not None and not 4 <= argcheck.integer(self.curve_feature_images, "curve_feature_images", 4) <= self.n_feature_images:
            raise ValueError(f"curve_feature_images must be at most n_feature_images ({self.n_feature_images}), "
                             f"got {self.curve_feature_images}")
        if self.curve_slices is not None:
            argcheck.integer(self.curve_slices, "curve_slices", 1)
        argcheck.integer(self.snapshot_every_epochs, "snapshot_every_epochs", 1)
        argcheck.integer(self.weight_probe, "weight_probe", 1)
        if self.torch_threads is not None:
            argcheck.integer(self.torch_threads, "torch_threads", 1)
        argcheck.integer(self.alt_threads, "alt_threads", 1)
        argcheck.integer(self.chance_draws, "chance_draws", 2)
        argcheck.integer(self.cka_test_draws, "cka_test_draws", 2)
        argcheck.integer(self.bootstrap, "bootstrap", 10)
        if self.data.n % self.denoiser_divisor:
            raise ValueError(f"whole {self.data.n}-pixel test slices cannot pass U-Net-{self.denoiser.depth} "
                             f"(sides must divide by {self.denoiser_divisor})")

    @property
    def denoiser_divisor(self) -> int:
        return 2 ** ((self.denoiser.depth - 1) // 2)

    def denoiser_for(self, seed: int) -> DenoiserConfig:
        """The denoiser config with the chapter's seed as ``split_seed``."""
        return replace(self.denoiser, split_seed=argcheck.integer(seed, "seed", 0))

    def trial_key(self) -> dict[str, Any]:
        """The parts of the config that change what a trial computes (not the analysis knobs)."""
        return {"data": self.data, "denoiser": self.denoiser, "feature_patch_size": self.feature_patch_size,
                "n_feature_images": self.n_feature_images, "curve_feature_images": self.curve_feature_images,
                "curve_slices": self.curve_slices,
                "snapshot_every_epochs": self.snapshot_every_epochs, "weight_probe": self.weight_probe}


# A lower flux than the data chapter (a tenth of the default I0 at 64 px): a tiny U-Net trained for
# seconds then has noise to remove (input RMSE ~26 HU) and ends ~1 dB better than its input (quick:
# 320 steps of batch 4; measured gains 0.8-1.2 dB over three seeds, where 128 steps of batch 8 gave -1.9-0.8).
_SMALL_I0 = 0.1 * ct_physics.default_i0(64)


_QUICK_RECIPE = dict(depth=7, width=0.125, residual=True, lr=1e-3, batch_size=8)


PROFILES: dict[str, RandomnessConfig] = {
    "smoke": RandomnessConfig(
        data=lowdose_ct.CTDataConfig(n=32, n_patients=3, slices_per_patient=2, i0=0.1 * ct_physics.default_i0(32)),
        denoiser=DenoiserConfig(**_QUICK_RECIPE, patch_size=16, n_patches=32, epochs=2),
        n_pairs=2, feature_patch_size=16, n_feature_images=24, chance_draws=3, cka_test_draws=99, bootstrap=50),
    "quick": RandomnessConfig(
        data=lowdose_ct.CTDataConfig(n=64, n_patients=12, slices_per_patient=8, i0=_SMALL_I0),
        denoiser=DenoiserConfig(**(_QUICK_RECIPE | {"batch_size": 4}), patch_size=32, n_patches=128, epochs=6),
        n_pairs=3, feature_patch_size=32, n_feature_images=256, curve_feature_images=128, curve_slices=4,
        snapshot_every_epochs=2,
        chance_draws=20, bootstrap=2000),
    "paper": RandomnessConfig(
        data=DATA_PROFILES["paper"],
        denoiser=DenoiserConfig(depth=7, width=1.0, residual=False, lr=0.01, batch_size=8, patch_size=64,
                                n_patches=8192, epochs=30),
        n_pairs=5, feature_patch_size=64, n_feature_images=2604, curve_feature_images=256, curve_slices=4,
        snapshot_every_epochs=5,
        weight_probe=1 << 18, torch_threads=None, chance_draws=100, cka_test_draws=999, bootstrap=10000),
}
"""One configuration per profile (``quick``: 3 pairs of every CPU condition, 6 epochs each)."""


def conditions_for(config: RandomnessConfig, device: torch.device | str) -> tuple[str, ...]:
    """The conditions that make sense on ``device``: ``threads`` on a CPU, ``gpu_nondeterministic`` on CUDA."""
    cuda = torch.device(device).type == "cuda"
    return tuple(c for c in config.conditions if not ((cuda and c in CPU_ONLY) or (not cuda and c in CUDA_ONLY)))


def _resolved_threads(config: RandomnessConfig) -> int:
    return config.torch_threads if config.torch_threads is not None else repro.ensure_pinned_threads()
