"""Train and evaluate a U-Net denoiser on paired low-/full-dose CT: the one place that does it.

Used by the Qu et al. reproduction (:mod:`glassbox.training.unet_grid`) and by the sources-of-randomness study.

**API**

- :class:`DenoiserConfig` -- frozen: architecture (``depth``, ``width``, ``residual``, ``zero_head``), data
  (``patch_size``, ``n_patches``, ``split_fractions``, ``split_seed``) and training (``epochs``,
  ``batch_size``, ``lr``, loss weights). Defaults are Qu et al.'s recipe: U-Net-9 at full width,
  whole slices, 200 epochs, batch 8, RMSprop lr 0.01, L1 + L2, plain (non-residual) output.
- :func:`prepare_data` ``(config, pairs) -> DenoiserData``: the patient split and the training set.
  A pure function of ``(config, pairs)``: **both trials of an experiment train on the same data**,
  as in Qu's protocol (one data set, trained twice). Build it once and pass it to
  :func:`train_denoiser` to save the work; omitted, it is rebuilt identically.
- :func:`train_denoiser` ``(config, pairs, seeds, *, device, ...) -> (model, History)``: one trial,
  through :func:`glassbox.training.loop.fit` (progress bar, validation PSNR every epoch, optional
  checkpoints and exact resume).
- :func:`trained_denoiser` -- the same through :func:`glassbox.core.store.get_or_compute` (state_dict +
  history are stored; same config, data, seeds, trial and device type => loaded, not retrained;
  checkpoints every epoch in the store, so a killed run resumes).
- :class:`InitPerturbation` -- an optional relative nudge of the initial weights (``scale``, ``seed``).
- :func:`evaluate_denoiser` ``(model, pairs, ids) -> dict``: PSNR / SSIM / RMSE in HU of the
  denoised slices and of the low-dose input itself (the floor a useful denoiser must beat);
  :func:`input_scores` ``(pairs, ids)`` gives the floor alone.
- :func:`denoise` -- apply a model to HU slices; :func:`resimulated_pairs` -- the same anatomy with
  another noise draw (the one use of ``noise_seed``, see below).

**What each seed of** :class:`glassbox.training.loop.TrialSeeds` **does here**

- ``init_seed``: the initial weights (:func:`glassbox.models.common.init_model`).
- ``data_seed``: the order of the training samples in every epoch (:func:`glassbox.training.loop.fit`).
- ``noise_seed``: **not consumed by** :func:`train_denoiser`. The noise realisation is part of
  ``pairs`` (Qu's trials share one real data set, so their noise is the same). A caller who wants the
  noise draw to be a source of randomness asks for it explicitly with
  ``resimulated_pairs(data_config, seed, seeds.noise_seed)`` (same phantoms, new photon noise) and
  passes those pairs in.

Which patients are train / val / test and where the training patches are cut is fixed by the
config's ``split_seed`` -- the data, not the trial.

**Metrics.** Images are compared in Hounsfield units with a fixed data range ``PSNR_RANGE_HU = 4096``
(the 12-bit CT range [-1024, 3072] HU that Mayo DICOM images span); PSNR is the mean of the per-slice
PSNRs, SSIM (scikit-image's default 7x7 uniform window) the mean over slices, RMSE the root of the
pooled MSE. Qu et al. do not state their data range, so only differences and orderings of PSNR, not
absolute values, are comparable with their Table I.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from glassbox.core import checks, dryrun
from glassbox.core.paths import store_dir
from glassbox.core.store import get_or_compute, key_of
from glassbox.core.training_settings import TrainingSettings
from glassbox.data import ct_physics, lowdose_ct, phantoms
from glassbox.measure import features, image_metrics
from glassbox.models.common import init_model
from glassbox.models.unet import UNet, layer_names, levels_of
from glassbox.training.loop import History, TrainConfig, TrialSeeds, fit

__all__ = [
    "PSNR_RANGE_HU", "DenoiserConfig", "DenoiserData", "InitPerturbation", "prepare_data", "train_denoiser",
    "trained_denoiser", "evaluate_denoiser", "input_scores", "denoise", "layer_features", "build_model",
    "pairs_fingerprint", "data_identity", "resimulated_pairs", "slice_psnrs", "states_identical",
    "max_state_difference", "algorithms", "store_key", "STORE_ENTRY", "NOISE_ENTRY", "noise_key",
]

PSNR_RANGE_HU = 4096.0
"""Data range of PSNR and SSIM in HU: the 12-bit CT range [-1024, 3072] HU."""

Pairs = Mapping[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True, kw_only=True)
class DenoiserConfig(TrainingSettings):
    """Everything that defines one denoiser training run except the trial's seeds.

    ``epochs``, ``batch_size``, ``lr`` (:class:`~glassbox.core.training_settings.TrainingSettings`) keep their
    defaults, Qu et al.'s 200, 8 and 0.01.

    ``patch_size=None`` trains on whole slices (Qu et al.); with a ``patch_size``, ``n_patches``
    random co-located crops (at least ``min_foreground`` body pixels) are cut once from the training
    slices and reused every epoch. ``residual=True`` predicts a correction added to the input;
    ``zero_head=True`` initialises the final 1x1 convolution to zero, so such a network starts as the
    identity (its PSNR starts at the low-dose input's) and training can only move it from there.
    """

    depth: int = 9
    width: float = 1.0
    residual: bool = False
    zero_head: bool = False
    patch_size: int | None = None
    n_patches: int | None = None
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    min_foreground: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        levels = levels_of(self.depth)
        checks.positive_number(self.width, "width (1.0 = the paper's 64 base channels)")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be True or False, got {self.residual!r}")
        if self.zero_head and not self.residual:
            raise ValueError("zero_head=True needs residual=True (a zero head makes a residual U-Net the identity; "
                             "a plain U-Net would output a constant)")
        if self.patch_size is None:
            if self.n_patches is not None:
                raise ValueError(f"n_patches={self.n_patches!r} needs a patch_size; whole-slice training "
                                 "(patch_size=None) uses every training slice once per epoch")
        else:
            size = checks.integer(self.patch_size, "patch_size")
            if size % 2**levels:
                raise ValueError(f"patch_size ({size}) must be divisible by {2**levels} for U-Net-{self.depth}")
            if self.n_patches is None:
                raise ValueError("patch_size is set, so n_patches (the number of training patches) is required")
            checks.integer(self.n_patches, "n_patches")
        if not 0.0 <= self.min_foreground <= 1.0:
            raise ValueError(f"min_foreground must be in [0, 1], got {self.min_foreground!r}")
        checks.seed(self.split_seed, "split_seed")
        lowdose_ct._check_fractions(self.split_fractions)
        self.train_config()  # validates the loss weights

    def train_config(self) -> TrainConfig:
        """The :class:`glassbox.training.loop.TrainConfig` (RMSprop, L1 + L2) of this run."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           l1_weight=self.l1_weight, l2_weight=self.l2_weight)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class InitPerturbation:
    """Add ``scale * rms(p) * z`` (``z ~ N(0, 1)`` from ``seed``) to every parameter tensor ``p`` after init.

    Relative to each tensor's root-mean-square, so ``scale=1e-6`` is a change in the sixth digit
    everywhere; tensors that start at zero (biases) stay zero. Buffers (BatchNorm statistics) are
    untouched.
    """

    scale: float
    seed: int

    def __post_init__(self) -> None:
        checks.positive_number(self.scale, "InitPerturbation.scale", allow_zero=True)
        checks.seed(self.seed, "InitPerturbation.seed")

    def apply(self, model: nn.Module) -> None:
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for parameter in model.parameters():
                rms = parameter.detach().double().square().mean().sqrt().item()
                noise = torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                parameter.add_(noise.to(parameter.device) * (self.scale * rms))


def build_model(config: DenoiserConfig, init_seed: int, init_perturbation: InitPerturbation | None = None) -> UNet:
    """The U-Net of ``config`` with its initial weights drawn from ``init_seed`` (on CPU)."""
    model = init_model(lambda: UNet(config.depth, config.width, residual=config.residual), init_seed)
    if config.zero_head:
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.zero_()
    if init_perturbation is not None:
        init_perturbation.apply(model)
    return model


# --- data ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiserData:
    """The patient split and the training set of one :class:`DenoiserConfig` on one set of pairs.

    ``fingerprint`` names the pairs in store keys (their content hash, or the identity the caller gave,
    see :func:`data_identity`); ``patch_positions`` are the ``(slice, row, column)`` corners of the
    training patches in the stacked training slices (None for whole slices).
    """

    split: dict[str, list[str]]
    train: Dataset = field(repr=False)
    fingerprint: str
    patch_positions: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_train(self) -> int:
        return len(self.train)  # type: ignore[arg-type]


def _check_pairs(pairs: Any) -> None:
    if not isinstance(pairs, Mapping) or not pairs:
        raise ValueError("pairs must be a non-empty mapping {patient_id: (low (S, n, n), full (S, n, n))} in HU")
    for pid, value in pairs.items():
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"pairs[{pid!r}] must be a (low, full) tuple of arrays")
        low, full = value
        if np.shape(low) != np.shape(full) or np.ndim(low) != 3:
            raise ValueError(f"pairs[{pid!r}]: low and full must both be (S, n, n), got {np.shape(low)} and "
                             f"{np.shape(full)}")


def pairs_fingerprint(pairs: Pairs) -> str:
    """:func:`glassbox.data.lowdose_ct.pairs_fingerprint` (the data's content hash in store keys) of checked pairs."""
    _check_pairs(pairs)
    return lowdose_ct.pairs_fingerprint(pairs)


def data_identity(data_config: lowdose_ct.CTDataConfig, seed: int, pairs: Pairs | None = None) -> str:
    """How store keys name a data set: ``pairs`` given (real data) -> its content hash; else the simulated
    data set of ``(data_config, seed)`` by its own store key, which is a pure function of the recipe and the
    library source -- so a plan can name a training's store entry without simulating the data first."""
    if pairs is not None:
        return "content:" + pairs_fingerprint(pairs)
    return "simulated:" + key_of(*lowdose_ct.dataset_entry(data_config, seed))


def prepare_data(config: DenoiserConfig, pairs: Pairs, *, identity: str | None = None,
                 foreground: Mapping[str, np.ndarray] | None = None) -> DenoiserData:
    """Split patients (``config.split_seed``) and build the training set: whole slices or fixed patches.

    A pure function of ``(config, pairs)``; the trial's seeds play no part (Qu's trials share data).
    ``identity`` names the pairs in store keys (default: their content hash; see :func:`data_identity`).
    ``foreground`` (``{patient: (S, n, n) HU}``, e.g. :func:`glassbox.data.lowdose_ct.noise_free_volumes`)
    decides which patch positions hold enough body; by default the full-dose slices do. With a noise-free
    foreground the patches sit at the same places whatever the noise draw.
    """
    if not isinstance(config, DenoiserConfig):
        raise ValueError(f"config must be a DenoiserConfig, got {type(config).__name__}")
    _check_pairs(pairs)
    split = lowdose_ct.split_patients(list(pairs), config.split_fractions, config.split_seed)
    if not split["train"]:
        raise ValueError("the split has no training patients; raise split_fractions[0] or add patients")
    positions = None
    if config.patch_size is None:
        train: Dataset = lowdose_ct.PairedCTDataset(pairs, split["train"])
    else:
        low = np.concatenate([np.asarray(pairs[pid][0], dtype=np.float32) for pid in split["train"]])
        full = np.concatenate([np.asarray(pairs[pid][1], dtype=np.float32) for pid in split["train"]])
        if foreground is None:
            reference = full
        else:
            missing = [pid for pid in split["train"] if pid not in foreground]
            if missing:
                raise ValueError(f"foreground lacks the training patients {missing[:5]}")
            reference = np.concatenate([np.asarray(foreground[pid], dtype=np.float32) for pid in split["train"]])
            if reference.shape != full.shape:
                raise ValueError(f"foreground must match the slices' shape {full.shape}, got {reference.shape}")
        rng = np.random.default_rng(np.random.SeedSequence([config.split_seed, 0x9A7C4]))
        positions = lowdose_ct.patch_positions(reference, config.patch_size, config.n_patches, rng,
                                               min_foreground=config.min_foreground)
        low_p, full_p = (lowdose_ct.crop(a, positions, config.patch_size) for a in (low, full))
        train = TensorDataset(torch.from_numpy(lowdose_ct.normalize(low_p)[:, None].astype(np.float32)),
                              torch.from_numpy(lowdose_ct.normalize(full_p)[:, None].astype(np.float32)))
    first = next(iter(pairs.values()))[0]
    if config.patch_size is None and any(s % 2**levels_of(config.depth) for s in np.shape(first)[1:]):
        raise ValueError(f"whole slices of {np.shape(first)[1:]} pixels cannot pass U-Net-{config.depth}: "
                         f"sides must be divisible by {2**levels_of(config.depth)}")
    fingerprint = pairs_fingerprint(pairs) if identity is None else str(identity)
    return DenoiserData(split=split, train=train, fingerprint=fingerprint, patch_positions=positions)


def states_identical(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """True when two state dicts hold the same names and every parameter *and buffer* is bit-identical."""
    return a.keys() == b.keys() and all(torch.equal(torch.as_tensor(a[k]).cpu(), torch.as_tensor(b[k]).cpu())
                                        for k in a)


def max_state_difference(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Largest absolute difference between corresponding parameters and buffers of two state dicts."""
    if a.keys() != b.keys():
        raise ValueError("the two models have different parameters; compare trials of one architecture")
    return max((torch.as_tensor(a[k]).detach().double().cpu() - torch.as_tensor(b[k]).detach().double().cpu())
               .abs().max().item() for k in a if torch.as_tensor(a[k]).numel())


# --- inference and evaluation -------------------------------------------------------------------------


def denoise(model: nn.Module, low_hu: np.ndarray, *, batch_size: int = 4) -> np.ndarray:
    """Apply ``model`` (eval mode, no gradients, on its own device) to HU slices ``(S, n, n)`` or ``(n, n)``."""
    low_hu = np.asarray(low_hu, dtype=np.float32)
    single = low_hu.ndim == 2
    stack = low_hu[None] if single else low_hu
    if stack.ndim != 3:
        raise ValueError(f"low_hu must be (n, n) or (S, n, n), got shape {low_hu.shape}")
    batch_size = checks.integer(batch_size, "batch_size")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = stack.copy() if dryrun.active() else np.empty_like(stack)  # a dry run denoises one batch
    try:
        with torch.no_grad():
            for start in dryrun.steps(range(0, stack.shape[0], batch_size), "denoise"):
                x = torch.from_numpy(lowdose_ct.normalize(stack[start:start + batch_size])[:, None]).to(device)
                out[start:start + batch_size] = lowdose_ct.denormalize(model(x)[:, 0].float().cpu().numpy())
    finally:
        model.train(was_training)
    return out[0] if single else out


def layer_features(model: UNet, inputs: torch.Tensor, *, device: torch.device | str | None = None,
                   batch_size: int = 32) -> dict[str, np.ndarray]:
    """``{layer: N x M float64}``: the spatial mean of every channel of each named block (Down*, Bottleneck, Up*).

    In a dry run (:mod:`glassbox.core.dryrun`) only the first batch goes through the model; its rows are
    repeated to N (same shapes, no meaning)."""
    if dryrun.active() and inputs.shape[0] > batch_size:
        dryrun.note("layer_features")
        first = layer_features(model, inputs[:batch_size], device=device, batch_size=batch_size)
        return {name: np.resize(value, (inputs.shape[0], value.shape[1])) for name, value in first.items()}
    loader = DataLoader(TensorDataset(inputs), batch_size=batch_size, shuffle=False)
    out = features.extract(model, loader, layer_names(model), "mean", device=device, dtype=torch.float64)
    return {name: value.numpy() for name, value in out.items()}


def _image_scores(images: np.ndarray, references: np.ndarray, *, with_ssim: bool = True) -> dict[str, float]:
    per_slice = [image_metrics.psnr(x, r, PSNR_RANGE_HU) for x, r in zip(images, references)]
    scores = {"psnr": float(np.mean(per_slice)), "rmse_hu": math.sqrt(image_metrics.mse(images, references))}
    if with_ssim:
        scores["ssim"] = image_metrics.ssim(images, references, PSNR_RANGE_HU)
    return scores


def _check_ids(pairs: Pairs, ids: Sequence[str]) -> list[str]:
    """``ids`` as a list if it is non-empty and names only patients of ``pairs``."""
    _check_pairs(pairs)
    ids = list(ids)
    missing = [i for i in ids if i not in pairs]
    if not ids or missing:
        raise ValueError(f"ids must name patients of pairs, e.g. the test split; got {ids[:5]} "
                         f"(patient ids not in pairs: {missing[:5]})")
    return ids


def _stacked(pairs: Pairs, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The low- and full-dose slices of patients ``ids`` (checked), stacked in that order (float32 HU)."""
    ids = _check_ids(pairs, ids)
    low = np.concatenate([np.asarray(pairs[i][0], dtype=np.float32) for i in ids])
    full = np.concatenate([np.asarray(pairs[i][1], dtype=np.float32) for i in ids])
    return low, full


def input_scores(pairs: Pairs, ids: Sequence[str]) -> dict[str, float]:
    """PSNR / SSIM / RMSE of the low-dose input itself against full dose on patients ``ids``: the floor."""
    return _image_scores(*_stacked(pairs, ids))


def evaluate_denoiser(model: nn.Module, pairs: Pairs, ids: Sequence[str], *, batch_size: int = 4
                      ) -> dict[str, float]:
    """Scores of ``model`` on the slices of patients ``ids`` against their full-dose images, in HU.

    Returns ``psnr``, ``ssim``, ``rmse_hu`` of the denoised slices, the same of the low-dose input
    (``input_psnr``, ``input_ssim``, ``input_rmse_hu``: the floor) and ``psnr_gain`` = ``psnr -
    input_psnr``. See the module docstring for the data range and averaging.
    """
    ids = list(dryrun.steps(_check_ids(pairs, ids), "evaluate_denoiser"))  # a dry run scores the first patient only
    low, full = _stacked(pairs, ids)
    ours = _image_scores(denoise(model, low, batch_size=batch_size), full)
    floor = _image_scores(low, full)
    return ours | {f"input_{k}": v for k, v in floor.items()} | {"psnr_gain": ours["psnr"] - floor["psnr"],
                                                                  "n_slices": float(low.shape[0])}


def slice_psnrs(model: nn.Module | None, pairs: Pairs, ids: Sequence[str], *, batch_size: int = 4) -> np.ndarray:
    """PSNR (dB, range :data:`PSNR_RANGE_HU`) of every slice of patients ``ids`` against full dose: of the
    model's output, or of the low-dose input itself when ``model`` is None. Their mean is
    :func:`evaluate_denoiser`'s ``psnr``; per slice they give bootstrap intervals over the test set."""
    low, full = _stacked(pairs, ids)
    images = low if model is None else denoise(model, low, batch_size=batch_size)
    return np.array([image_metrics.psnr(x, r, PSNR_RANGE_HU) for x, r in zip(images, full)])


def _val_fn(pairs: Pairs, ids: Sequence[str]):
    low = np.concatenate([np.asarray(pairs[i][0], dtype=np.float32) for i in ids])
    full = np.concatenate([np.asarray(pairs[i][1], dtype=np.float32) for i in ids])

    def val_fn(model: nn.Module) -> dict[str, float]:
        scores = _image_scores(denoise(model, low), full, with_ssim=False)
        return {"val_psnr": scores["psnr"], "val_rmse_hu": scores["rmse_hu"]}
    return val_fn


# --- training ---------------------------------------------------------------------------------------------


@contextmanager
def algorithms(deterministic: bool) -> Iterator[None]:
    """Deterministic algorithms on (the default set by ``setup_run``) or off for the block; the previous
    flags come back after. Off is PyTorch's default on CUDA: cuDNN may autotune and use atomics, so two runs
    with the same seeds can differ -- what a GPU run without ``use_deterministic_algorithms`` does."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


def train_denoiser(config: DenoiserConfig, pairs: Pairs, seeds: TrialSeeds, *, device: torch.device | str = "cpu",
                   checkpoint_dir: Path | str | None = None, progress: bool = True,
                   init_perturbation: InitPerturbation | None = None, data: DenoiserData | None = None,
                   desc: str = "denoiser", deterministic: bool = True) -> tuple[UNet, History]:
    """Train one trial and return ``(model in eval mode on device, History)``.

    Initial weights from ``seeds.init_seed`` (plus ``init_perturbation``), sample order from
    ``seeds.data_seed``; ``seeds.noise_seed`` is not used (see the module docstring). Validation
    PSNR / RMSE in HU (``val_psnr``, ``val_rmse_hu``) on the validation patients after every epoch.
    ``data`` is :func:`prepare_data` ``(config, pairs)``, rebuilt when omitted. With
    ``checkpoint_dir`` a killed run resumes where it stopped and ends with the same weights.
    ``deterministic=False`` (CUDA only) trains with non-deterministic kernels allowed (:func:`algorithms`).
    """
    if not isinstance(seeds, TrialSeeds):
        raise ValueError(f"seeds must be a glassbox.training.loop.TrialSeeds (see trial_seeds), got {type(seeds).__name__}")
    if not deterministic and torch.device(device).type != "cuda":
        raise ValueError("deterministic=False only makes sense on CUDA: CPU kernels are deterministic")
    data = prepare_data(config, pairs) if data is None else data
    if not isinstance(data, DenoiserData):
        raise ValueError(f"data must come from prepare_data, got {type(data).__name__}")
    model = build_model(config, seeds.init_seed, init_perturbation)
    train = config.train_config()
    val_fn = _val_fn(pairs, data.split["val"]) if data.split["val"] else None
    fingerprint = config.as_dict() | {"pairs": data.fingerprint, "init_seed": seeds.init_seed,
                                      "init_perturbation": dataclasses.asdict(init_perturbation)
                                      if init_perturbation else None, "deterministic": deterministic}
    shapes = ("train_denoiser", config.depth, config.width, config.residual, config.patch_size, config.batch_size,
              tuple(np.shape(next(iter(pairs.values()))[0])[1:]), torch.device(device).type)
    if not dryrun.first_time(shapes, scope=str(store_dir())):  # a dry run already took a step with these shapes: seeds change no memory
        dryrun.note(f"{desc}: same shapes as a training this dry run already stepped")
        model.to(device).eval()
        return model, History(epochs=[{"epoch": 1, "train_loss": math.nan, "seconds": 0.0}
                                      | ({"val_psnr": math.nan, "val_rmse_hu": math.nan} if val_fn else {})])
    with algorithms(deterministic):
        history = fit(model, data.train, train.loss_fn(), epochs=config.epochs, batch_size=config.batch_size,
                      optimizer=train.optimizer(), data_seed=seeds.data_seed, device=device, val_fn=val_fn,
                      checkpoint_dir=checkpoint_dir, desc=desc, progress=progress, fingerprint=fingerprint)
    return model, history


STORE_ENTRY = "denoiser"
"""The store entry of :func:`trained_denoiser`."""


def store_key(config: DenoiserConfig, identity: str, seeds: TrialSeeds, *, trial: int,
              device: torch.device | str = "cpu", init_perturbation: InitPerturbation | None = None,
              deterministic: bool = True) -> dict[str, Any]:
    """The store key (config part) of :func:`trained_denoiser`: what a trained model is a function of.

    ``identity`` is the data's name in keys (:attr:`DenoiserData.fingerprint`, :func:`data_identity`), so a
    plan can name the entry before the data exist.
    """
    checks.integer(trial, "trial", minimum=0)
    return {"config": config.as_dict(), "pairs": identity, "seeds": dataclasses.asdict(seeds),
            "trial": trial, "device": torch.device(device).type, "deterministic": bool(deterministic),
            "init_perturbation": dataclasses.asdict(init_perturbation) if init_perturbation else None}


def trained_denoiser(config: DenoiserConfig, pairs: Pairs, seeds: TrialSeeds, *, trial: int,
                     device: torch.device | str = "cpu", root: Path | str | None = None,
                     checkpoint_dir: Path | str | None | Literal["auto"] = "auto", progress: bool = True,
                     init_perturbation: InitPerturbation | None = None, data: DenoiserData | None = None,
                     desc: str = "denoiser", deterministic: bool = True) -> tuple[UNet, History]:
    """:func:`train_denoiser` through the artifact store; returns ``(model on device, eval mode; History)``.

    The key (:func:`store_key`) is the config, the data's identity, the seeds, ``init_perturbation``, the
    device type, ``deterministic`` and ``trial``. ``trial`` is in the key so that two trials with identical
    seeds (``fully_fixed`` seeding) are *trained* separately, not one loaded as the other. The stored value
    holds the state_dict, the history, the torch thread count used and the seeds.

    ``checkpoint_dir="auto"`` checkpoints every epoch to ``<store>/_checkpoints/denoiser/<key>``, so a
    run that is killed (a 200-epoch ``paper`` grid) resumes where it stopped when called again; the
    folder is removed once the model is stored. ``None`` trains without checkpoints.
    """
    data = prepare_data(config, pairs) if data is None else data
    torch_device = torch.device(device)
    key = store_key(config, data.fingerprint, seeds, trial=trial, device=torch_device,
                    init_perturbation=init_perturbation, deterministic=deterministic)

    folder = (Path(root) if root is not None else store_dir()) / "_checkpoints" / STORE_ENTRY / key_of(STORE_ENTRY, key) \
        if checkpoint_dir == "auto" else checkpoint_dir

    def compute() -> dict[str, Any]:
        model, history = train_denoiser(config, pairs, seeds, device=torch_device, checkpoint_dir=folder,
                                        progress=progress, init_perturbation=init_perturbation, data=data,
                                        desc=desc, deterministic=deterministic)
        return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": history.epochs, "torch_threads": torch.get_num_threads(),
                "seeds": dataclasses.asdict(seeds), "trial": trial}

    value = get_or_compute(STORE_ENTRY, key, compute, root=root, progress=progress)
    if checkpoint_dir == "auto" and folder is not None and Path(folder).is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    model = UNet(config.depth, config.width, residual=config.residual)
    model.load_state_dict(value["state_dict"])
    model.to(torch_device).eval()
    return model, History(epochs=[dict(e) for e in value["history"]])


# --- another noise draw ------------------------------------------------------------------------------------


def resimulated_pairs(data_config: lowdose_ct.CTDataConfig, seed: int, noise_seed: int, *,
                      progress: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The patients of ``lowdose_ct.build_dataset(data_config, seed)`` -- same phantoms -- with the photon noise
    drawn from ``noise_seed`` instead (patient ``i`` from ``(noise_seed, i)``). Through the store.

    This is how ``TrialSeeds.noise_seed`` becomes a source of randomness when a study asks for it.
    """
    if not isinstance(data_config, lowdose_ct.CTDataConfig):
        raise ValueError(f"data_config must be a CTDataConfig, got {type(data_config).__name__}")
    checks.seed(noise_seed, "noise_seed")
    c = data_config

    def compute() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if dryrun.active():  # same shapes as the data set, whose task tried the simulation: copy it
            dryrun.note("resimulated_pairs")
            return {pid: tuple(a.copy() for a in arrays)
                    for pid, arrays in lowdose_ct.build_dataset(c, seed, progress=False).items()}
        anatomy = lowdose_ct._patient_seeds(seed, c.n_patients)
        pairs = {}
        for index, (pid, (phantom_seed, _)) in enumerate(zip(lowdose_ct.patient_ids(c.n_patients), anatomy)):
            volume = phantoms.patient_volume(c.n, phantom_seed, c.slices_per_patient, contrast=c.contrast)
            noise = int(np.random.SeedSequence([int(noise_seed), index]).generate_state(1)[0])
            low, full = ct_physics.simulate_paired(volume, c.dose, noise, n_angles=c.n_angles, i0=c.i0, sigma_e=c.sigma_e)
            pairs[pid] = (low.astype(np.float32), full.astype(np.float32))
        return pairs

    return get_or_compute(NOISE_ENTRY, noise_key(c, seed, noise_seed), compute, progress=progress)


NOISE_ENTRY = "ct-dataset-noise"
"""The store entry of :func:`resimulated_pairs`."""


def noise_key(data_config: lowdose_ct.CTDataConfig, seed: int, noise_seed: int) -> dict[str, Any]:
    """The store key (config part) of :func:`resimulated_pairs` ``(data_config, seed, noise_seed)``."""
    return dataclasses.asdict(data_config) | {"seed": seed, "noise_seed": int(noise_seed)}
