"""A small synthetic plan for the grid tests, built from library pieces.

The data chapter's simulated data set (its own plan), then ``trials`` tiny U-Net denoisers trained on it with
:func:`glassbox.training.loop.fit` (checkpoints every epoch, so a killed worker's retry resumes). Each training
task depends on the data task and loads the data set from the store, as a chapter's trainings do.
``pause_s`` sleeps after every epoch -- it changes no number -- so a test can kill a worker mid-task.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from glassbox.core.paths import store_dir
from glassbox.core.store import get_or_compute, key_of
from glassbox.core.tasks import Task
from glassbox.data import lowdose_ct
from glassbox.studies import data as data_study
from glassbox.training.loop import fit, trial_seeds
from glassbox.training.unet_denoiser import DenoiserConfig, build_model, prepare_data

ENTRY = "grid-test-denoiser"


@dataclass(frozen=True)
class TinyTraining:
    denoiser: DenoiserConfig = field(default_factory=lambda: DenoiserConfig(
        depth=5, width=0.125, patch_size=16, n_patches=24, epochs=6, batch_size=4, lr=1e-3))
    pause_s: float = 0.0


def model_entry(training: TinyTraining, data_config: lowdose_ct.CTDataConfig, seed: int, trial: int
                ) -> tuple[str, dict[str, Any]]:
    return ENTRY, {"denoiser": training.denoiser, "data": lowdose_ct.dataset_entry(data_config, seed)[1],
                   "trial": trial}


def train(training: TinyTraining, data_config: lowdose_ct.CTDataConfig, seed: int, trial: int) -> dict[str, Any]:
    """One tiny denoiser through the store (what a chapter would call)."""
    pairs = lowdose_ct.build_dataset(data_config, seed, progress=False)
    entry, key_config = model_entry(training, data_config, seed, trial)
    folder = store_dir() / "_checkpoints" / entry / key_of(entry, key_config)

    def compute() -> dict[str, Any]:
        config = training.denoiser
        data = prepare_data(config, pairs)
        seeds = trial_seeds("random", trial, seed)
        model = build_model(config, seeds.init_seed)
        recipe = config.train_config()

        def pause(_model: Any) -> dict[str, float]:
            time.sleep(training.pause_s)
            return {}

        history = fit(model, data.train, recipe.loss_fn(), epochs=config.epochs, batch_size=config.batch_size,
                      optimizer=recipe.optimizer(), data_seed=seeds.data_seed, val_fn=pause, checkpoint_dir=folder,
                      progress=False, fingerprint=dataclasses.asdict(config) | {"trial": trial})
        return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": history.epochs}

    return get_or_compute(entry, key_config, compute, seed=seed, progress=False)


def plan(data_config: lowdose_ct.CTDataConfig, *, seed: int = 0, trials: int = 2,
         training: TinyTraining = TinyTraining()) -> list[Task]:
    """The data chapter's task and ``trials`` trainings that depend on it."""
    data_tasks = data_study.plan(data_study.DataChapterConfig(data_config, noise_seeds=3), seed=seed)
    tasks = list(data_tasks)
    for trial in range(trials):
        entry, key_config = model_entry(training, data_config, seed, trial)
        tasks.append(Task(entry=entry, config=key_config, run=partial(train, training, data_config, seed, trial),
                          label=f"tiny U-Net, trial {trial}", deps=tuple(t.key for t in data_tasks)))
    return tasks


# --- small task bodies the grid tests send to workers -------------------------------------------------------


def fail() -> None:
    """A task body that fails after printing something (its log must show both)."""
    print("about to fail")
    raise ValueError("boom: a bad configuration")


def store_pid(entry: str, config: dict[str, Any], ready: str | None = None, runs: int = 2, hold_s: float = 0.0,
              size: int = 1) -> Any:
    """A task body that stores the id of the process that ran it (``size`` copies of it in an int32 tensor).

    With ``ready`` (a folder), computing starts only once ``runs`` files are there (each grid run drops one when
    its workers are up), then takes ``hold_s`` seconds: concurrent grid runs then write the same keys at once,
    and with a large ``size`` the writes take long enough to overlap.
    """
    import os

    import torch

    def compute() -> Any:
        deadline = time.monotonic() + 900
        while ready is not None and len(os.listdir(ready)) < runs and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(hold_s)
        return os.getpid() if size == 1 else torch.full((size,), os.getpid(), dtype=torch.int32)

    return get_or_compute(entry, config, compute, progress=False)


def allocate(entry: str, n_bytes: int) -> int:
    """A task body that needs ``n_bytes`` of memory at once."""
    import numpy as np

    return get_or_compute(entry, {"bytes": n_bytes}, lambda: int(np.ones(n_bytes, dtype=np.uint8).sum()),
                          progress=False)


def pid_probes(n: int, ready: str | None = None, hold_s: float = 0.0, size: int = 1) -> list[Task]:
    """``n`` quick tasks that store the id of the process that ran them: two writers of one key write different
    payloads, so a payload paired with the other writer's checksum is detected (see :func:`store_pid`)."""
    return [Task(entry="pid-probe", config={"i": i}, label=f"pid probe {i}",
                 run=partial(store_pid, "pid-probe", {"i": i}, ready, 2, hold_s, size)) for i in range(n)]
