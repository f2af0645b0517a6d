"""Paired (low-dose, full-dose) CT slices: simulation, patient-level splits, patches and a torch Dataset.

The data format is one mapping, shared with the DICOM loader (:mod:`glassbox.data.dicom`) so downstream code
serves simulated and real data alike::

    {patient_id: (low (S, n, n) float32 HU, full (S, n, n) float32 HU)}

:func:`simulate_patients` fills it from random abdominal phantoms (:mod:`glassbox.data.phantoms`): patient
``i`` of ``seed`` is always the same anatomy (it does not depend on ``n_patients`` or ``n``), and the
two images of a pair come from one simulated scan, the low-dose counts being a binomial thinning of the
full-dose counts (:func:`glassbox.data.ct_physics.simulate_paired`) -- the way the Mayo Grand Challenge quarter-dose
data was made from the full-dose projections. The full-dose image is therefore noisy too, as the
Grand Challenge targets are.

**One normalisation for networks:** ``x = (HU + 1000) / 1000``, i.e. ``mu / mu_water`` -- air 0,
water 1, soft tissue 1.0-1.1, dense bone ~2-2.5. It is the quantity the scanner measures, it keeps
soft-tissue contrast at O(0.01-0.1) (the popular [-1024, 3072] HU window maps 4096 HU to [0, 1] and
squeezes all soft tissue into 0.25 +- 0.01, four times smaller), one unit is exactly 1000 HU (an MSE
in network units times 1e6 is an MSE in HU^2), and it is affine without clipping, so
:func:`denormalize` inverts it exactly (noise below -1000 HU survives the round trip).

Splits are by patient (:func:`split_patients`), never by slice: slices of one patient are strongly
correlated and must not sit on both sides of a train/test boundary.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from glassbox.core import checks, dryrun
from glassbox.core.progress import track
from glassbox.core.store import get_or_compute
from glassbox.data import ct_physics, phantoms
from glassbox.data.dicom import load_pairs

__all__ = [
    "HU_OFFSET",
    "HU_SCALE",
    "SPLITS",
    "CTDataConfig",
    "Pairs",
    "pairs_fingerprint",
    "normalize",
    "denormalize",
    "patient_ids",
    "simulate_patients",
    "split_patients",
    "patch_positions",
    "crop",
    "random_patches",
    "grid_tiles",
    "noise_free_volumes",
    "PairedCTDataset",
    "build_dataset",
    "rescan_patients",
    "dataset_entry",
    "get_pairs",
    "make_datasets",
]


HU_OFFSET = 1000.0


HU_SCALE = 1000.0


SPLITS = ("train", "val", "test")


FOREGROUND_HU = -500.0
"""A pixel is 'body' (foreground) for patch selection when its full-dose value is above this."""


Pairs = dict[str, tuple[np.ndarray, np.ndarray]]


def normalize(hu: np.ndarray | torch.Tensor | float):
    """HU to network units ``(HU + 1000) / 1000`` (= mu / mu_water; see the module docstring)."""
    return (hu + HU_OFFSET) / HU_SCALE


def denormalize(x: np.ndarray | torch.Tensor | float):
    """Network units back to HU; the exact inverse of :func:`normalize`."""
    return x * HU_SCALE - HU_OFFSET


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(fractions)
    if len(values) != 3 or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and math.isfinite(f)
                                   and f >= 0 for f in values):
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), got {fractions!r}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1, got {fractions!r} (sum {sum(values)})")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class CTDataConfig:
    """Knobs of the simulated paired data set (``None`` = the :mod:`glassbox.data.ct_physics` default for ``n``)."""

    n: int = 64
    n_angles: int | None = None
    n_patients: int = 10
    slices_per_patient: int = 8
    dose: float = 0.25
    i0: float | None = None
    sigma_e: float = 0.0
    contrast: bool = False
    patch_size: int | None = None
    patches_per_slice: int = 4
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        ct_physics._check_n(self.n)
        if self.n_angles is not None:
            ct_physics._check_n_angles(self.n_angles)
        checks.integer(self.n_patients, "n_patients")
        checks.integer(self.slices_per_patient, "slices_per_patient")
        ct_physics._check_dose(self.dose)
        if self.i0 is not None:
            checks.positive_number(self.i0, "i0")
        checks.positive_number(self.sigma_e, "sigma_e", allow_zero=True)
        if self.patch_size is not None:
            checks.integer(self.patch_size, "patch_size", minimum=2)
            if self.patch_size > self.n:
                raise ValueError(f"patch_size ({self.patch_size}) must be at most n ({self.n})")
        checks.integer(self.patches_per_slice, "patches_per_slice")
        _check_fractions(self.split_fractions)


def patient_ids(n_patients: int) -> list[str]:
    """The ids of simulated patients: ``S000``, ``S001``, ..."""
    return [f"S{i:03d}" for i in range(checks.integer(n_patients, "n_patients"))]


def _patient_seeds(seed: int, n_patients: int) -> list[tuple[int, int]]:
    """(phantom seed, noise seed) of each patient; patient ``i`` depends only on ``(seed, i)``."""
    checks.seed(seed)
    children = np.random.SeedSequence(int(seed)).spawn(n_patients)
    return [tuple(int(v) for v in child.generate_state(2)) for child in children]


def simulate_patients(n: int, n_patients: int, slices_per_patient: int, dose: float = 0.25, seed: int = 0, *,
                      n_angles: int | None = None, i0: float | None = None, sigma_e: float = 0.0,
                      contrast: bool = False, progress: bool = False) -> Pairs:
    """Simulate ``{id: (low (S, n, n), full (S, n, n))}`` float32 HU pairs for ``n_patients`` phantoms."""
    n = ct_physics._check_n(n)
    n_patients = checks.integer(n_patients, "n_patients")
    slices = checks.integer(slices_per_patient, "slices_per_patient")
    dose = ct_physics._check_dose(dose)
    seeds = _patient_seeds(seed, n_patients)
    ids = patient_ids(n_patients)
    iterator: Any = zip(ids, seeds)
    if progress:
        iterator = track(iterator, f"simulating {n}x{n} patients", total=n_patients, unit="patient")
    pairs: Pairs = {}
    for pid, (phantom_seed, noise_seed) in iterator:
        if pairs and dryrun.active():  # a dry run simulates one patient; the rest are copies (same shapes, memory)
            dryrun.note("simulate_patients")
            pairs[pid] = tuple(a.copy() for a in next(iter(pairs.values())))
            continue
        volume = phantoms.patient_volume(n, phantom_seed, slices, contrast=contrast)
        low, full = ct_physics.simulate_paired(volume, dose, noise_seed, n_angles=n_angles, i0=i0, sigma_e=sigma_e)
        pairs[pid] = (low.astype(np.float32), full.astype(np.float32))
    return pairs


def rescan_patients(config: CTDataConfig, seed: int, ids: Sequence[str], stream: int = 1) -> Pairs:
    """Simulated patients ``ids`` of ``(config, seed)`` scanned once more: the same anatomy, dose and scanner, new
    noise (drawn from ``(patient noise seed, stream)``; ``stream`` 0 would be the original scan).

    Two scans of one object with independent noise give its noise alone, ``(a - b) / sqrt(2)``, free of anatomy
    (the noise power spectrum's difference method, :mod:`glassbox.measure.noise_power`).
    """
    if not isinstance(config, CTDataConfig):
        raise ValueError(f"config must be a CTDataConfig, got {type(config).__name__}")
    stream = checks.integer(stream, "stream")
    known = patient_ids(config.n_patients)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"patient ids {unknown[:5]} are not simulated patients of this config (S000..S"
                         f"{config.n_patients - 1:03d})")
    if dryrun.active():  # a dry run scans nobody again: copies of the stored first scans (same shapes, no physics)
        dryrun.note("rescan_patients")
        first = build_dataset(config, seed, progress=False)
        return {pid: (first[pid][0].copy(), first[pid][1].copy()) for pid in ids}
    seeds = _patient_seeds(seed, config.n_patients)
    pairs: Pairs = {}
    for pid in ids:
        phantom_seed, noise_seed = seeds[known.index(pid)]
        volume = phantoms.patient_volume(config.n, phantom_seed, config.slices_per_patient, contrast=config.contrast)
        new_noise = int(np.random.SeedSequence([noise_seed, stream]).generate_state(1)[0])
        low, full = ct_physics.simulate_paired(volume, config.dose, new_noise, n_angles=config.n_angles,
                                               i0=config.i0, sigma_e=config.sigma_e)
        pairs[pid] = (low.astype(np.float32), full.astype(np.float32))
    return pairs


def dataset_entry(config: CTDataConfig, seed: int = 0) -> tuple[str, dict[str, Any]]:
    """``(name, config)`` of the store entry that :func:`build_dataset` reads and writes (a grid task plans it)."""
    return "ct-dataset", asdict(config) | {"seed": seed}


def build_dataset(config: CTDataConfig, seed: int = 0, *, root: Path | None = None, progress: bool = True) -> Pairs:
    """The simulated pairs of ``config``, from the artifact store (computed once, then loaded)."""

    if not isinstance(config, CTDataConfig):
        raise ValueError(f"config must be a CTDataConfig, got {type(config).__name__}")

    def compute() -> Pairs:
        return simulate_patients(config.n, config.n_patients, config.slices_per_patient, config.dose, seed,
                                 n_angles=config.n_angles, i0=config.i0, sigma_e=config.sigma_e,
                                 contrast=config.contrast, progress=progress)

    return get_or_compute(*dataset_entry(config, seed), compute, root=root, progress=progress)


def get_pairs(config: CTDataConfig, seed: int = 0, data_dir: Path | str | None = None, *,
              progress: bool = True, **dicom_options: Any) -> Pairs:
    """The chapter's paired slices: simulated (``data_dir=None``) or read from a real DICOM tree.

    One downstream path serves both: real Mayo / TCIA trees load through :func:`glassbox.data.dicom.load_pairs`
    into the same ``{patient: (low, full)}`` mapping the simulator returns.
    """
    if data_dir is None:
        return build_dataset(config, seed, progress=progress)

    return load_pairs(data_dir, **dicom_options)


# --- splits ---------------------------------------------------------------------------------------------------

def pairs_fingerprint(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """SHA-256 (24 hex digits) of the patient ids and every pixel (as float32): the data's identity in store keys.

    Content, not path: the same slices read from another folder give the same fingerprint, and any changed
    pixel (a replaced file, another rescale) a different one. Every store key that depends on real data
    (``data_dir``) holds it, so stale models are never served for changed files.
    """
    if not isinstance(pairs, Mapping) or not pairs:
        raise ValueError("pairs must be a non-empty mapping {patient_id: (low, full)} of HU arrays")
    digest = hashlib.sha256()
    for pid in sorted(pairs):
        value = pairs[pid]
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(f"pairs[{pid!r}] must be a (low, full) tuple of arrays")
        digest.update(str(pid).encode() + b"\0")
        for array in value:
            array = np.ascontiguousarray(array, dtype=np.float32)
            digest.update(repr(array.shape).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:24]


def split_patients(ids: Sequence[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
                   ) -> dict[str, list[str]]:
    """Deterministic patient-level ``{"train", "val", "test"}`` split; no patient in two splits.

    The result depends on the *set* of ids and ``seed``, not on their order. Sizes are the fractions
    rounded by largest remainder, and every split with a positive fraction gets at least one patient
    (an error if there are fewer patients than such splits).
    """
    fractions = _check_fractions(fractions)
    ids = list(ids)
    if not all(isinstance(i, str) for i in ids):
        raise ValueError("ids must be strings (patient ids)")
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"ids must be unique; duplicated: {duplicates[:5]}")
    needed = sum(f > 0 for f in fractions)
    if len(ids) < needed:
        raise ValueError(f"need at least {needed} patients to fill the splits with fractions {fractions}, "
                         f"got {len(ids)}")
    checks.seed(seed)
    total = len(ids)
    exact = [f * total for f in fractions]
    counts = [math.floor(e) for e in exact]
    for k in sorted(range(3), key=lambda k: exact[k] - counts[k], reverse=True)[: total - sum(counts)]:
        counts[k] += 1
    for k in range(3):  # a split that was asked for must not be empty
        if fractions[k] > 0 and counts[k] == 0:
            counts[max(range(3), key=lambda j: counts[j])] -= 1
            counts[k] = 1
    order = np.random.default_rng(int(seed)).permutation(sorted(ids))
    bounds = np.cumsum([0, *counts])
    return {name: sorted(str(i) for i in order[bounds[k]:bounds[k + 1]]) for k, name in enumerate(SPLITS)}


def patch_positions(reference: np.ndarray, patch_size: int, n_patches: int, rng: np.random.Generator, *,
                    min_foreground: float = 0.0) -> np.ndarray:
    """``(n_patches, 3)`` int array of ``(slice, row, column)`` corners of random square patches of a stack.

    Corners are uniform over all slices and valid positions; with ``min_foreground > 0`` a patch is kept
    only when at least that fraction of its ``reference`` pixels is body (above -500 HU). Which image
    decides is the caller's: pass a noise-free one (:func:`noise_free_volumes`) and the positions do not
    depend on the noise draw.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    reference = np.asarray(reference)
    if reference.ndim == 2:
        reference = reference[None]
    if reference.ndim != 3 or reference.shape[0] == 0:
        raise ValueError(f"reference must be an (S, n, n) or (n, n) array, got shape {reference.shape}")
    size = checks.integer(patch_size, "patch_size", minimum=2)
    n_patches = checks.integer(n_patches, "n_patches")
    height, width = reference.shape[1:]
    if size > min(height, width):
        raise ValueError(f"patch_size ({size}) is larger than the slices ({height} x {width})")
    if not 0.0 <= min_foreground <= 1.0:
        raise ValueError(f"min_foreground must be in [0, 1], got {min_foreground}")
    chosen: list[tuple[int, int, int]] = []
    for _ in range(100):
        candidates = np.stack([rng.integers(0, reference.shape[0], 4 * n_patches),
                               rng.integers(0, height - size + 1, 4 * n_patches),
                               rng.integers(0, width - size + 1, 4 * n_patches)], axis=1)
        for s, r, c in candidates:
            if min_foreground > 0 and np.mean(reference[s, r:r + size, c:c + size] > FOREGROUND_HU) < min_foreground:
                continue
            chosen.append((int(s), int(r), int(c)))
            if len(chosen) == n_patches:
                break
        if len(chosen) == n_patches:
            break
    else:
        raise ValueError(f"could not find {n_patches} patches of {size} px with at least {min_foreground:.0%} "
                         "body pixels; lower min_foreground or patch_size")
    return np.array(chosen, dtype=np.int64).reshape(-1, 3)


def crop(stack: np.ndarray, positions: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` float32 crops of an ``(S, n, n)`` stack at ``(slice, row, column)`` corners."""
    stack = np.asarray(stack)
    stack = stack[None] if stack.ndim == 2 else stack
    return np.stack([stack[s, r:r + size, c:c + size] for s, r, c in np.asarray(positions)]).astype(np.float32)


def random_patches(low: np.ndarray, full: np.ndarray, patch_size: int, n_patches: int, rng: np.random.Generator,
                   *, min_foreground: float = 0.0, reference: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``n_patches`` co-located random square patches from slice stacks ``(S, n, n)`` (or one ``(n, n)`` slice).

    Positions come from :func:`patch_positions` with the foreground test on ``reference`` (default: the
    full-dose stack), so training does not waste its time on air.
    """
    low, full = np.asarray(low), np.asarray(full)
    if low.shape != full.shape:
        raise ValueError(f"low and full must have the same shape, got {low.shape} and {full.shape}")
    if low.ndim == 2:
        low, full = low[None], full[None]
    if low.ndim != 3 or low.shape[0] == 0:
        raise ValueError(f"low and full must be (S, n, n) or (n, n) arrays, got shape {low.shape}")
    reference = full if reference is None else np.asarray(reference)
    if reference.reshape(-1, *reference.shape[-2:]).shape != low.shape:
        raise ValueError(f"reference must have the shape of the stacks {low.shape}, got {reference.shape}")
    positions = patch_positions(reference, patch_size, n_patches, rng, min_foreground=min_foreground)
    return crop(low, positions, patch_size), crop(full, positions, patch_size)


def grid_tiles(reference: np.ndarray, size: int, *, min_foreground: float = 0.0, max_tiles: int | None = None,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Corners ``(slice, row, column)`` of the non-overlapping ``size`` x ``size`` tiles of a stack that hold at
    least ``min_foreground`` body pixels of ``reference``; at most ``max_tiles`` of them, drawn without
    replacement with ``rng`` (then sorted). Unlike random patches, no two tiles share a pixel."""
    reference = np.asarray(reference)
    reference = reference[None] if reference.ndim == 2 else reference
    if reference.ndim != 3:
        raise ValueError(f"reference must be an (S, n, n) or (n, n) array, got shape {reference.shape}")
    size = checks.integer(size, "size", minimum=2)
    if size > min(reference.shape[1:]):
        raise ValueError(f"tile size ({size}) is larger than the slices {reference.shape[1:]}")
    corners = [(s, r, c) for s in range(reference.shape[0])
               for r in range(0, reference.shape[1] - size + 1, size)
               for c in range(0, reference.shape[2] - size + 1, size)
               if np.mean(reference[s, r:r + size, c:c + size] > FOREGROUND_HU) >= min_foreground]
    tiles = np.array(corners, dtype=np.int64).reshape(-1, 3)
    if max_tiles is not None and len(tiles) > checks.integer(max_tiles, "max_tiles"):
        if rng is None:
            raise ValueError("max_tiles is below the number of tiles, so rng (which tiles to keep) is required")
        tiles = tiles[np.sort(rng.choice(len(tiles), size=max_tiles, replace=False))]
    return tiles


def noise_free_volumes(config: CTDataConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """``{patient: (S, n, n) float32 HU}``: the phantoms behind :func:`build_dataset` ``(config, seed)``, before
    any photon noise -- the image to decide patch positions on when the noise is redrawn."""
    if not isinstance(config, CTDataConfig):
        raise ValueError(f"config must be a CTDataConfig, got {type(config).__name__}")
    seeds = _patient_seeds(seed, config.n_patients)
    return {pid: phantoms.patient_volume(config.n, phantom_seed, config.slices_per_patient,
                                         contrast=config.contrast).astype(np.float32)
            for pid, (phantom_seed, _) in zip(patient_ids(config.n_patients), seeds)}


class PairedCTDataset(Dataset):
    """``(low, full)`` pairs of normalised ``(1, h, w)`` float32 tensors: whole slices or fixed patches.

    ``pairs`` is the mapping of :func:`simulate_patients` / the DICOM loader; ``ids`` picks patients (a
    split). With ``patch_size`` set, ``patches_per_slice * S`` patches per patient are drawn once, at
    construction, from a generator derived from ``seed`` and the patient id, so an epoch sees the
    same patches every time and the set does not depend on which other patients are present.

    ``patches_per_patient`` (instead of ``patches_per_slice``) draws the same number of patches from every
    patient, whatever its number of slices: uniform sampling of the set then draws every patient with equal
    probability -- the patient-weighted sampling of Eulig et al. (ldct-benchmark weights each slice by
    1 / the number of slices of its patient). ``patient_of`` holds each item's patient index in ``ids``.
    """

    def __init__(self, pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], ids: Sequence[str] | None = None, *,
                 patch_size: int | None = None, patches_per_slice: int = 4, seed: int = 0,
                 min_foreground: float = 0.25, patches_per_patient: int | None = None):
        ids = list(pairs) if ids is None else list(ids)
        missing = [i for i in ids if i not in pairs]
        if missing:
            raise ValueError(f"patient ids not in pairs: {missing[:5]}")
        if not ids:
            raise ValueError("no patients selected (ids is empty)")
        if patches_per_patient is not None:
            patches_per_patient = checks.integer(patches_per_patient, "patches_per_patient")
            if patch_size is None:
                raise ValueError("patches_per_patient needs patch_size (whole slices cannot be balanced by patient)")
        lows, fulls, owners = [], [], []
        for index, pid in enumerate(ids):
            low, full = (np.asarray(a, dtype=np.float32) for a in pairs[pid])
            if low.shape != full.shape or low.ndim != 3:
                raise ValueError(f"patient {pid!r}: low and full must both be (S, n, n), got {low.shape}, {full.shape}")
            if patch_size is not None:
                entropy = [int(seed), *pid.encode()]
                rng = np.random.default_rng(np.random.SeedSequence(entropy))
                count = patches_per_patient if patches_per_patient is not None else patches_per_slice * low.shape[0]
                low, full = random_patches(low, full, patch_size, count, rng, min_foreground=min_foreground)
            lows.append(low)
            fulls.append(full)
            owners.append(np.full(low.shape[0], index))
        shapes = {a.shape[1:] for a in lows}
        if len(shapes) > 1:
            raise ValueError(f"patients have different slice sizes {sorted(shapes)}; use patch_size to mix them")
        self.ids = ids
        self.patient_of = torch.from_numpy(np.concatenate(owners))
        self.low = torch.from_numpy(normalize(np.concatenate(lows))[:, None].astype(np.float32))
        self.full = torch.from_numpy(normalize(np.concatenate(fulls))[:, None].astype(np.float32))

    def __len__(self) -> int:
        return self.low.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.low[index], self.full[index]


def make_datasets(pairs: Mapping[str, tuple[np.ndarray, np.ndarray]], config: CTDataConfig, seed: int = 0
                  ) -> dict[str, PairedCTDataset]:
    """Train / val / test datasets: patient split by ``config.split_fractions``; patches (if
    ``config.patch_size``) for training only, whole slices for validation and testing."""
    splits = split_patients(list(pairs), config.split_fractions, seed)
    return {name: PairedCTDataset(pairs, ids, patch_size=config.patch_size if name == "train" else None,
                                  patches_per_slice=config.patches_per_slice, seed=seed)
            for name, ids in splits.items() if ids}


DATA_PROFILES: dict[str, CTDataConfig] = {
    # seconds: the smallest set that still has a patient in each split
    "smoke": CTDataConfig(n=64, n_patients=3, slices_per_patient=2, patch_size=32, patches_per_slice=2),
    # minutes on a 2-core CPU (simulation ~15 s; training is the chapter's business)
    "quick": CTDataConfig(n=128, n_patients=20, slices_per_patient=12, patch_size=64, patches_per_slice=8),
    # GPU: 30 patients as the Grand Challenge, 256 x 256 (0.78 mm x 2 pixels), 48 slices each
    "paper": CTDataConfig(n=256, n_patients=30, slices_per_patient=48, patch_size=64, patches_per_slice=16),
}
