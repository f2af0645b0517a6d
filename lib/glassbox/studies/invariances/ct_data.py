"""The invariances chapter's CT data: simulated (or real) patients, their splits, rescans and test patches."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from glassbox.core import checks as argcheck
from glassbox.core.store import get_or_compute
from glassbox.data import lowdose_ct, phantoms
from glassbox.data.lowdose_ct import PairedCTDataset
from glassbox.measure import invariance_spread as spread
from glassbox.models.common import InvarianceError
from glassbox.studies.invariances.config import WINDOW_HU, InvarianceConfig

# --- data --------------------------------------------------------------------------------------------------


@dataclass
class ChapterData:
    """The chapter's images: patient split, training/validation/test patches, test slices, analysed patches and
    (simulated data only) a second scan of the test patients for noise power spectra."""

    sets: dict[str, PairedCTDataset]
    splits: dict[str, list[str]]
    key: dict[str, Any]
    test_low: Tensor
    test_full: Tensor
    rescan: dict[str, tuple[np.ndarray, np.ndarray]] | None
    pixel_mm: float | None

    @property
    def heldout(self) -> tuple[Tensor, Tensor]:
        return self.sets["val"].low, self.sets["val"].full


def data_key(config: InvarianceConfig, seed: int, data_dir: str | Path | None = None, *,
             pairs: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """What identifies the chapter's training data (part of every store key); ``pairs`` come from
    :func:`glassbox.data.lowdose_ct.get_pairs` ``(config.data, seed, data_dir)``.

    The key holds the content fingerprint of ``pairs`` (:func:`glassbox.data.lowdose_ct.pairs_fingerprint`), never
    the folder's path: changed DICOM files give new keys (no stale models), a moved folder the same ones. With a
    ``data_dir``, ``pairs`` are required; simulated data are identified by their configuration and seed.
    """
    key = {"data": config.data, "patch_size": config.patch_size, "patches_per_patient": config.patches_per_patient,
           "seed": seed}
    if data_dir is not None and pairs is None:
        raise InvarianceError(f"data_key: with data_dir={str(data_dir)!r}, pass pairs= (the slices read from it) "
                              "so that the store key holds their content, not the folder's path")
    if pairs is not None:
        key["pairs"] = lowdose_ct.pairs_fingerprint(pairs)
    return key


def _rescan_entry(config: InvarianceConfig, seed: int, ids: Sequence[str]) -> tuple[str, dict[str, Any]]:
    return "ct-rescan", {"data": config.data, "seed": seed, "ids": list(ids), "stream": 1}


def _rescan(config: InvarianceConfig, seed: int, ids: Sequence[str], progress: bool
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The test patients scanned a second time (simulated data only), through the store."""
    name, key = _rescan_entry(config, seed, ids)
    return get_or_compute(name, key, lambda: lowdose_ct.rescan_patients(config.data, seed, ids), seed=seed,
                          progress=progress)


def _splits(pairs: Mapping[str, Any], config: InvarianceConfig, seed: int) -> dict[str, list[str]]:
    splits = lowdose_ct.split_patients(list(pairs), config.data.split_fractions, seed)
    missing = [name for name in lowdose_ct.SPLITS if not splits[name]]
    if missing:
        raise InvarianceError(f"the data have too few patients for the splits {missing}; add patients")
    return splits


def pick_test_patches(dataset: PairedCTDataset, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` test patches with the most structure (std of the windowed full-dose patch): (low, full).

    Homogeneous patches show little; the choice depends only on the full-dose image, not on any network.
    """
    n = argcheck.integer(n, "n", error=InvarianceError)
    if n > len(dataset):
        raise InvarianceError(f"asked for {n} test patches but the test set has {len(dataset)}")
    structure = spread.window_hu(dataset.full, WINDOW_HU).flatten(1).std(1)
    order = torch.argsort(structure, descending=True, stable=True)[:n]
    return dataset.low[order], dataset.full[order]


def prepare_data(config: InvarianceConfig, *, seed: int = 0, data_dir: str | Path | None = None,
                 progress: bool = True) -> ChapterData:
    """Pairs (simulated through the store, or read from ``data_dir``), the patient split, patches and test set."""
    pairs = lowdose_ct.get_pairs(config.data, seed, data_dir, progress=progress)
    splits = _splits(pairs, config, seed)
    sets = {name: PairedCTDataset(pairs, ids, patch_size=config.patch_size, seed=seed,
                                  patches_per_patient=config.patches_per_patient) for name, ids in splits.items()}
    sets["test_slices"] = PairedCTDataset(pairs, splits["test"])
    test_low, test_full = pick_test_patches(sets["test"], config.n_test_patches)
    rescan, pixel = None, None
    if data_dir is None:
        rescan = _rescan(config, seed, splits["test"], progress)
        pixel = phantoms.pixel_mm(config.data.n)
    return ChapterData(sets=sets, splits=splits, key=data_key(config, seed, data_dir, pairs=None if data_dir is None else pairs), test_low=test_low,
                       test_full=test_full, rescan=rescan, pixel_mm=pixel)


def data_table(data: ChapterData) -> Any:
    """Patients, images and image size per split."""

    return pd.DataFrame({name: {"patients": len(d.ids), "images": len(d),
                                "size": f"{d.low.shape[-2]}x{d.low.shape[-1]}",
                                "patches per patient": (len(d) // len(d.ids)) if name != "test_slices" else "-"}
                         for name, d in data.sets.items()}).T
