"""The simulated cohorts of the k-space chapter: both vendors' patients and the ablation scans, through the store."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.core import dryrun
from glassbox.core.store import get_or_compute
from glassbox.data.mri import (
    MRIDataset,
    mix,
    simulate_vendor,
)
from glassbox.studies.kspace.config import ABLATIONS, TRAIN_VENDORS, KSpaceConfig

# --------------------------------------------------------------------------------------------
# Data


@dataclass
class ExperimentData:
    """Training cohorts of vendors A and B, and the test sets: ``"A"``, ``"B"`` and the ablation scans of A's
    test patients (keys of :data:`ABLATIONS`). Training and test cohorts are different patients."""

    train: dict[str, MRIDataset]
    test: dict[str, MRIDataset]

    def cohort(self, test_name: str) -> str:
        """The patients a test set holds: ``"B"`` for B's test set, ``"A"`` for A's and its ablation scans."""
        return "B" if test_name == "B" else "A"


def cohort_seed(seed: int, vendor: str, cohort: str) -> int:
    """The simulation seed of one vendor's training or test cohort."""
    entropy = [int(seed), 100 + TRAIN_VENDORS.index(vendor), ("train", "test").index(cohort)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def simulate_data(cfg: KSpaceConfig, seed: int) -> ExperimentData:
    """Simulate both vendors' cohorts and the ablation scans of A's test patients (same seed = same patients).

    In a dry run (:mod:`glassbox.core.dryrun`) each cohort simulates its first chunk of patients and the
    ablation scans are copies of A's test set: the shapes and memory of the real data, none of its physics."""
    anatomy, vendors = cfg.anatomy, cfg.vendors
    train = {v: simulate_vendor(cfg.n_train, vendors[v], cohort_seed(seed, v, "train"), anatomy) for v in TRAIN_VENDORS}
    test = {v: simulate_vendor(cfg.n_test, vendors[v], cohort_seed(seed, v, "test"), anatomy) for v in TRAIN_VENDORS}
    for name, factors in ABLATIONS.items():
        if dryrun.active():
            dryrun.note("kspace ablation scans")
            test[name] = dataclasses.replace(test["A"], images=test["A"].images.copy(), vendor=name)
            continue
        vendor = mix(vendors["A"], vendors["B"], factors, name=name)
        test[name] = simulate_vendor(cfg.n_test, vendor, cohort_seed(seed, "A", "test"), anatomy)
    return ExperimentData(train, test)


def _data_key(cfg: KSpaceConfig, seed: int) -> dict[str, Any]:
    return {"size": cfg.size, "n_train": cfg.n_train, "n_test": cfg.n_test,
            "slices_per_patient": cfg.slices_per_patient, "ablations": ABLATIONS, "seed": int(seed),
            "vendors": {v: dataclasses.asdict(vendor) for v, vendor in cfg.vendors.items()}}


def load_data(cfg: KSpaceConfig, seed: int, progress: bool = True) -> ExperimentData:
    """:func:`simulate_data` through the store."""
    return get_or_compute("kspace_data", _data_key(cfg, seed), lambda: simulate_data(cfg, seed), seed=seed,
                          progress=progress)
