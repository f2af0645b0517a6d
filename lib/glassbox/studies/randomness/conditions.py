"""The sources of randomness the chapter varies one at a time: :data:`CONDITIONS`, the perturbations
(:class:`UlpPerturbation`, :class:`KernelNoise`), the training probe and the :class:`TrialSpec` of one trial."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from glassbox.core import checks as argcheck
from glassbox.models.unet import UNet
from glassbox.training.loop import TrialSeeds
from glassbox.training.unet_denoiser import DenoiserConfig

SIMULATED_ONLY = ("its 'noise' condition redraws the photon noise of the same patients, which a real DICOM tree cannot do")
"""Why this chapter refuses a real ``data_dir`` (:func:`glassbox.chapters.setup_run` says so)."""



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
