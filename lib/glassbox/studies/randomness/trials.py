"""Trials of the randomness chapter: pairs that differ in one condition, trained and measured through the store,
and :func:`plan`."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from glassbox.core import checks as argcheck
from glassbox.core import dryrun, repro
from glassbox.core.store import get_or_compute
from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.models.unet import UNet
from glassbox.studies.randomness.conditions import (
    CONDITIONS,
    SIMULATED_ONLY,
    KernelNoise,
    TrainingProbe,
    TrialSpec,
    pick_ulp_weight,
    snapshot_steps,
)
from glassbox.studies.randomness.config import RandomnessConfig, _resolved_threads, conditions_for
from glassbox.training import unet_denoiser
from glassbox.training.loop import trial_seeds


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
