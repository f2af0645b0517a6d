"""Tasks: the expensive artifacts of a chapter (trainings, feature extractions, simulations) as data.

Every study module exposes ``plan(config, *, seed, device, data_dir=None) -> list[Task]``: one task per
artifact its chapter computes through :func:`glassbox.core.store.get_or_compute`. A task's :attr:`Task.run`
makes *the same* ``get_or_compute`` call the chapter makes (same entry name, same config), so after a grid
has run every task, executing the chapter finds every artifact in the store and trains nothing. The grid
(``python -m glassbox.grid``) orders tasks by :attr:`Task.deps`, skips those already stored, and runs the rest
side by side; each task runs through :func:`execute` on a worker.

``plan()`` must be cheap (it runs on the machine that starts the grid): it names entries and configs and
builds ``run`` closures, it does not load data. A training loop that a task runs wraps its epoch loop and its
batch loop in :func:`glassbox.core.dryrun.steps`, so ``grid run --dry-run`` can try a profile in minutes.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glassbox.core import dryrun, repro
from glassbox.core.store import Store, key_of


@dataclass(frozen=True)
class Task:
    """One store entry of a chapter and how to compute it.

    ``entry`` and ``config`` are the ``name`` and ``config`` of the ``get_or_compute`` call that ``run``
    makes; ``deps`` are the :attr:`key` values of tasks whose entries ``run`` loads; ``gpu`` says the task
    wants a GPU when one is available.
    """

    entry: str
    config: Any
    run: Callable[[], Any] = field(compare=False)
    label: str = ""
    deps: tuple[str, ...] = ()
    gpu: bool = False

    @property
    def key(self) -> str:
        """The store key of this task's entry (the same as ``get_or_compute`` computes)."""
        return key_of(self.entry, self.config)


# --- running one task (on a grid worker, or in this process) -------------------------------------------


_ATTEMPT = re.compile(r"^=== attempt \d+: ", re.MULTILINE)


class PlanMismatchError(RuntimeError):
    """A task ran but left no entry under its key: its ``run`` and its ``entry``/``config`` disagree."""


def is_stored(store: Store, task: Task, *, verify: bool = True) -> bool:
    """True when the task's entry is in ``store``; with ``verify``, when its payload also matches its checksum."""
    payload, meta = store.paths(task.entry, task.key)
    if not (meta.is_file() and payload.is_file()):
        return False
    if not verify:
        return True
    try:
        recorded = json.loads(meta.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    digest = hashlib.sha256()
    with open(payload, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == recorded


def log_path(log_dir: str | os.PathLike, task: Task) -> Path:
    """The log file of ``task`` in ``log_dir`` (every attempt appends to it)."""
    return Path(log_dir) / f"{task.entry}-{task.key}.log"


def reset_peak_memory() -> None:
    """Start a new peak-RSS measurement of this process (Linux: VmHWM is reset through ``clear_refs``)."""
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")


def peak_memory_mb() -> float:
    """Peak resident memory of this process since :func:`reset_peak_memory` (MiB; else since it started)."""
    with contextlib.suppress(OSError):
        match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cap_memory(limit_bytes: int) -> None:
    """Make allocations beyond ``limit_bytes`` fail in this process: an error naming the allocation, instead of
    the machine running out of memory.

    Uses ``RLIMIT_DATA`` (heap and private anonymous mappings): NumPy raises ``MemoryError``, torch a
    ``RuntimeError`` ("can't allocate memory"). For CPU processes only (the CUDA driver maps large areas).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = int(limit_bytes) if hard == resource.RLIM_INFINITY else min(int(limit_bytes), hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def execute(task: Task, *dependencies: Any, store_root: str, seed: int, log_dir: str, dry: bool = False,
            threads: int = repro.THREADS, memory_cap: int | None = None) -> dict[str, Any]:
    """Run ``task`` in this process -- a grid worker, or the caller for a serial run -- and describe the run.

    As a chapter would: the store is ``store_root`` (``GLASSBOX_STORE``), ``threads`` are pinned, everything is
    seeded with ``seed`` with deterministic algorithms on. The task's output and any traceback go to its log
    in ``log_dir``; with ``dry`` it runs inside :func:`glassbox.core.dryrun.dry_run`; with ``memory_cap``
    (bytes) this process's memory is capped first (:func:`cap_memory`). Afterwards the task's entry must be in
    the store under its key, else :class:`PlanMismatchError`. ``dependencies`` are the results of the tasks
    this one depends on (the grid passes them so that Dask orders the tasks; their values are not used).
    Returns ``{key, seconds, peak_mb, worker, attempt, cut, found}`` (``cut``: the loops a dry run cut short;
    ``found``: the entry was already in the store when the task started, so it ran nothing).
    """
    os.environ["GLASSBOX_STORE"] = str(store_root)
    repro.pin_threads(threads)
    repro.seed_everything(seed)
    if memory_cap:
        cap_memory(memory_cap)
    log = log_path(log_dir, task)
    log.parent.mkdir(parents=True, exist_ok=True)
    attempt = 1 + (len(_ATTEMPT.findall(log.read_text(errors="replace"))) if log.exists() else 0)
    worker = f"{socket.gethostname()} pid {os.getpid()}"
    reset_peak_memory()
    began = time.perf_counter()
    with open(log, "a") as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        print(f"\n=== attempt {attempt}: {task.entry} {task.key} ({task.label}) on {worker}, "
              f"{'dry run, ' if dry else ''}seed {seed}, store {store_root}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
              flush=True)
        try:
            # another task of the same run may have stored this entry on its way (a shared data set): then
            # run() is a store hit and a dry run has no loop to cut
            found = is_stored(Store(store_root), task, verify=False)
            with dryrun.dry_run() if dry else contextlib.nullcontext() as cut:
                task.run()
            if not is_stored(Store(store_root), task, verify=False):
                raise PlanMismatchError(
                    f"task {task.entry} ({task.label}) ran but left no entry under its key {task.key} in "
                    f"{store_root}: its run() does not make the get_or_compute call its entry and config describe, "
                    f"or this process runs other glassbox source (fingerprint {repro.library_fingerprint()})")
        except BaseException:
            traceback.print_exc()
            print(f"=== attempt {attempt} failed after {time.perf_counter() - began:.1f} s, "
                  f"peak memory {peak_memory_mb():.0f} MiB", flush=True)
            raise
        seconds = time.perf_counter() - began
        peak = peak_memory_mb()
        print(f"=== attempt {attempt} done in {seconds:.1f} s, peak memory {peak:.0f} MiB", flush=True)
    return {"key": task.key, "seconds": seconds, "peak_mb": peak, "worker": worker, "attempt": attempt,
            "cut": dict(cut.cut) if dry else {}, "found": found}
