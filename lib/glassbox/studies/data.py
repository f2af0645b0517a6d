"""The data chapter: the simulated low-dose CT data set every CT chapter shares, per profile.

The chapter's configuration *is* the CT data configuration of :mod:`glassbox.data.lowdose_ct`
(:data:`~glassbox.data.lowdose_ct.DATA_PROFILES`); the other CT studies start from the same tables.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES, CTDataConfig

PROFILES: dict[str, CTDataConfig] = DATA_PROFILES


def plan(config: CTDataConfig, *, seed: int, device: Any = None, data_dir: Path | str | None = None) -> list[Task]:
    """The chapter's one expensive artifact: the simulated data set (none with real data, which is read as it is).

    The task makes the chapter's own call, :func:`glassbox.data.lowdose_ct.get_pairs` with simulated data,
    i.e. :func:`~glassbox.data.lowdose_ct.build_dataset` through the store. ``device`` is not used (the
    simulation runs on the CPU).
    """
    if not isinstance(config, CTDataConfig):
        raise ValueError(f"config must be a CTDataConfig (a PROFILES entry), got {type(config).__name__}")
    if data_dir is not None:
        return []
    entry, key_config = lowdose_ct.dataset_entry(config, seed)
    label = (f"simulated CT data: {config.n_patients} patients x {config.slices_per_patient} slices of "
             f"{config.n}x{config.n}, seed {seed}")
    return [Task(entry=entry, config=key_config, label=label,
                 run=partial(lowdose_ct.build_dataset, config, seed, progress=False))]
