"""Where does the trial-to-trial difference come from? One U-Net denoiser, one source of randomness at a time.

Qu et al. find that fixing the seed -- in their words, initialising both trials "with the same set of
weights" -- does not make two trials' learned features more alike, and call it surprising. Same initial
weights leave the data order free, and on a GPU the kernels too. This module trains *pairs* of trials that
differ in exactly one source of randomness and measures how far apart they end up.

**Conditions** (:data:`CONDITIONS`): trial B of a pair differs from trial A only in

- ``identical`` -- nothing (the control; same seeds, trained a second time);
- ``ulp`` -- one initial convolution weight moved by one float32 ulp (:class:`UlpPerturbation`,
  ``torch.nextafter``), once, before training: the smallest possible difference of a starting point;
- ``kernel_noise`` -- every gradient element rounded one ulp up or down (or left) at random at *every* step
  (:class:`KernelNoise`): a CPU emulation of a non-deterministic kernel, which perturbs many sums by
  about a rounding error at every step;
- ``threads`` -- the number of CPU threads torch uses (a real, CPU-side source of non-determinism:
  the summation order of the kernels changes);
- ``data_order`` -- the data-order seed, same initial weights: **Qu's fixed seeding**;
- ``init`` -- the weight-initialisation seed, same data order;
- ``init_and_order`` -- both: **Qu's random seeding**;
- ``noise`` -- an extra condition, not one of Qu's (their trials shared one data set): the photon-noise
  draw of the simulated scans (same anatomy, same patch positions -- decided on the noise-free phantom;
  :func:`glassbox.training.unet_denoiser.resimulated_pairs`). The low-dose input is a binomial thinning of the
  full-dose scan, so a new draw renews the noise of input *and* target, as a new scan would;
- ``gpu_nondeterministic`` -- CUDA only: both trials with the same seeds, non-deterministic kernels
  allowed; on a CPU it is skipped and ``kernel_noise`` and ``threads`` stand in for it. ``threads`` is
  skipped on CUDA.

Pair ``k`` has its own base seeds, so pairs are independent replications; within a pair, trial A is
the same for every condition (trained once, through the store).

**Measurements.** Every trial is evaluated on the same test images of the chapter's data set:
PSNR to the full-dose target (:func:`glassbox.training.unet_denoiser.evaluate_denoiser`), its denoised test
slices, and the spatial mean of every channel of each named block (``Down*``, ``Bottleneck``,
``Up*``) on ``n_feature_images`` test crops -- the Qu chapters' convention (N x C per layer,
``unet_denoiser.layer_features``). A pair is compared by bit-identity of every parameter and buffer, the
relative weight distance, the RMS difference and PSNR between the two trials' outputs, and per layer by
debiased linear CKA and Hungarian-matched cosine, each with a permutation chance level (rows of B re-paired
at random). Along training, a forward pre-hook (installed through ``train_denoiser``'s ``init_perturbation``
hook, see :class:`TrainingProbe`) keeps the weights at steps 0, 1, 2, 4, ... and at epoch ends, and the same
measurements are repeated at each.

The chapter's surface: :data:`PROFILES`, :func:`run` -> :class:`RandomnessResult`, :func:`plan`, the tables
(:func:`condition_view`) and figures, :func:`checks`, :func:`claims`, :func:`numbers`, :func:`glue_values`.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from glassbox.core import checks as argcheck
from glassbox.core import dryrun, repro
from glassbox.core.tasks import Task
from glassbox.data import ct_physics, lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES
from glassbox.measure import chance as chance_mod
from glassbox.measure import similarity as sim
from glassbox.measure.claims import (
    Check,
    Claim,
    Deviation,
    apply_checks,
    count_rule,
    equivalence_rule,
    interval_rule,
    p_value_rule,
    quality_check,
    require,
)
from glassbox.measure.stats import interval, spearman_bootstrap
from glassbox.models.unet import UNet
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.loop import TrialSeeds, trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig

SIMULATED_ONLY = ("its 'noise' condition redraws the photon noise of the same patients, which a real DICOM tree cannot do")
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""

__all__ = [
    "CONDITIONS", "CPU_ONLY", "CUDA_ONLY", "SOURCE_FIELDS", "SEED_LEVEL", "ROUNDING_LEVEL", "UlpPerturbation",
    "KernelNoise", "pick_ulp_weight", "TrainingProbe", "snapshot_steps", "TrialSpec", "trial_pair", "RandomnessConfig",
    "PROFILES", "conditions_for", "EvaluationSet", "evaluation_set", "differing_fields", "run_trial", "Experiment",
    "design", "trial_key", "run_experiment", "plan", "relative_distance", "pair_frame", "layer_frame", "curve_frame",
    "condition_table", "chance_tests", "interval", "spearman_bootstrap", "correlations", "ulp_growth", "plot_curves", "plot_layers",
    "plot_correlation", "RandomnessResult", "run", "design_table", "ulp_example", "condition_view", "gpu_table",
    "checks", "claims", "numbers", "glue_values", "drift_table",
]


CONDITIONS: dict[str, str] = {
    "identical": "nothing: same seeds, trained a second time (the control)",
    "ulp": "one initial weight moved by one float32 ulp",
    "kernel_noise": "every gradient rounded ±1 ulp at random at every step (emulated non-deterministic kernel)",
    "threads": "the number of CPU threads torch uses",
    "data_order": "the data-order seed (same initial weights: Qu's fixed seeding)",
    "init": "the weight-initialisation seed",
    "init_and_order": "initialisation and data order (Qu's random seeding)",
    "noise": "the photon-noise draw of the scans (an extra condition, not Qu's)",
    "gpu_nondeterministic": "nothing but the GPU kernels (non-deterministic algorithms allowed)",
}
"""Each condition and what trial B changes with respect to trial A."""


CPU_ONLY: tuple[str, ...] = ("threads",)


CUDA_ONLY: tuple[str, ...] = ("gpu_nondeterministic",)


SEED_LEVEL: tuple[str, ...] = ("data_order", "init", "init_and_order", "noise")
"""Conditions that change a seed, as opposed to a rounding-size change."""

ROUNDING_LEVEL: tuple[str, ...] = ("ulp", "kernel_noise", "threads", "gpu_nondeterministic")
"""Conditions that change only rounding: one ulp once, one ulp per step, summation order, GPU kernels."""


SOURCE_FIELDS: dict[str, frozenset[str]] = {
    "identical": frozenset({"replicate"}),
    "ulp": frozenset({"perturbation"}),
    "threads": frozenset({"threads"}),
    "data_order": frozenset({"data_seed"}),
    "init": frozenset({"init_seed"}),
    "noise": frozenset({"noise_seed"}),
    "init_and_order": frozenset({"init_seed", "data_seed"}),
    "kernel_noise": frozenset({"kernel_noise"}),
    "gpu_nondeterministic": frozenset({"replicate"}),
}
"""The :class:`TrialSpec` fields in which trial B of each condition differs from its trial A."""


@dataclass(frozen=True)
class UlpPerturbation:
    """Move element ``index`` (flat) of parameter ``parameter`` by ``ulps`` units in the last place.

    Each unit is one :func:`torch.nextafter` step towards +inf (``ulps > 0``) or -inf (``ulps < 0``) in
    the parameter's own dtype; nothing else changes (buffers included).
    """

    parameter: str
    index: int
    ulps: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.parameter, str) or not self.parameter:
            raise ValueError(f"parameter must be a parameter name such as 'Down1.0.weight', got {self.parameter!r}")
        argcheck.integer(self.index, "index", 0)
        if isinstance(self.ulps, bool) or not isinstance(self.ulps, int) or self.ulps == 0:
            raise ValueError(f"ulps must be a non-zero integer, got {self.ulps!r}")

    def apply(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        if self.parameter not in params:
            raise ValueError(f"the model has no parameter {self.parameter!r}; valid names are {sorted(params)}")
        p = params[self.parameter]
        if not p.is_floating_point():
            raise ValueError(f"parameter {self.parameter!r} is {p.dtype}, not floating point")
        if self.index >= p.numel():
            raise ValueError(f"index {self.index} is out of range for {self.parameter!r} with {p.numel()} elements")
        with torch.no_grad():
            flat = p.view(-1)
            value = flat[self.index].clone()
            target = torch.full_like(value, math.inf if self.ulps > 0 else -math.inf)
            for _ in range(abs(self.ulps)):
                value = torch.nextafter(value, target)
            flat[self.index] = value


@dataclass(frozen=True)
class KernelNoise:
    """Round every gradient element one ulp up, one ulp down, or not at all (each with probability 1/3) at every
    backward pass, from a generator seeded by ``(seed, parameter, step)``.

    A non-deterministic GPU kernel (atomic adds in a different order) changes many sums by about one rounding
    error at every step; this does the same on a CPU, reproducibly. Attach it with :meth:`attach`; the
    hooks live until the handles it returns are removed.
    """

    seed: int

    def __post_init__(self) -> None:
        argcheck.integer(self.seed, "seed", 0)

    def attach(self, model: nn.Module) -> list[Any]:
        handles, counts = [], {}
        for index, (_, parameter) in enumerate(model.named_parameters()):
            counts[index] = 0

            def hook(grad: torch.Tensor, index: int = index) -> torch.Tensor:
                step = counts[index]
                counts[index] = step + 1
                state = np.random.SeedSequence([self.seed, index, step]).generate_state(1, dtype=np.uint64)[0]
                generator = torch.Generator().manual_seed(int(state >> np.uint64(1)))
                choice = torch.randint(0, 3, grad.shape, generator=generator).to(grad.device)
                up = torch.nextafter(grad, torch.full_like(grad, math.inf))
                down = torch.nextafter(grad, torch.full_like(grad, -math.inf))
                return torch.where(choice == 2, up, torch.where(choice == 0, down, grad))

            handles.append(parameter.register_hook(hook))
        return handles


def pick_ulp_weight(config: DenoiserConfig, seed: int) -> UlpPerturbation:
    """A +1 ulp perturbation of one convolution weight drawn uniformly over all conv-weight elements.

    Only weights of >= 2 dimensions qualify (BatchNorm biases start at 0, where one ulp is a denormal
    1e-45, not the relative change a rounding difference makes). Shapes come from a model on the
    ``meta`` device, so no random number is drawn.
    """
    rng = np.random.default_rng(argcheck.integer(seed, "seed", 0))
    with torch.device("meta"):
        model = UNet(config.depth, config.width, residual=config.residual)
    candidates = [(name, p.numel()) for name, p in model.named_parameters() if p.ndim >= 2]
    sizes = np.array([n for _, n in candidates], dtype=np.int64)
    flat = int(rng.integers(0, sizes.sum()))
    which = int(np.searchsorted(np.cumsum(sizes), flat, side="right"))
    offset = flat - int(np.concatenate([[0], np.cumsum(sizes)])[which])
    return UlpPerturbation(candidates[which][0], offset, 1)


def snapshot_steps(steps_per_epoch: int, epochs: int, every_epochs: int = 1) -> tuple[int, ...]:
    """Optimizer steps at which weights are kept: 0, the powers of two, and every ``every_epochs``-th epoch end.

    The last step (end of training) is always included.
    """
    spe = argcheck.integer(steps_per_epoch, "steps_per_epoch", 1)
    epochs = argcheck.integer(epochs, "epochs", 1)
    every = argcheck.integer(every_epochs, "every_epochs", 1)
    total = spe * epochs
    steps = {0, total} | {2**k for k in range(total.bit_length()) if 2**k <= total}
    steps |= {e * spe for e in range(1, epochs + 1) if e % every == 0}
    return tuple(sorted(steps))


@dataclass(frozen=True)
class TrainingProbe:
    """The ``init_perturbation`` handed to :func:`glassbox.training.unet_denoiser.train_denoiser`: it applies the
    trial's :class:`UlpPerturbation` (if any) and installs a forward pre-hook that copies the weights
    (``state_dict``, on the CPU) before the training forward of every step in ``steps``.

    A training forward (the model in train mode) happens once per optimizer step, so the copy taken at
    forward ``s`` holds the weights after ``s`` updates; validation runs in eval mode and is not counted.
    Only the fields are part of the run's identity; the copies live in :attr:`snapshots`.
    """

    perturbation: UlpPerturbation | None
    steps: tuple[int, ...]
    kernel_noise: KernelNoise | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "snapshots", {})
        object.__setattr__(self, "_count", 0)
        object.__setattr__(self, "_handle", None)
        object.__setattr__(self, "_noise_handles", [])

    def apply(self, model: nn.Module) -> None:
        if self.perturbation is not None:
            self.perturbation.apply(model)
        if self.kernel_noise is not None:
            object.__setattr__(self, "_noise_handles", self.kernel_noise.attach(model))
        wanted = set(self.steps)

        def hook(module: nn.Module, _inputs: Any) -> None:
            if not module.training:
                return
            step = self._count
            if step in wanted:
                self.snapshots[step] = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            object.__setattr__(self, "_count", step + 1)

        object.__setattr__(self, "_handle", model.register_forward_pre_hook(hook))

    @property
    def steps_seen(self) -> int:
        """Training forwards (optimizer steps) seen so far."""
        return self._count

    def close(self) -> None:
        """Remove the hooks."""
        if self._handle is not None:
            self._handle.remove()
            object.__setattr__(self, "_handle", None)
        for handle in self._noise_handles:
            handle.remove()
        object.__setattr__(self, "_noise_handles", [])


@dataclass(frozen=True)
class TrialSpec:
    """Everything random about one trial.

    ``noise_seed`` None trains on the chapter's data set as simulated; an integer trains on
    :func:`glassbox.training.unet_denoiser.resimulated_pairs` with that noise seed. ``kernel_noise`` is the seed of a
    :class:`KernelNoise` (None: none). ``replicate`` only tells apart trials that are otherwise the same, so
    that they are *trained* separately (never loaded as each other).
    """

    init_seed: int
    data_seed: int
    noise_seed: int | None = None
    perturbation: UlpPerturbation | None = None
    kernel_noise: int | None = None
    threads: int = 1
    deterministic: bool = True
    replicate: int = 0

    def __post_init__(self) -> None:
        argcheck.integer(self.init_seed, "init_seed", 0)
        argcheck.integer(self.data_seed, "data_seed", 0)
        if self.noise_seed is not None:
            argcheck.integer(self.noise_seed, "noise_seed", 0)
        if self.kernel_noise is not None:
            argcheck.integer(self.kernel_noise, "kernel_noise", 0)
        argcheck.integer(self.threads, "threads", 1)
        argcheck.integer(self.replicate, "replicate", 0)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic must be True or False, got {self.deterministic!r}")

    def trial_seeds(self) -> TrialSeeds:
        return TrialSeeds(self.init_seed, self.data_seed, self.noise_seed if self.noise_seed is not None else 0)

    def ident(self) -> str:
        """A stable text naming this trial (used as its key in an :class:`Experiment`)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def differing_fields(a: TrialSpec, b: TrialSpec) -> frozenset[str]:
    """Names of the :class:`TrialSpec` fields in which ``a`` and ``b`` differ."""
    return frozenset(f.name for f in dataclasses.fields(TrialSpec) if getattr(a, f.name) != getattr(b, f.name))


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


def trial_pair(condition: str, pair: int, seed: int, config: RandomnessConfig) -> tuple[TrialSpec, TrialSpec]:
    """Trial A and trial B of pair ``pair`` of ``condition``; B differs from A only in :data:`SOURCE_FIELDS`.

    Pair ``k`` takes its base seeds from ``trial_seeds("random", 2k, seed)`` and the seeds that B changes
    from ``trial_seeds("random", 2k + 1, seed)``.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {tuple(CONDITIONS)}")
    pair = argcheck.integer(pair, "pair", 0)
    base, other = trial_seeds("random", 2 * pair, seed), trial_seeds("random", 2 * pair + 1, seed)
    threads = _resolved_threads(config)
    a = TrialSpec(base.init_seed, base.data_seed, threads=threads)
    if condition == "identical":
        return a, replace(a, replicate=1)
    if condition == "ulp":
        return a, replace(a, perturbation=pick_ulp_weight(config.denoiser, other.init_seed))
    if condition == "threads":
        if config.alt_threads == threads:
            raise ValueError(f"the threads condition needs alt_threads ({config.alt_threads}) to differ from the "
                             f"trials' thread count ({threads})")
        return a, replace(a, threads=config.alt_threads)
    if condition == "data_order":
        return a, replace(a, data_seed=other.data_seed)
    if condition == "init":
        return a, replace(a, init_seed=other.init_seed)
    if condition == "noise":
        return a, replace(a, noise_seed=other.noise_seed)
    if condition == "init_and_order":
        return a, replace(a, init_seed=other.init_seed, data_seed=other.data_seed)
    if condition == "kernel_noise":
        return a, replace(a, kernel_noise=other.noise_seed)
    nondet = replace(a, deterministic=False, replicate=2)  # gpu_nondeterministic: two non-deterministic runs
    return nondet, replace(nondet, replicate=3)


@dataclass(frozen=True)
class EvaluationSet:
    """The test images every trial is judged on (all from the chapter's data set, never resimulated)."""

    test_ids: list[str]
    low: np.ndarray = field(repr=False)       # (S, n, n) HU test slices, low dose
    full: np.ndarray = field(repr=False)      # (S, n, n) HU full-dose targets
    crops: torch.Tensor = field(repr=False)   # (N, 1, p, p) normalised low-dose test crops for the features
    curve_slices: int = 0                     # outputs along training: the first curve_slices test slices
    curve_crops: int = 0                      # features along training: the first curve_crops crops


def evaluation_set(config: RandomnessConfig, pairs: unet_denoiser.Pairs, seed: int) -> EvaluationSet:
    """Test slices of the chapter's split and ``n_feature_images`` seeded crops of them."""
    data = unet_denoiser.prepare_data(config.denoiser_for(seed), pairs)
    ids = data.split["test"]
    if not ids:
        raise ValueError("the split has no test patients; add patients or change split_fractions")
    low = np.concatenate([np.asarray(pairs[i][0], dtype=np.float32) for i in ids])
    full = np.concatenate([np.asarray(pairs[i][1], dtype=np.float32) for i in ids])
    rng = np.random.default_rng(np.random.SeedSequence([argcheck.integer(seed, "seed", 0), 0x5EED5]))
    crops, _ = lowdose_ct.random_patches(low, full, config.feature_patch_size, config.n_feature_images, rng,
                                     min_foreground=0.25)
    curve = low.shape[0] if config.curve_slices is None else min(config.curve_slices, low.shape[0])
    curve_crops = config.n_feature_images if config.curve_feature_images is None else config.curve_feature_images
    return EvaluationSet(list(ids), low, full, torch.from_numpy(lowdose_ct.normalize(crops)[:, None].astype(np.float32)),
                         curve, curve_crops)


def _weight_indices(n_params: int, probe: int) -> np.ndarray | None:
    """None (keep all) or the fixed random subset of parameter positions kept per snapshot."""
    if n_params <= probe:
        return None
    return np.sort(np.random.default_rng(0).choice(n_params, probe, replace=False))


def _flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in model.parameters()])


def _measure(model: UNet, evaluation: EvaluationSet, device: torch.device, indices: np.ndarray | None
             ) -> dict[str, Any]:
    """Weights, channel means on the curve crops, and outputs on the curve slices (one snapshot)."""
    weights = _flat_parameters(model).numpy()
    return {"weights": weights if indices is None else weights[indices],
            "features": unet_denoiser.layer_features(model, evaluation.crops[:evaluation.curve_crops], device=device,
                                                         batch_size=64),
            "outputs": unet_denoiser.denoise(model, evaluation.low[:evaluation.curve_slices])}


def run_trial(config: RandomnessConfig, spec: TrialSpec, *, seed: int, pairs: unet_denoiser.Pairs,
              evaluation: EvaluationSet, device: torch.device | str = "cpu", progress: bool = True,
              desc: str = "trial", foreground: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Train one trial (:func:`glassbox.training.unet_denoiser.train_denoiser`) and measure it along the way.

    ``foreground`` decides the training patches' positions (default: the noise-free phantoms of
    ``config.data``, so a ``noise`` trial trains on the same positions as its trial A). Returns plain data: the
    spec, history, snapshot steps with the weights / features / curve outputs at each, the final test scores
    and test outputs, and the final ``state_dict``.
    """
    device = torch.device(device)
    if not spec.deterministic and device.type != "cuda":
        raise ValueError("a non-deterministic trial (deterministic=False) only makes sense on CUDA; on a CPU the "
                         "kernels are deterministic and the 'kernel_noise' and 'threads' conditions stand in for it")
    den = config.denoiser_for(seed)
    train_pairs = pairs if spec.noise_seed is None else unet_denoiser.resimulated_pairs(config.data, seed, spec.noise_seed)
    foreground = lowdose_ct.noise_free_volumes(config.data, seed) if foreground is None else foreground
    data = unet_denoiser.prepare_data(den, train_pairs, foreground=foreground)
    steps_per_epoch = -(-data.n_train // den.batch_size)
    probe = TrainingProbe(spec.perturbation, snapshot_steps(steps_per_epoch, den.epochs, config.snapshot_every_epochs),
                          None if spec.kernel_noise is None else KernelNoise(spec.kernel_noise))
    try:
        with repro.threads(spec.threads):
            model, history = unet_denoiser.train_denoiser(den, train_pairs, spec.trial_seeds(), device=device,
                                                          init_perturbation=probe, data=data, progress=progress,
                                                          desc=desc, deterministic=spec.deterministic)
    finally:
        probe.close()
    total = steps_per_epoch * den.epochs
    if dryrun.active():  # a dry run took one step: measure what it has (same shapes, no meaning)
        total = probe.steps_seen
    if probe.steps_seen != total:
        raise RuntimeError(f"the probe counted {probe.steps_seen} training steps, expected {total}")
    snapshots = {step: value for step, value in probe.snapshots.items() if step < total}
    snapshots[total] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    steps = sorted(snapshots)
    indices = _weight_indices(sum(p.numel() for p in model.parameters()), config.weight_probe)
    probe_model = UNet(den.depth, den.width, residual=den.residual)
    measured = []
    with repro.threads(_resolved_threads(config)):  # every trial is measured alike, whatever it was trained with
        for step in steps:
            probe_model.load_state_dict(snapshots[step])
            measured.append(_measure(probe_model.to(device), evaluation, device, indices))
        model.eval()
        scores = unet_denoiser.evaluate_denoiser(model, pairs, evaluation.test_ids)
        test_outputs = unet_denoiser.denoise(model, evaluation.low)
        final_features = unet_denoiser.layer_features(model, evaluation.crops, device=device, batch_size=64)
    return {
        "spec": dataclasses.asdict(spec),
        "history": history.epochs,
        "steps": steps,
        "steps_per_epoch": steps_per_epoch,
        "weights": np.stack([m["weights"] for m in measured]),
        "features": {name: np.stack([m["features"][name] for m in measured]) for name in measured[0]["features"]},
        "curve_outputs": np.stack([m["outputs"] for m in measured]),
        "test_scores": scores,
        "test_outputs": test_outputs,
        "final_features": final_features,
        "state_dict": snapshots[total],
        "patch_positions": data.patch_positions,
        "torch_threads": spec.threads,
        "weights_subset": indices is not None,
    }


@dataclass
class Experiment:
    """All trials of a run, keyed by :meth:`TrialSpec.ident`, and the (condition, pair) -> (A, B) table."""

    config: RandomnessConfig
    seed: int
    device: str
    conditions: tuple[str, ...]
    evaluation: EvaluationSet
    trials: dict[str, dict[str, Any]]
    pairs: dict[tuple[str, int], tuple[str, str]]

    def trial(self, condition: str, pair: int, which: str) -> dict[str, Any]:
        a, b = self.pairs[(condition, pair)]
        return self.trials[a if which == "A" else b]


TRIAL_ENTRY = "randomness-trial"
"""The store entry of one trained and measured trial."""


def design(config: RandomnessConfig, seed: int, device: torch.device | str
           ) -> tuple[tuple[str, ...], dict[str, TrialSpec], dict[tuple[str, int], tuple[str, str]]]:
    """The conditions that run on ``device``, every distinct trial (by :meth:`TrialSpec.ident`) and the
    (condition, pair) -> (A, B) table."""
    conditions = conditions_for(config, device)
    if not conditions:
        raise ValueError(f"none of the conditions {config.conditions} runs on {torch.device(device).type}")
    table: dict[tuple[str, int], tuple[str, str]] = {}
    specs: dict[str, TrialSpec] = {}
    for condition in conditions:
        for k in range(config.n_pairs):
            a, b = trial_pair(condition, k, seed, config)
            specs[a.ident()], specs[b.ident()] = a, b
            table[(condition, k)] = (a.ident(), b.ident())
    return conditions, specs, table


def trial_key(config: RandomnessConfig, spec: TrialSpec, seed: int, device: torch.device | str) -> dict[str, Any]:
    """The store key (config part) of one trial: what it is a function of (the data by their recipe)."""
    return config.trial_key() | {"seed": seed, "device": torch.device(device).type,
                                 "pairs": unet_denoiser.data_identity(config.data, seed), "spec": spec}


def run_experiment(config: RandomnessConfig, seed: int = 0, *, device: torch.device | str = "cpu",
                   pairs: unet_denoiser.Pairs | None = None, progress: bool = True, use_store: bool = True) -> Experiment:
    """Train every trial of every (condition, pair) -- each once, through the store -- and return them.

    ``pairs`` must be the data set of ``(config.data, seed)`` (the store names trials by that recipe).
    """
    from glassbox.core.store import get_or_compute

    device = torch.device(device)
    seed = argcheck.integer(seed, "seed", 0)
    if pairs is None:
        pairs = (lowdose_ct.build_dataset(config.data, seed, progress=progress) if use_store else
                 lowdose_ct.simulate_patients(config.data.n, config.data.n_patients, config.data.slices_per_patient,
                                              config.data.dose, seed, n_angles=config.data.n_angles, i0=config.data.i0,
                                              sigma_e=config.data.sigma_e, contrast=config.data.contrast))
    evaluation = evaluation_set(config, pairs, seed)
    foreground = lowdose_ct.noise_free_volumes(config.data, seed)
    conditions, specs, table = design(config, seed, device)
    trials = {}
    for number, (ident, spec) in enumerate(specs.items(), start=1):
        desc = f"trial {number}/{len(specs)}"

        def compute(spec: TrialSpec = spec, desc: str = desc) -> dict[str, Any]:
            return run_trial(config, spec, seed=seed, pairs=pairs, evaluation=evaluation, device=device,
                             progress=progress, desc=desc, foreground=foreground)

        trials[ident] = (get_or_compute(TRIAL_ENTRY, trial_key(config, spec, seed, device), compute, seed=seed,
                                        device=device, progress=False) if use_store else compute())
    return Experiment(config, seed, device.type, conditions, evaluation, trials, table)


def plan(config: RandomnessConfig, *, seed: int, device: torch.device | str, data_dir: str | None = None
         ) -> list[Task]:
    """The data set, every redrawn noise data set and every trial, as tasks (see :func:`run_experiment`)."""
    if data_dir is not None:
        raise ValueError(f"the randomness chapter runs on simulated data only: {SIMULATED_ONLY}")
    data = Task(*lowdose_ct.dataset_entry(config.data, seed),
                lambda: lowdose_ct.build_dataset(config.data, seed, progress=False), label=f"simulated data (seed {seed})")
    tasks, noise_tasks = [data], {}
    _, specs, _ = design(config, seed, device)
    for spec in specs.values():
        if spec.noise_seed is not None and spec.noise_seed not in noise_tasks:
            noise_tasks[spec.noise_seed] = Task(
                unet_denoiser.NOISE_ENTRY, unet_denoiser.noise_key(config.data, seed, spec.noise_seed),
                lambda n=spec.noise_seed: unet_denoiser.resimulated_pairs(config.data, seed, n),
                label=f"noise draw {spec.noise_seed}")
    tasks += list(noise_tasks.values())

    def one(spec: TrialSpec) -> dict[str, Any]:
        from glassbox.core.store import get_or_compute

        pairs = lowdose_ct.build_dataset(config.data, seed, progress=False)
        evaluation = evaluation_set(config, pairs, seed)
        return get_or_compute(TRIAL_ENTRY, trial_key(config, spec, seed, device),
                              lambda: run_trial(config, spec, seed=seed, pairs=pairs, evaluation=evaluation,
                                                device=device, progress=False),
                              seed=seed, device=device, progress=False)

    for ident, spec in specs.items():
        deps = (data.key,) + ((noise_tasks[spec.noise_seed].key,) if spec.noise_seed is not None else ())
        tasks.append(Task(TRIAL_ENTRY, trial_key(config, spec, seed, device), lambda spec=spec: one(spec),
                          label=f"trial {ident}", deps=deps, gpu=True))
    return tasks


def relative_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / ||a|| in float64 (0 exactly when the arrays are equal)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norm = float(np.linalg.norm(a64))
    if norm == 0:
        raise ValueError("relative_distance: the reference array is all zeros")
    return float(np.linalg.norm(a64 - b64)) / norm


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def _psnr_from_rms(rms: float) -> float:
    return math.inf if rms == 0 else 20.0 * math.log10(unet_denoiser.PSNR_RANGE_HU / rms)


def _safe(metric: Callable[[], Any]) -> float:
    try:
        return float(metric())
    except sim.SimilarityInputError:
        return math.nan


def _one_blas_thread(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with one BLAS thread: its matrices are small (N x C with N in the hundreds), where extra
    threads only cost (on a busy 2-core machine, 30x slower with two OpenBLAS threads, measured)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


@_one_blas_thread
def pair_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per (condition, pair): final weight distance, output agreement, PSNRs and mean similarities."""
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        a, b = experiment.trials[ia], experiment.trials[ib]
        psnr_a, psnr_b = a["test_scores"]["psnr"], b["test_scores"]["psnr"]
        rms = _rms(a["test_outputs"], b["test_outputs"])
        fa, fb = a["final_features"], b["final_features"]
        cka = [_safe(lambda n=n: sim.linear_cka(fa[n], fb[n], debiased=True)) for n in fa]
        cos = [_safe(lambda n=n: sim.matched_cosine(fa[n], fb[n])) for n in fa]
        rows.append({"condition": condition, "pair": k,
                     "weights_identical": unet_denoiser.states_identical(a["state_dict"], b["state_dict"]),
                     "weight_distance": relative_distance(a["weights"][-1], b["weights"][-1]),
                     "psnr_a": psnr_a, "psnr_b": psnr_b, "psnr_mean": (psnr_a + psnr_b) / 2,
                     "psnr_diff": abs(psnr_a - psnr_b), "input_psnr": a["test_scores"]["input_psnr"],
                     "output_rms_diff_hu": rms, "output_psnr_between": _psnr_from_rms(rms),
                     "cka": float(np.nanmean(cka)), "feature_dissimilarity": 1.0 - float(np.nanmean(cka)),
                     "matched_cosine": float(np.nanmean(cos))})
    return pd.DataFrame(rows)


@_one_blas_thread
def layer_frame(experiment: Experiment, *, chance_draws: int | None = None) -> pd.DataFrame:
    """One row per (condition, pair, layer): debiased CKA and matched cosine of the final features, each
    with its permutation chance level (mean and SD over ``chance_draws`` re-pairings of samples)."""
    draws = experiment.config.chance_draws if chance_draws is None else argcheck.integer(chance_draws, "chance_draws", 2)
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        a, b = experiment.trials[ia], experiment.trials[ib]
        for depth, name in enumerate(a["final_features"]):
            x, y = a["final_features"][name], b["final_features"][name]
            row: dict[str, Any] = {"condition": condition, "pair": k, "layer": name, "layer_index": depth,
                                   "channels": x.shape[1]}
            for metric, fn in (("cka", lambda u, v: sim.linear_cka(u, v, debiased=True)),
                               ("matched_cosine", sim.matched_cosine)):
                row[metric] = _safe(lambda: fn(x, y))
                try:
                    rng = np.random.default_rng([experiment.seed, k, depth])
                    null = chance_mod.permutation_chance(fn, x, y, n_draws=draws, seed=rng)
                    row[f"{metric}_chance"], row[f"{metric}_chance_sd"] = null.mean, null.std
                except sim.SimilarityInputError:
                    row[f"{metric}_chance"] = row[f"{metric}_chance_sd"] = math.nan
            rows.append(row)
    return pd.DataFrame(rows)


@_one_blas_thread
def chance_tests(experiment: Experiment, conditions: Sequence[str] = SEED_LEVEL, *,
                 n_draws: int | None = None) -> pd.DataFrame:
    """One row per (condition, pair, layer) of ``conditions``: debiased CKA of the final features, its
    permutation chance and one-sided p-value from ``n_draws`` (default ``config.cka_test_draws``) re-pairings."""
    draws = experiment.config.cka_test_draws if n_draws is None else argcheck.integer(n_draws, "n_draws", 2)
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        if condition not in conditions:
            continue
        a, b = experiment.trials[ia], experiment.trials[ib]
        for depth, name in enumerate(a["final_features"]):
            rng = np.random.default_rng([experiment.seed, k, depth, 0xC4A])
            try:
                value, null, p = chance_mod.linear_cka_permutation_test(
                    a["final_features"][name], b["final_features"][name], n_draws=draws, debiased=True, seed=rng)
                chance = null.mean
            except sim.SimilarityInputError:
                value = chance = p = math.nan
            rows.append({"condition": condition, "pair": k, "layer": name, "cka": value, "chance": chance,
                         "p_value": p})
    return pd.DataFrame(rows)


@_one_blas_thread
def curve_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per (condition, pair, snapshot step): weight distance, output agreement and debiased CKA
    (mean over layers and the lowest layer) between the two trials at that step."""
    rows = []
    for (condition, k), (ia, ib) in experiment.pairs.items():
        a, b = experiment.trials[ia], experiment.trials[ib]
        if a["steps"] != b["steps"]:
            raise ValueError(f"{condition} pair {k}: the two trials kept weights at different steps")
        for s, step in enumerate(a["steps"]):
            cka = [_safe(lambda n=n: sim.linear_cka(a["features"][n][s], b["features"][n][s], debiased=True))
                   for n in a["features"]]
            rms = _rms(a["curve_outputs"][s], b["curve_outputs"][s])
            rows.append({"condition": condition, "pair": k, "step": step, "epoch": step / a["steps_per_epoch"],
                         "weight_distance": relative_distance(a["weights"][s], b["weights"][s]),
                         "output_rms_diff_hu": rms, "output_psnr_between": _psnr_from_rms(rms),
                         "cka": float(np.nanmean(cka)), "cka_lowest": float(np.nanmin(cka)),
                         "feature_dissimilarity": 1.0 - float(np.nanmean(cka))})
    return pd.DataFrame(rows)


_BOUNDS: dict[str, tuple[float, float]] = {"cka": (-1.0, 1.0), "matched_cosine": (-1.0, 1.0),
                                           "output_rms_diff_hu": (0.0, math.inf), "psnr_diff": (0.0, math.inf),
                                           "weight_distance": (0.0, math.inf)}


def condition_table(pairs: pd.DataFrame, layers: pd.DataFrame, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per condition: means over pairs with 95 % t-intervals, and the chance levels of the similarities.

    ``cka`` and ``matched_cosine`` are first averaged over layers within a pair; their chance columns are
    the mean permutation chance over pairs and layers. Interval bounds are clipped to each metric's range.
    """
    order = list(order) if order is not None else list(dict.fromkeys(pairs["condition"]))
    per_pair = layers.groupby(["condition", "pair"])[["cka", "matched_cosine", "cka_chance", "matched_cosine_chance",
                                                      "cka_chance_sd"]].mean()
    rows = []
    for condition in order:
        p = pairs[pairs["condition"] == condition]
        lp = per_pair.loc[condition]
        row: dict[str, Any] = {"condition": condition, "what differs": CONDITIONS[condition], "pairs": len(p),
                               "identical pairs": int(p["weights_identical"].sum())}
        for column, values in (("cka", lp["cka"]), ("matched_cosine", lp["matched_cosine"]),
                               ("output_rms_diff_hu", p["output_rms_diff_hu"]), ("psnr_diff", p["psnr_diff"]),
                               ("weight_distance", p["weight_distance"])):
            mean, lo, hi = interval(values)
            low, high = _BOUNDS[column]  # a t-interval of 3 values can cross the metric's own range
            row[column], row[f"{column}_lo"], row[f"{column}_hi"] = mean, max(lo, low), min(hi, high)
        row["cka_chance"], row["cka_chance_sd"] = float(lp["cka_chance"].mean()), float(lp["cka_chance_sd"].mean())
        row["matched_cosine_chance"] = float(lp["matched_cosine_chance"].mean())
        row["psnr_mean"] = float(p["psnr_mean"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def correlations(pairs: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Spearman's rho (bootstrap interval) of feature dissimilarity (1 - mean CKA) with the PSNR difference to
    the target and with the RMS difference between the two outputs, over two sets of trial pairs: every pair
    whose weights differ, and the seed-level pairs only (:data:`SEED_LEVEL`, the differences Qu's trials had)."""
    scopes = {"all differing pairs": ~pairs["weights_identical"],
              "seed-level pairs": pairs["condition"].isin(SEED_LEVEL) & ~pairs["weights_identical"]}
    rows = []
    for scope, mask in scopes.items():
        chosen = pairs[mask]
        for target, label in (("psnr_diff", "|PSNR_A - PSNR_B| (dB)"),
                              ("output_rms_diff_hu", "RMS(out_A - out_B) (HU)")):
            try:
                r = spearman_bootstrap(chosen["feature_dissimilarity"], chosen[target], n_boot=n_boot, seed=seed)
            except ValueError:
                r = {"rho": math.nan, "p": math.nan, "lo": math.nan, "hi": math.nan, "n": len(chosen), "n_valid": 0}
            rows.append({"pairs": scope, "against": label, "target": target} | r)
    return pd.DataFrame(rows)


def ulp_growth(curve: pd.DataFrame, measure: str = "weight_distance", reference: str = "init",
               fraction: float = 0.5) -> dict[str, float]:
    """How fast the ``ulp`` difference grows towards the ``reference`` condition's (mean over pairs per step).

    Returns the ratio ulp/reference at the first kept step > 0 and at the end, and the first step at which
    the ratio reaches ``fraction`` (NaN if it never does within the run).
    """
    means = curve.groupby(["condition", "step"])[measure].mean()
    if "ulp" not in means.index.get_level_values(0) or reference not in means.index.get_level_values(0):
        raise ValueError(f"ulp_growth needs the 'ulp' and {reference!r} conditions in the curve")
    ratio = (means.loc["ulp"] / means.loc[reference]).dropna()
    ratio = ratio[ratio.index > 0]
    reached = ratio[ratio >= fraction]
    return {"first_step": float(ratio.index[0]), "ratio_first_step": float(ratio.iloc[0]),
            "ratio_end": float(ratio.iloc[-1]), "last_step": float(ratio.index[-1]),
            "step_reaching_fraction": float(reached.index[0]) if len(reached) else math.nan,
            "ulp_first_step": float(means.loc["ulp"][ratio.index[0]]),
            "ulp_end": float(means.loc["ulp"].iloc[-1]), "reference_end": float(means.loc[reference].iloc[-1])}


_PANELS = (("feature_dissimilarity", "1 - debiased CKA (mean over layers)"),
           ("weight_distance", "relative weight distance"),
           ("output_rms_diff_hu", "RMS difference of outputs (HU)"))


def _colours(conditions: Sequence[str]) -> dict[str, Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    return {c: cmap(i % 10) for i, c in enumerate(CONDITIONS) if c in conditions}


def plot_curves(curve: pd.DataFrame, axes: Sequence[Any] | None = None):
    """Three panels against the training step: feature dissimilarity, weight distance, output difference.

    Lines are the means over pairs, bands the range. Log axes: exact zeros (identical trials) are not drawn.
    """
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    fig = axes[0].figure
    conditions = list(dict.fromkeys(curve["condition"]))
    colours = _colours(conditions)
    for ax, (column, label) in zip(axes, _PANELS):
        for condition in conditions:
            part = curve[(curve["condition"] == condition) & (curve["step"] > 0)]
            g = part.groupby("step")[column]
            mean, lo, hi = g.mean(), g.min(), g.max()
            positive = mean > 0
            if not positive.any():
                continue
            ax.plot(mean.index[positive], mean[positive], marker="o", ms=3, color=colours[condition], label=condition)
            ax.fill_between(mean.index[positive], lo[positive].clip(lower=mean[positive].min() * 1e-3),
                            hi[positive], color=colours[condition], alpha=0.15)
        ax.set(xscale="log", yscale="log", xlabel="training step (optimizer updates)", ylabel=label)
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_layers(layers: pd.DataFrame, axes: Sequence[Any] | None = None):
    """Debiased CKA and matched cosine per layer and condition (mean over pairs), with the chance band."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    fig = axes[0].figure
    order = list(dict.fromkeys(layers.sort_values("layer_index")["layer"]))
    colours = _colours(list(dict.fromkeys(layers["condition"])))
    for ax, metric, label in ((axes[0], "cka", "debiased linear CKA"), (axes[1], "matched_cosine", "matched cosine")):
        for condition, part in layers.groupby("condition", sort=False):
            m = part.groupby("layer")[metric].mean().reindex(order)
            ax.plot(order, m.values, marker="o", color=colours[condition], label=condition)
        null = layers.groupby("layer")[f"{metric}_chance"].mean().reindex(order)
        sd = layers.groupby("layer")[f"{metric}_chance_sd"].mean().reindex(order)
        ax.fill_between(order, null - 2 * sd, null + 2 * sd, color="grey", alpha=0.25, label="chance ± 2 SD")
        ax.set(xlabel="layer", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_correlation(pairs: pd.DataFrame, corr: pd.DataFrame, axes: Sequence[Any] | None = None):
    """Feature dissimilarity of every differing pair against its PSNR difference (left) and its output
    difference (right); the titles give Spearman's rho over all differing pairs and over the seed-level ones."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    fig = axes[0].figure
    differing = pairs[~pairs["weights_identical"]]
    colours = _colours(list(dict.fromkeys(differing["condition"])))
    for ax, target in zip(axes, ("psnr_diff", "output_rms_diff_hu")):
        rows = corr[corr["target"] == target].set_index("pairs")
        for condition, part in differing.groupby("condition", sort=False):
            ax.scatter(part["feature_dissimilarity"], part[target], color=colours[condition], label=condition, s=25)
        title = "; ".join(f"{scope}: rho {r.rho:.2f} [{r.lo:.2f}, {r.hi:.2f}]" for scope, r in rows.iterrows())
        ax.set(xscale="log", xlabel="1 - debiased CKA (mean over layers)", ylabel=rows["against"].iloc[0])
        ax.set_title(title, fontsize=8)
        if (differing[target] > 0).all():
            ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- the chapter's surface -------------------------------------------------------------------------------------

CHAPTER = "randomness"

PAPER_VALUES: dict[str, Any] = {
    "Table I, U-Net-7: PSNR difference between the two trials (dB)": {"random seeding": 0.97, "fixed seeding": 5.12},
    "Table III, U-Net-7: average cosine similarity": {"random seeding": 0.6366, "fixed seeding": 0.6846},
    "Sec. V": "fixed seeding (the same initial weights) does not lead to a more stable feature space",
    "Discussion": "feature space inconsistency might not be coupled with performance differences (no test given)",
}
"""What Qu et al. report that this chapter speaks to (their numbers, labelled)."""

ALPHA = 0.05
"""Significance level of every test behind a verdict."""

WEAK_CORRELATION = 0.3
"""|Spearman rho| below this is a weak correlation (Cohen 1988's conventional bound), fixed before looking:
the margin of the equivalence test of "not coupled"."""


@dataclass
class RandomnessResult:
    """Everything the randomness chapter shows, computed by :func:`run`."""

    config: RandomnessConfig
    seed: int
    device: str
    experiment: Experiment = field(repr=False)
    pairs: pd.DataFrame = field(repr=False)
    layers: pd.DataFrame = field(repr=False)
    curve: pd.DataFrame = field(repr=False)
    table: pd.DataFrame = field(repr=False)
    corr: pd.DataFrame = field(repr=False)
    scores: pd.DataFrame = field(repr=False)
    tests: pd.DataFrame = field(repr=False)

    @property
    def conditions(self) -> tuple[str, ...]:
        return self.experiment.conditions


def run(config: RandomnessConfig, *, seed: int, device: torch.device | str = "cpu", data_dir: str | None = None,
        progress: bool = True) -> RandomnessResult:
    """Train (or load) every trial of every condition and compute the chapter's tables."""
    if data_dir is not None:
        raise ValueError(f"the randomness chapter runs on simulated data only: {SIMULATED_ONLY}")
    pairs = lowdose_ct.build_dataset(config.data, seed, progress=progress)
    experiment = run_experiment(config, seed, device=device, pairs=pairs, progress=progress)
    pair_df, layer_df = pair_frame(experiment), layer_frame(experiment)
    return RandomnessResult(
        config=config, seed=seed, device=torch.device(device).type, experiment=experiment, pairs=pair_df,
        layers=layer_df, curve=curve_frame(experiment),
        table=condition_table(pair_df, layer_df, order=experiment.conditions),
        corr=correlations(pair_df, n_boot=config.bootstrap, seed=seed),
        scores=pd.DataFrame([t["test_scores"] for t in experiment.trials.values()]), tests=chance_tests(experiment))


def design_table(config: RandomnessConfig, device: torch.device | str) -> pd.DataFrame:
    """Each condition, what trial B changes, and whether it runs on ``device``."""
    runs = conditions_for(config, device)
    return pd.DataFrame([{"condition": c, "trial B changes": text, "runs here": c in runs}
                         for c, text in CONDITIONS.items() if c in config.conditions])


def ulp_example(config: RandomnessConfig, seed: int) -> dict[str, Any]:
    """The 1-ulp change of pair 0: which weight, its value before and after, their bits and the relative change."""
    trial_a, trial_b = trial_pair("ulp", 0, seed, config)
    ulp = trial_b.perturbation
    model = unet_denoiser.build_model(config.denoiser_for(seed), trial_a.init_seed)
    before = model.get_parameter(ulp.parameter).detach().reshape(-1)[ulp.index].numpy().copy()
    ulp.apply(model)
    after = model.get_parameter(ulp.parameter).detach().reshape(-1)[ulp.index].numpy().copy()
    change = abs(float(after) - float(before)) / abs(float(before))
    return {"weight": f"{ulp.parameter}[{ulp.index}]", "before": f"{float(before):.9g}", "after": f"{float(after):.9g}",
            "bits before": f"{before.view(np.uint32):#034b}", "bits after": f"{after.view(np.uint32):#034b}",
            "relative change": f"{change:.2e}"}


def _with_interval(row: pd.Series, column: str, fmt: str = "{:.3f}") -> str:
    lo, hi = row[f"{column}_lo"], row[f"{column}_hi"]
    text = fmt.format(row[column])
    return text if not np.isfinite(lo) else f"{text} [{fmt.format(lo)}, {fmt.format(hi)}]"


def condition_view(result: RandomnessResult) -> pd.DataFrame:
    """The condition table as shown: means over pairs with their 95 % t-intervals, and the chance levels."""
    table = result.table
    return pd.DataFrame({
        "condition": table["condition"], "trial B changes": table["what differs"],
        "bit-identical pairs": [f"{i} of {n}" for i, n in zip(table["identical pairs"], table["pairs"])],
        "weight distance": [_with_interval(r, "weight_distance", "{:.2g}") for _, r in table.iterrows()],
        "CKA (debiased)": [_with_interval(r, "cka") for _, r in table.iterrows()],
        "CKA chance": [f"{m:.3f} ± {s:.3f}" for m, s in zip(table["cka_chance"], table["cka_chance_sd"])],
        "matched cosine": [_with_interval(r, "matched_cosine") for _, r in table.iterrows()],
        "cosine chance": table["matched_cosine_chance"].round(3),
        "output RMS diff (HU)": [_with_interval(r, "output_rms_diff_hu", "{:.2f}") for _, r in table.iterrows()],
        "|ΔPSNR| (dB)": [_with_interval(r, "psnr_diff", "{:.2f}") for _, r in table.iterrows()],
        "mean PSNR (dB)": table["psnr_mean"].round(2),
    })


def gpu_table(result: RandomnessResult) -> pd.DataFrame | None:
    """The GPU condition beside the identical control and its CPU stand-ins; None without CUDA."""
    if "gpu_nondeterministic" not in result.conditions:
        return None
    part = result.pairs[result.pairs["condition"].isin(["identical", "gpu_nondeterministic", "kernel_noise", "ulp"])]
    return part.groupby("condition")[["weights_identical", "weight_distance", "cka", "output_rms_diff_hu"]].mean()


def _paired(result: RandomnessResult, first: str, second: str, column: str = "cka") -> np.ndarray:
    p = result.pairs.set_index(["condition", "pair"])[column]
    return np.array([p[(first, k)] - p[(second, k)] for k in range(result.config.n_pairs)])


def checks(result: RandomnessResult) -> list[Check]:
    """Invariants (raise when broken) and quality checks of the run."""
    first = next(iter(result.experiment.trials.values()))
    pairs, layers = result.pairs, result.layers
    control = pairs[pairs["condition"] == "identical"]
    out = [
        require("snapshot-steps", "weights are kept at step 0 and after the first update",
                first["steps"][0] == 0 and first["steps"][1] > 0),
        require("identical-bit-identical", "trials with the same seeds on one device end bit-identical in every "
                "parameter and buffer", bool(control["weights_identical"].all()), int(control["weights_identical"].sum()),
                f"= {len(control)}"),
        require("similarity-bounded", "debiased CKA and matched cosine are at most 1",
                bool((layers["cka"].dropna() <= 1 + 1e-9).all() and (layers["matched_cosine"].dropna() <= 1 + 1e-9).all())),
    ]
    seed_level = pairs[pairs["condition"].isin(SEED_LEVEL)]
    out.append(require("seeds-change-weights", "a different seed gives different weights",
                       not bool(seed_level["weights_identical"].any())))
    if "ulp" in result.conditions:
        start = result.curve[(result.curve["condition"] == "ulp") & (result.curve["step"] == 0)]["weight_distance"]
        out.append(require("one-ulp-start", "the ulp pairs start one float32 ulp apart in one weight (relative "
                           "distance in (0, 1e-6))", bool(((start > 0) & (start < 1e-6)).all()), float(start.max()),
                           "in (0, 1e-6)"))
    if "noise" in result.conditions:
        same = all(np.array_equal(result.experiment.trial("noise", k, "A")["patch_positions"],
                                  result.experiment.trial("noise", k, "B")["patch_positions"])
                   for k in range(result.config.n_pairs))
        out.append(require("noise-same-patches", "a new noise draw trains on the same patch positions (chosen on "
                           "the noise-free phantoms)", same))
    chance = float(layers["cka_chance"].mean())
    out.append(quality_check("chance-centred", "mean permutation chance of debiased CKA over all layers and pairs "
                             "(0 in expectation)", abs(chance), below=0.02,
                             margin_note="threshold 0.02; the permutation null of debiased CKA has mean 0"))
    gains = result.scores["psnr"] - result.scores["input_psnr"]
    out.append(quality_check("trained-beyond-input", "mean test PSNR gain of the trials over the low-dose input (dB)",
                             float(gains.mean()), above=0.0,
                             margin_note=f"threshold 0 dB: the recipe makes denoisers; smallest single trial "
                                         f"{float(gains.min()):+.2f} dB"))
    return out


def claims(result: RandomnessResult, run_checks: Sequence[Check] = ()) -> list[Claim]:
    """The chapter's verdicts (:mod:`glassbox.measure.claims`), every threshold stated in its rule."""

    cfg, conditions, out = result.config, set(result.conditions), []
    trained = ("trained-beyond-input",)
    if {"data_order", "init_and_order"} <= conditions:
        d = _paired(result, "data_order", "init_and_order")
        mean, lo, hi = interval(d)
        lo, hi = (lo, hi) if np.isfinite(lo) else (-math.inf, math.inf)
        verdict, rule = interval_rule((max(lo, -2.0), min(hi, 2.0)), below=0.0,
                                      what="CKA(fixed) - CKA(random)")
        out.append(Claim(
            id="qu-fixed-seeding", chapter=CHAPTER, source="Qu et al., Sec. V", reference=unet_grid.REFERENCE,
            statement="Fixed seeding (the same initial weights for both trials) does not make the trials' features "
                      "more alike than random seeding.",
            test=f"per pair: debiased CKA (mean over layers) of the data_order pair (same initial weights, own data "
                 f"order) minus that of the init_and_order pair (own weights and order), same trial A; 95 % t-interval "
                 f"over {cfg.n_pairs} pairs",
            verdict=verdict, rule=rule + " (contradicted: fixed seeding does make the trials more alike)",
            ours=mean, interval=(max(lo, -2.0), min(hi, 2.0)), interval_kind="95 % t over pairs",
            section="randomness-sources", depends_on=trained))
    tests = result.tests.dropna(subset=["p_value"])
    if len(tests):
        p_max = float(tests["p_value"].max())
        verdict, rule = p_value_rule(p_max, alpha=ALPHA, direction="every layer above its chance level")
        out.append(Claim(
            id="seed-features-above-chance", chapter=CHAPTER, source="this book",
            statement="Two trials that differ in a seed learn features related beyond chance in every layer.",
            test=f"per (seed-level condition, pair, layer): debiased CKA against {cfg.cka_test_draws} re-pairings of "
                 f"the {cfg.n_feature_images} test crops, one-sided permutation p; the claim needs every one of the "
                 f"{len(tests)} tests (an intersection-union test: p = the largest p); shown: the smallest CKA",
            verdict=verdict, rule=rule, ours=float(tests["cka"].min()), p_value=p_max,
            chance=float(tests["chance"].mean()), section="randomness-sources",
            depends_on=trained))
    if "ulp" in conditions:
        ulp = result.pairs[result.pairs["condition"] == "ulp"]
        separated = int((~ulp["weights_identical"]).sum())
        verdict, rule = count_rule(separated, len(ulp), supported_when="all", what="ulp pairs")
        out.append(Claim(
            id="ulp-separates", chapter=CHAPTER, source="this book",
            statement="One float32 ulp in one initial weight is enough to make two trials end with different weights.",
            test=f"ulp pairs whose final parameters and buffers are not bit-identical: {separated} of {len(ulp)}",
            verdict=verdict, rule=rule, ours=float(separated), section="randomness-drift"))
    if {"ulp", "init_and_order"} <= conditions:
        d = _paired(result, "ulp", "init_and_order")
        mean, lo, hi = interval(d)
        lo, hi = (lo, hi) if np.isfinite(lo) else (-math.inf, math.inf)
        verdict, rule = interval_rule((max(lo, -2.0), min(hi, 2.0)), above=0.0, what="CKA(ulp) - CKA(random)")
        out.append(Claim(
            id="ulp-closer-than-seeds", chapter=CHAPTER, source="this book",
            statement="In a run this short, trials one ulp apart end with features closer than trials with different "
                      "seeds (Qu's random seeding).",
            test=f"per pair: debiased CKA (mean over layers) of the ulp pair minus that of the init_and_order pair; "
                 f"95 % t-interval over {cfg.n_pairs} pairs",
            verdict=verdict, rule=rule, ours=mean, interval=(max(lo, -2.0), min(hi, 2.0)),
            interval_kind="95 % t over pairs", section="randomness-drift", depends_on=trained))
    seed_rows = result.corr[(result.corr["pairs"] == "seed-level pairs") & (result.corr["target"] == "psnr_diff")]
    if len(seed_rows) and np.isfinite(seed_rows["lo"].iloc[0]):
        r = seed_rows.iloc[0]
        verdict, rule = equivalence_rule((r["lo"], r["hi"]), WEAK_CORRELATION, what="Spearman's rho")
        out.append(Claim(
            id="qu-not-coupled", chapter=CHAPTER, source="Qu et al., Sec. V (Discussion)", reference=unet_grid.REFERENCE,
            statement="The degree of feature-space inconsistency might not be coupled with performance differences.",
            test=f"Spearman's rho between 1 - CKA and |PSNR_A - PSNR_B| over the {int(r['n'])} seed-level pairs, 95 % "
                 f"bootstrap interval; 'not coupled' = |rho| < {WEAK_CORRELATION} (a weak correlation)",
            verdict=verdict, rule=rule, ours=float(r["rho"]), interval=(float(r["lo"]), float(r["hi"])),
            interval_kind="95 % bootstrap over pairs", p_value=float(r["p"]),
            section="randomness-performance", depends_on=trained,
            note="Pairs share their trial A within a replicate, so the interval is, if anything, too narrow."))
    return apply_checks(out, run_checks)


def _growth(result: RandomnessResult, measure: str, reference: str = "init") -> dict[str, float] | None:
    return ulp_growth(result.curve, measure, reference) if {"ulp", reference} <= set(result.conditions) else None


def glue_values(result: RandomnessResult) -> dict[str, Any]:
    """Every number (and every number-derived word) the chapter's prose quotes, by glue name."""
    cfg, pairs, t = result.config, result.pairs, result.table.set_index("condition")
    steps = result.curve.groupby(["condition", "step"])[["weight_distance", "feature_dissimilarity",
                                                         "output_rms_diff_hu"]].mean()
    first = next(iter(result.experiment.trials.values()))
    values: dict[str, Any] = {
        "n_pairs": cfg.n_pairs, "alt_threads": cfg.alt_threads,
        "threads": cfg.torch_threads if cfg.torch_threads is not None else "default", "n_crops": cfg.n_feature_images,
        "n_trials": len(result.experiment.trials), "total_steps": first["steps"][-1], "epochs": cfg.denoiser.epochs,
        "paper_profile_epochs": PROFILES["paper"].denoiser.epochs,
        "psnr_trials": float(result.scores["psnr"].mean()), "psnr_trials_min": float(result.scores["psnr"].min()),
        "psnr_trials_max": float(result.scores["psnr"].max()), "psnr_input": float(result.scores["input_psnr"].iloc[0]),
        "identical_pairs": int(pairs.loc[pairs["condition"] == "identical", "weights_identical"].sum()),
        "identical_total": int((pairs["condition"] == "identical").sum()),
        "cka_chance_sd": float(result.table["cka_chance_sd"].max()),
        "mcos_chance": float(result.table["matched_cosine_chance"].mean()),
    }
    for c in t.index:
        values |= {f"cka_{c}": t.loc[c, "cka"], f"cka_{c}_lo": t.loc[c, "cka_lo"], f"cka_{c}_hi": t.loc[c, "cka_hi"],
                   f"fd_end_{c}": float(steps.loc[c, "feature_dissimilarity"].iloc[-1]),
                   f"w_end_{c}": float(steps.loc[c, "weight_distance"].iloc[-1]),
                   f"w_first_{c}": float(steps.loc[c, "weight_distance"].iloc[1])}
    singles = [c for c in ("init", "data_order", "noise") if c in t.index]
    if singles:
        strongest = min(singles, key=lambda c: t.loc[c, "cka"])
        values["strongest_source"] = {"init": "initialisation", "data_order": "data order", "noise": "noise"}[strongest]
    growth, growth_fd = _growth(result, "weight_distance"), _growth(result, "feature_dissimilarity")
    if growth is not None:
        ulp = steps.loc["ulp"]
        reached = growth_fd["step_reaching_fraction"]
        values |= {
            "ulp_absorbed": int(pairs.loc[pairs["condition"] == "ulp", "weights_identical"].sum()),
            "ulp_w0": float(ulp["weight_distance"].iloc[0]), "ulp_w1": growth["ulp_first_step"],
            "ulp_jump": growth["ulp_first_step"] / float(ulp["weight_distance"].iloc[0]),
            "ulp_ratio_w": growth["ratio_end"], "ulp_ratio_fd": growth_fd["ratio_end"],
            "ulp_reaches": f"reaches half of it at step {int(reached)}" if np.isfinite(reached)
            else "does not reach half of it within the run",
            "ulp_out_end": float(ulp["output_rms_diff_hu"].iloc[-1]),
        }
    rounding = [c for c in ROUNDING_LEVEL if c in t.index]
    seeds = [c for c in SEED_LEVEL if c in t.index]
    if rounding and seeds:
        def orders(column: str, index: int) -> float:
            return math.log10(min(float(steps.loc[c, column].iloc[index]) for c in seeds)
                              / max(float(steps.loc[c, column].iloc[index]) for c in rounding))
        values |= {"orders_first": orders("weight_distance", 1), "orders_end": orders("weight_distance", -1),
                   "orders_fd_end": orders("feature_dissimilarity", -1)}
    if {"threads", "kernel_noise"} <= set(t.index):
        values["kernel_over_threads"] = values["fd_end_kernel_noise"] / values["fd_end_threads"]
    if {"threads", "ulp"} <= set(t.index):
        values["ulp_over_threads"] = values["fd_end_ulp"] / values["fd_end_threads"]
    if "init" in t.index:
        init = steps.loc["init"]
        out0, out_end = float(init["output_rms_diff_hu"].iloc[0]), float(init["output_rms_diff_hu"].iloc[-1])
        fd0, fd_end = float(init["feature_dissimilarity"].iloc[0]), float(init["feature_dissimilarity"].iloc[-1])
        values |= {"init_out0": out0, "init_out_end": out_end, "init_fd0": fd0, "init_fd_end": fd_end,
                   "init_out_trend": "fall" if out_end < out0 else "rise",
                   "init_fd_trend": "rises" if fd_end > fd0 else "falls"}
    by_layer = result.layers[result.layers["condition"].isin(SEED_LEVEL)].groupby("layer")["cka"].mean()
    if len(by_layer):
        values |= {"layer_most": by_layer.idxmax(), "layer_most_cka": float(by_layer.max()),
                   "layer_least": by_layer.idxmin(), "layer_least_cka": float(by_layer.min())}
    tests = result.tests.dropna(subset=["p_value"])
    values |= {"min_seed_cka": float(tests["cka"].min()) if len(tests) else math.nan,
               "max_seed_p": float(tests["p_value"].max()) if len(tests) else math.nan, "n_seed_tests": len(tests)}
    for row in result.corr.itertuples():
        key = ("all" if row.pairs.startswith("all") else "seed") + ("_psnr" if row.target == "psnr_diff" else "_out")
        values |= {f"rho_{key}": row.rho, f"rho_{key}_lo": row.lo, f"rho_{key}_hi": row.hi, f"rho_{key}_n": row.n}
    return values


def drift_table(result: RandomnessResult) -> pd.DataFrame:
    """1 - CKA (mean over pairs) per condition at the first kept steps, the middle one and the end of training."""
    steps = result.curve.groupby(["condition", "step"])["feature_dissimilarity"].mean().unstack(0)
    return steps.iloc[[0, 1, len(steps) // 2, -1]]


def deviations(config: RandomnessConfig, *, device: torch.device | str = "cpu") -> list[Deviation]:
    """How this run departs from Qu et al.'s training protocol (the recipe, :func:`unet_grid.recipe_deviations`)
    and from their design (two trials per seeding mode and model)."""
    den = config.denoiser
    models = f"U-Net-{den.depth}, {config.n_pairs} pairs of trials per condition"
    out = unet_grid.recipe_deviations(CHAPTER, den, n_px=config.data.n, device=device, models=models)
    out.append(Deviation(
        f"{CHAPTER}.{unet_grid.REFERENCE}.design", CHAPTER, unet_grid.REFERENCE, "design",
        "two trials per seeding mode (random, fixed) of each of three U-Nets; no condition isolates a source",
        f"{config.n_pairs} independent pairs of one U-Net-{den.depth} per condition "
        f"({', '.join(conditions_for(config, device))}), trial B changing one source of randomness",
        "the chapter asks which source moves the features, which the paper's two modes cannot separate"))
    return out


def numbers(result: RandomnessResult) -> dict[str, Any]:
    """The headline numbers of ``results/randomness.json``."""
    layers = result.layers.groupby(["condition", "layer"])[["cka", "cka_chance", "cka_chance_sd", "matched_cosine",
                                                            "matched_cosine_chance"]].mean().reset_index()
    curve = result.curve.groupby(["condition", "step"])[["weight_distance", "feature_dissimilarity",
                                                         "output_rms_diff_hu"]].mean().reset_index()
    return {"conditions": result.table, "layers": layers, "pairs": result.pairs, "curve": curve,
            "correlations": result.corr, "chance_tests": result.tests, "n_pairs": result.config.n_pairs, "n_trials": len(result.experiment.trials),
            "test_psnr_mean": float(result.scores["psnr"].mean()),
            "input_psnr": float(result.scores["input_psnr"].iloc[0]),
            "ulp_growth_weights": _growth(result, "weight_distance"),
            "ulp_growth_features": _growth(result, "feature_dissimilarity"),
            "gpu_measured": "gpu_nondeterministic" in result.conditions}
