"""The project's one training loop (:func:`fit`), Qu et al.'s recipe, and seeding for two-trial experiments.

**Qu et al.'s recipe** (Sec. IV-B): 200 epochs, batch size 8, RMSprop with learning rate 0.01,
loss "the combination of L1 (MAE) and L2 (MSE)". The paper gives no weighting, no RMSprop
smoothing/epsilon/momentum and no schedule; :class:`TrainConfig` uses the unweighted sum
``L1 + L2`` and PyTorch's RMSprop defaults (alpha 0.99, eps 1e-8, no momentum), constant lr.

**What the seeds control** (:func:`trial_seeds` -> :class:`TrialSeeds`):

- ``init_seed``: the initial weights. :func:`glassbox.models.common.init_model` builds the model inside
  ``torch.random.fork_rng`` after seeding only the CPU default generator, so construction is
  reproducible and the caller's global RNG state is unchanged afterwards. Build on CPU, then move.
- ``data_seed``: the order of the training samples. :func:`fit` draws epoch ``e``'s permutation
  from a fresh ``torch.Generator`` seeded from ``(data_seed, e)``, so it is a pure function of
  both, independent of history (which is what makes resuming exact).
- ``noise_seed``: the noise draws of the simulated low-dose inputs, for experiments that redraw
  the simulated noise per trial; it is consumed by whoever builds the data, never by :func:`fit`.
  (Qu et al.'s two trials share one, real, data set; to mirror that, build the data once with one
  seed for both trials.)

**Seeding modes** (:data:`SEEDING_MODES`, :data:`SHARED_SEEDS`). Qu et al. (Sec. V): "all the training
trials are initialized with the same set of weights for fixed seeding"; nothing else is said to be fixed.

- ``random``: every trial has its own three seeds;
- ``fixed`` (the paper's): the trials share the *initial weights* and draw their own data order (and noise);
- ``fully_fixed`` (:data:`CONTROL_SEEDING`, not one of the paper's modes): the trials share all three seeds.
  On a deterministic device such trials are the same computation twice (bit-identical): the floor of
  any trial-to-trial difference.

Trial 0 has the same seeds in every mode, so one training serves as trial 1 of all three modes (the
artifact store trains it once) and the modes differ only in how trial 2 departs from it.

**What can still differ between runs with identical seeds**: non-deterministic GPU kernels
(atomics in cuDNN backward convolutions, scatter/index ops) unless
``torch.use_deterministic_algorithms(True)`` is on (:func:`glassbox.core.repro.seed_everything`);
cuDNN autotuning (``cudnn.benchmark``) picking different algorithms; anything that draws from
the *global* RNG without a seed (augmentation in a dataset or loss, dropout — the U-Nets have
none); a different device, thread count or library version (different floating-point
summation order). On one CPU with the same threads, same seeds give bit-identical weights.

**Checkpoints** (``checkpoint_dir``): after every epoch ``epoch_NNNN.pt`` is written to a temporary
file and renamed into place (``os.replace``), so a killed run never leaves a file that loads as
valid. It holds the model and optimizer state, the epoch, the history and a fingerprint of the
run's configuration (model structure and initial weights, optimizer and its hyper-parameters,
batch size, data seed, dataset size, loss function name, and the caller's ``fingerprint``
mapping). A restarted :func:`fit` loads the newest checkpoint that reads back, warns about and
sets aside (``*.corrupt``) any that do not, and refuses with :class:`CheckpointMismatchError` a
checkpoint written under a different configuration. The number of epochs is not part of the
fingerprint: ``fit(epochs=2)`` then ``fit(epochs=3)`` continues the same run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from glassbox.core import checks, dryrun, repro
from glassbox.core.progress import Progress
from glassbox.core.store import clean_orphans, write_atomically
from glassbox.core.training_settings import TrainingSettings

LossFn = Callable[[nn.Module, Any], torch.Tensor]


OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


ValFn = Callable[[nn.Module], Mapping[str, float]]




SEEDING_MODES: tuple[str, ...] = ("random", "fixed")
"""Qu et al.'s two seeding modes: ``random`` (own initial weights, own data order) and ``fixed`` (shared
initial weights, own data order)."""

CONTROL_SEEDING = "fully_fixed"
"""The control mode: every seed shared, so on a deterministic device the two trials are bit-identical."""

ALL_SEEDINGS: tuple[str, ...] = (*SEEDING_MODES, CONTROL_SEEDING)

SEED_FIELDS: tuple[str, ...] = ("init_seed", "data_seed", "noise_seed")

SHARED_SEEDS: dict[str, frozenset[str]] = {
    "random": frozenset(),
    "fixed": frozenset({"init_seed"}),
    "fully_fixed": frozenset(SEED_FIELDS),
}
"""Which :class:`TrialSeeds` fields every trial of a mode shares (the rest are the trial's own)."""


CHECKPOINT_FORMAT = 1


_CHECKPOINT_NAME = re.compile(r"^epoch_(\d+)\.pt$")


_RESERVED_HISTORY_KEYS = ("epoch", "train_loss", "seconds")


class CheckpointWarning(UserWarning):
    """A checkpoint file could not be read back and was set aside."""


class CheckpointMismatchError(ValueError):
    """``checkpoint_dir`` holds a run with a different configuration than the one asked for."""


def l1_l2_loss(prediction: torch.Tensor, target: torch.Tensor, *, l1_weight: float = 1.0,
               l2_weight: float = 1.0) -> torch.Tensor:
    """``l1_weight * mean|p - t| + l2_weight * mean (p - t)**2``; Qu et al. give no weighting, so 1 and 1."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have the same shape, got {tuple(prediction.shape)} "
                         f"and {tuple(target.shape)}")
    difference = prediction - target
    return l1_weight * difference.abs().mean() + l2_weight * difference.square().mean()


def paired_loss(criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = l1_l2_loss) -> LossFn:
    """A :func:`fit` loss for batches ``(input, target)``: ``criterion(model(input), target)``."""

    def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError("paired_loss expects batches of (input, target); got "
                             f"{type(batch).__name__}" + (f" of length {len(batch)}" if hasattr(batch, "__len__") else ""))
        inputs, targets = batch
        return criterion(model(inputs), targets)

    loss_fn.__qualname__ = f"paired_loss({describe_callable(criterion)})"
    return loss_fn


def describe_callable(fn: Callable[..., Any]) -> str:
    """A stable text for a function or ``functools.partial`` (name and bound arguments, no addresses)."""
    if isinstance(fn, partial):
        bound = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in sorted(fn.keywords.items())]
        return f"{describe_callable(fn.func)}({', '.join(bound)})"
    return getattr(fn, "__qualname__", type(fn).__qualname__)


def rmsprop(lr: float = 0.01, **kwargs: Any) -> OptimizerFactory:
    """Factory for ``torch.optim.RMSprop(params, lr=lr, **kwargs)``; Qu et al. use lr 0.01."""
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    return partial(torch.optim.RMSprop, lr=float(lr), **kwargs)


class CosineAdam(torch.optim.Adam):
    """Adam whose learning rate falls along a half cosine from ``lr`` to ``lr * final_fraction`` over
    ``total_steps`` steps (and stays there). Short trainings then end on small steps, so their final weights, and
    the scores read from them, do not depend on where a noisy constant-rate run happened to stop. The step count
    lives in each parameter group, so it is saved and restored with the optimizer's state (exact resume)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float, total_steps: int, final_fraction: float = 0.05,
                 **kwargs: Any):
        total_steps = checks.integer(total_steps, "total_steps")
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction!r}")
        super().__init__(params, lr=lr, **kwargs)
        for group in self.param_groups:
            group.update(peak_lr=float(lr), total_steps=total_steps, final_fraction=float(final_fraction),
                         steps_done=0)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        for group in self.param_groups:
            progress = min(group["steps_done"] / group["total_steps"], 1.0)
            low = group["peak_lr"] * group["final_fraction"]
            group["lr"] = low + (group["peak_lr"] - low) * 0.5 * (1 + np.cos(np.pi * progress))
            group["steps_done"] += 1
        return super().step(closure)


def cosine_adam(lr: float, total_steps: int, final_fraction: float = 0.05) -> OptimizerFactory:
    """Factory for :class:`CosineAdam` (for :func:`fit`'s ``optimizer``)."""
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    return partial(CosineAdam, lr=float(lr), total_steps=total_steps, final_fraction=final_fraction)


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainingSettings):
    """Training knobs; the defaults are Qu et al.'s (batch 8, RMSprop lr 0.01, L1 + L2), epochs is required.

    The paper trains 200 epochs. ``rmsprop_alpha`` / ``rmsprop_eps`` are PyTorch's defaults (the paper
    is silent); ``l1_weight`` / ``l2_weight`` weight the two loss terms (the paper is silent; 1 and 1).
    """

    epochs: int = field()  # required here: field() drops the inherited default (a bare annotation keeps it)
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 1e-8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rmsprop_eps > 0:
            raise ValueError(f"rmsprop_eps must be positive, got {self.rmsprop_eps!r}")
        for name in ("l1_weight", "l2_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")
        if self.l1_weight == 0 and self.l2_weight == 0:
            raise ValueError("l1_weight and l2_weight cannot both be 0")
        if not 0 <= self.rmsprop_alpha < 1:
            raise ValueError(f"rmsprop_alpha must be in [0, 1), got {self.rmsprop_alpha!r}")

    def optimizer(self) -> OptimizerFactory:
        """The RMSprop factory to pass to :func:`fit`."""
        return rmsprop(self.lr, alpha=self.rmsprop_alpha, eps=self.rmsprop_eps)

    def loss_fn(self) -> LossFn:
        """The L1 + L2 loss on ``(input, target)`` batches, to pass to :func:`fit`."""
        return paired_loss(partial(l1_l2_loss, l1_weight=self.l1_weight, l2_weight=self.l2_weight))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrialSeeds:
    """Seeds of one training trial: weight init, data order, low-dose noise (see module docstring)."""

    init_seed: int
    data_seed: int
    noise_seed: int


def trial_seeds(mode: Literal["random", "fixed", "fully_fixed"], trial: int, base_seed: int) -> TrialSeeds:
    """Seeds of trial ``trial`` of an experiment in seeding ``mode`` (see the module docstring).

    A trial's own seeds come from ``numpy.random.SeedSequence((base_seed, 1, trial))`` (three decorrelated
    streams); the fields of :data:`SHARED_SEEDS` ``[mode]`` are taken from trial 0 instead. So trial 0 is
    the same in every mode, ``fixed`` trials share only ``init_seed``, and the whole table is a pure function
    of ``base_seed``.
    """
    if mode not in SHARED_SEEDS:
        raise ValueError(f"seeding mode must be one of {ALL_SEEDINGS}, got {mode!r}")
    trial = checks.seed(trial, "trial")
    base_seed = checks.seed(base_seed, "base_seed")

    def own(t: int) -> dict[str, int]:
        state = np.random.SeedSequence([base_seed, 1, t]).generate_state(3, dtype=np.uint32)
        return dict(zip(SEED_FIELDS, (int(s) for s in state)))

    mine, first = own(trial), own(0)
    return TrialSeeds(**{name: first[name] if name in SHARED_SEEDS[mode] else mine[name] for name in SEED_FIELDS})


def epoch_order(size: int, data_seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(size)`` used in ``epoch`` (1-based): a pure function of its arguments."""
    size = checks.integer(size, "dataset size")
    seed = np.random.SeedSequence([checks.seed(data_seed, "data_seed"), checks.seed(epoch, "epoch")])
    generator = torch.Generator().manual_seed(int(seed.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return torch.randperm(size, generator=generator)


class _FixedOrder(Sampler[int]):
    def __init__(self, order: torch.Tensor):
        self.order = order.tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


@dataclass
class History:
    """Per-epoch records of a :func:`fit` run: ``epoch``, ``train_loss``, validation metrics, ``seconds``."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int = 0  # epoch of the checkpoint the last call started from (0 = from scratch)

    def __len__(self) -> int:
        return len(self.epochs)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.epochs)


def _tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _optimizer_description(optimizer: torch.optim.Optimizer) -> str:
    groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    return json.dumps({"type": type(optimizer).__qualname__, "groups": groups}, sort_keys=True, default=str)


def run_fingerprint(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, *, batch_size: int,
                    data_seed: int, dataset_size: int, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What must be equal for a checkpoint to continue this run (values are short strings)."""
    state = model.state_dict()
    structure = [(name, str(t.dtype), tuple(t.shape)) for name, t in state.items()]
    return {
        "model": f"{type(model).__qualname__}:"
                 + hashlib.sha256(repr(structure).encode()).hexdigest()[:16],
        "initial_weights": _tensor_digest(state),
        "optimizer": _optimizer_description(optimizer),
        "batch_size": str(batch_size),
        "data_seed": str(data_seed),
        "dataset_size": str(dataset_size),
        "loss_fn": describe_callable(loss_fn),
        "extra": json.dumps(extra or {}, sort_keys=True, default=str),
    }


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a fsync'd temporary file renamed into place (mode 0o666 minus the umask)."""
    write_atomically(path, lambda handle: torch.save(obj, handle))


def checkpoint_files(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of the checkpoints in ``checkpoint_dir``, newest first."""
    found = []
    for path in Path(checkpoint_dir).glob("epoch_*.pt"):
        match = _CHECKPOINT_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found, reverse=True)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load and validate one checkpoint; any problem raises (ValueError or the loader's error)."""
    data = torch.load(path, map_location="cpu", weights_only=True)
    expected = {"format", "epoch", "model", "optimizer", "history", "fingerprint"}
    if not isinstance(data, dict) or not expected <= set(data):
        raise ValueError(f"not a glassbox checkpoint (expected keys {sorted(expected)})")
    if data["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {data['format']!r}, expected {CHECKPOINT_FORMAT}")
    match = _CHECKPOINT_NAME.match(Path(path).name)
    if match and int(match.group(1)) != data["epoch"]:
        raise ValueError(f"file name says epoch {int(match.group(1))} but the content says {data['epoch']}")
    if len(data["history"]) != data["epoch"]:
        raise ValueError(f"history has {len(data['history'])} entries for epoch {data['epoch']}")
    return data


def _set_aside(path: Path, reason: BaseException) -> None:
    target = path.with_name(path.name + ".corrupt")
    warnings.warn(f"checkpoint {path} is unreadable ({type(reason).__name__}: {reason}); "
                  f"moved to {target.name}, resuming from an older checkpoint or from scratch",
                  CheckpointWarning, stacklevel=3)
    try:
        os.replace(path, target)
    except OSError:
        pass


def _load_latest(checkpoint_dir: Path, fingerprint: Mapping[str, str]) -> dict[str, Any] | None:
    for _, path in checkpoint_files(checkpoint_dir):
        try:
            data = read_checkpoint(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint: set aside, try the next
            _set_aside(path, exc)
            continue
        differing = sorted(k for k in set(fingerprint) | set(data["fingerprint"])
                           if fingerprint.get(k) != data["fingerprint"].get(k))
        if differing:
            details = "; ".join(f"{k}: checkpoint {data['fingerprint'].get(k)!r} vs now {fingerprint.get(k)!r}"
                                for k in differing)
            raise CheckpointMismatchError(
                f"checkpoint {path} was written by a run with a different configuration ({details}). "
                "Use another checkpoint_dir, or delete this one to start over.")
        return data
    return None


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _validate(model: nn.Module, val_fn: ValFn) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            metrics = val_fn(model)
    finally:
        model.train()
    if not isinstance(metrics, Mapping):
        raise TypeError(f"val_fn must return a mapping of metric name to number, got {type(metrics).__name__}")
    out = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or name in _RESERVED_HISTORY_KEYS:
            raise ValueError(f"val_fn returned metric name {name!r}; names must be strings other than "
                             f"{_RESERVED_HISTORY_KEYS}")
        out[name] = float(value)
    return out


def fit(model: nn.Module, dataset: Dataset, loss_fn: LossFn, *, epochs: int, batch_size: int,
        optimizer: OptimizerFactory, data_seed: int, device: torch.device | str = "cpu",
        val_fn: ValFn | None = None, checkpoint_dir: Path | str | None = None, desc: str = "train",
        progress: bool = True, fingerprint: Mapping[str, Any] | None = None,
        keep_checkpoints: int = 2) -> History:
    """Train ``model`` in place for ``epochs`` epochs and return its :class:`History`.

    ``loss_fn(model, batch)`` gets each DataLoader batch already on ``device``. Epoch ``e`` visits
    the samples in :func:`epoch_order` ``(len(dataset), data_seed, e)``, in batches of
    ``batch_size`` (the last one may be smaller). After each epoch ``val_fn(model)`` runs in eval
    mode without gradients, and with ``checkpoint_dir`` a checkpoint is written atomically
    (the ``keep_checkpoints`` newest are kept). Called again with the same ``checkpoint_dir`` and
    configuration, it resumes from the newest readable checkpoint and ends with the same weights
    as an uninterrupted run; ``fingerprint`` adds caller-side configuration (e.g. a
    :class:`TrainConfig`, data settings) to what must match; its top-level ``epochs`` key is ignored,
    so passing the whole config still lets a run be extended. A non-finite epoch loss raises
    FloatingPointError. The model is returned in eval mode.
    """
    repro.ensure_pinned_threads()
    epochs = checks.integer(epochs, "epochs")
    batch_size = checks.integer(batch_size, "batch_size")
    keep_checkpoints = checks.integer(keep_checkpoints, "keep_checkpoints")
    data_seed = checks.seed(data_seed, "data_seed")
    size = len(dataset)  # type: ignore[arg-type]
    if size < 1:
        raise ValueError("dataset is empty")
    device = torch.device(device)
    if dataclasses.is_dataclass(fingerprint) and not isinstance(fingerprint, type):
        fingerprint = dataclasses.asdict(fingerprint)
    if fingerprint is not None:  # the epoch count never belongs to a run's identity (see module docstring)
        fingerprint = {k: v for k, v in dict(fingerprint).items() if k != "epochs"}

    model.to(device)
    model.train()
    opt = optimizer(model.parameters())
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a factory returning a torch.optim.Optimizer, got {type(opt).__name__}")
    run_id = run_fingerprint(model, opt, loss_fn, batch_size=batch_size, data_seed=data_seed,
                             dataset_size=size, extra=fingerprint)

    history = History()
    start = 0
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        clean_orphans(folder)  # temporary files of a run killed while writing a checkpoint
        state = _load_latest(folder, run_id)
        if state is not None:
            if state["epoch"] > epochs:
                raise ValueError(f"checkpoint_dir {folder} holds a run already at epoch {state['epoch']}, "
                                 f"beyond the requested epochs={epochs}; ask for at least {state['epoch']} "
                                 "epochs or use another checkpoint_dir")
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            history.epochs = [dict(entry) for entry in state["history"]]
            start = history.resumed_from = state["epoch"]

    batches_per_epoch = -(-size // batch_size)
    bar = Progress(epochs * batches_per_epoch, desc, unit="batch", initial=start * batches_per_epoch, epochs=epochs,
                   enabled=progress)
    try:
        for epoch in dryrun.steps(range(start + 1, epochs + 1), desc):
            began = time.perf_counter()
            loader = DataLoader(dataset, batch_size=batch_size, sampler=_FixedOrder(epoch_order(size, data_seed, epoch)),
                                num_workers=0, drop_last=False)
            total = torch.zeros((), dtype=torch.float64, device=device)
            for batch in dryrun.steps(loader, desc):
                batch = _to_device(batch, device)
                loss = loss_fn(model, batch)
                if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                    raise TypeError(f"loss_fn must return a scalar tensor, got {loss!r:.80}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                count = _batch_count(batch)
                total += loss.detach().double() * count
                bar.update(1)
            train_loss = total.item() / size
            if not np.isfinite(train_loss):
                raise FloatingPointError(f"{desc}: training loss became {train_loss} in epoch {epoch}; "
                                         "lower the learning rate or check the data")
            record: dict[str, float] = {"epoch": epoch, "train_loss": train_loss}
            if val_fn is not None:
                record |= _validate(model, val_fn)
            record["seconds"] = time.perf_counter() - began
            history.epochs.append(record)
            bar.end_epoch(epoch, record)
            if folder is not None:
                _atomic_save({"format": CHECKPOINT_FORMAT, "epoch": epoch, "model": model.state_dict(),
                              "optimizer": opt.state_dict(), "history": history.epochs, "fingerprint": run_id},
                             folder / f"epoch_{epoch:04d}.pt")
                for old_epoch, path in checkpoint_files(folder):
                    if old_epoch <= epoch - keep_checkpoints:
                        path.unlink(missing_ok=True)
    finally:
        bar.close()
    model.eval()
    return history


def _batch_count(batch: Any) -> int:
    """Number of samples in a collated batch (first tensor's leading dimension)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, (list, tuple)) and batch:
        return _batch_count(batch[0])
    if isinstance(batch, Mapping) and batch:
        return _batch_count(next(iter(batch.values())))
    raise TypeError(f"cannot tell the number of samples in a batch of type {type(batch).__name__}")
