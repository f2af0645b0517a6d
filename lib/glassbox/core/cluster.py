"""Where the grid's tasks run: a local Dask cluster, a Slurm cluster through dask-jobqueue, or a running scheduler.

:func:`open_client` is the one entry point (:mod:`glassbox.grid` calls it): a ``LocalCluster`` with one
single-threaded worker per core by default (GPU workers carry the Dask resource ``GPU``), a Slurm cluster
described by a small YAML file (:class:`SlurmConfig`), or a client of a scheduler that is already running.
The memory helpers size the workers, so that a task too large for the machine fails with a clear error.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import psutil
import torch
import yaml
from dask.utils import parse_bytes
from distributed import Client, LocalCluster

#: Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (``distributed.nanny.pre-spawn-environ``).
#: Setting it fixes glibc's mmap threshold at 128 KiB, so every tensor above that is mapped and unmapped at each
#: training step: measured on the 2-core machine, a training task then spent more than half of its CPU time in the
#: kernel on page faults (49 million of them in one worker) and ran at about half the speed of the same training
#: in a notebook. Local workers are started without it, as a notebook kernel runs.
TRIM_VARIABLE = "MALLOC_TRIM_THRESHOLD_"


def worker_malloc_as_in_a_kernel() -> None:
    """Start the nannies' workers of this process without Dask's ``MALLOC_TRIM_THRESHOLD_`` (see above)."""
    dask.config.set({f"distributed.nanny.pre-spawn-environ.{TRIM_VARIABLE}": None})


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def total_memory() -> int:
    """Physical memory of this machine (bytes)."""
    return int(psutil.virtual_memory().total)


def memory_per_worker(workers: int, *, dry_run: bool = False) -> int:
    """Default memory of each of ``workers`` local workers: the machine's memory shared among them; for a dry
    run no more than 90% of the memory available now (a dry run must fail cleanly, not push others out)."""
    share = total_memory() // workers
    if dry_run:
        share = min(share, int(0.9 * psutil.virtual_memory().available) // workers)
    return share


def parse_size(text: str | int | float | None) -> int | None:
    """``"12GiB"``, ``"12 GB"``, ``"8g"``, a number of bytes, or ``None``/``"auto"``/``"none"`` -> bytes or None."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "auto", "none")):
        return None
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not text > 0:
            raise ValueError(f"memory size must be positive, got {text!r}")
        return int(text)

    try:
        value = parse_bytes(str(text).strip())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot read memory size {text!r}; write e.g. '12GiB', '64GB' or '8000MB'") from exc
    if value <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return int(value)


def local_cluster(workers: int | None = None, *, gpu_workers: int = 0, memory_limit: int | None = None) -> Any:
    """A ``LocalCluster`` of ``workers`` processes with one thread each, no dashboard, on this machine only.

    The first ``gpu_workers`` of them offer the Dask resource ``GPU=1`` (on several GPUs each is given its own
    with ``CUDA_VISIBLE_DEVICES``); tasks that want a GPU run only there. ``memory_limit`` per worker (bytes;
    default: the machine's memory divided among the workers) is what the nanny enforces.
    """
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0 <= gpu_workers <= workers:
        raise ValueError(f"gpu_workers must be between 0 and workers ({workers}), got {gpu_workers}")
    limit = memory_limit or total_memory() // workers
    worker_malloc_as_in_a_kernel()
    cluster = LocalCluster(n_workers=0, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=limit, host="127.0.0.1", silence_logs=logging.ERROR)
    template = cluster.new_spec
    n_gpus = torch.cuda.device_count() if gpu_workers else 0
    for index in range(workers):
        options = dict(template["options"])
        if index < gpu_workers:
            options["resources"] = {"GPU": 1}
            if n_gpus > 1:
                options["env"] = dict(options.get("env") or {}, CUDA_VISIBLE_DEVICES=str(index % n_gpus))
        name = f"gpu-{index}" if index < gpu_workers else f"cpu-{index - gpu_workers}"
        cluster.worker_spec[name] = {"cls": template["cls"], "options": options}
    cluster.scale(len(cluster.worker_spec))
    return cluster


# --- Slurm ----------------------------------------------------------------------------------------------

SLURM_KEYS = {
    "partition": "Slurm partition (#SBATCH -p); required",
    "jobs": "number of Slurm jobs to start (default 1)",
    "cores": "CPU cores per job (default 4); CPU jobs run one single-threaded worker per core",
    "memory": "memory per job, e.g. '64GB' (required)",
    "gpus": "GPUs per job: 0 or 1 (default 0); a GPU job runs one worker that offers the resource GPU=1",
    "walltime": "time limit per job, 'HH:MM:SS' (default '04:00:00')",
    "account": "Slurm account (#SBATCH -A); optional",
    "python": "the Python with glassbox installed, as seen from the nodes (default: this interpreter)",
    "prologue": "shell lines run before the worker starts (module loads, cd); optional list",
    "job_extra": "more #SBATCH directives, e.g. ['--constraint=a100']; optional list",
    "gres": "how to ask for the GPU (default 'gpu:1' -> #SBATCH --gres=gpu:1)",
    "interface": "network interface of the nodes for Dask, e.g. 'ib0'; optional",
    "host": "address the scheduler listens on (default: this machine's, reachable from the nodes)",
    "local_directory": "scratch folder of the workers on the nodes; optional",
    "log_directory": "folder for the jobs' Slurm output files; optional",
}


@dataclass(frozen=True)
class SlurmConfig:
    """The ``--slurm`` YAML file: partition, jobs, cores, memory, GPUs, time (see :data:`SLURM_KEYS`)."""

    partition: str
    memory: str
    jobs: int = 1
    cores: int = 4
    gpus: int = 0
    walltime: str = "04:00:00"
    account: str | None = None
    python: str | None = None
    prologue: tuple[str, ...] = ()
    job_extra: tuple[str, ...] = ()
    gres: str = "gpu:1"
    interface: str | None = None
    host: str | None = None
    local_directory: str | None = None
    log_directory: str | None = None

    def __post_init__(self) -> None:
        where = "Slurm config"
        for name in ("partition", "memory", "walltime", "gres"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{where}: {name} must be a non-empty string ({SLURM_KEYS[name]}), got {value!r}")
        for name in ("jobs", "cores"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive integer ({SLURM_KEYS[name]}), got {value!r}")
        if self.gpus not in (0, 1) or isinstance(self.gpus, bool):
            raise ValueError(f"{where}: gpus must be 0 or 1 per job, got {self.gpus!r}; for more GPUs ask for more "
                             "jobs (each GPU gets its own worker)")
        if not re.fullmatch(r"(\d+-)?\d{1,3}(:\d{2}){0,2}", self.walltime):
            raise ValueError(f"{where}: walltime must look like 'HH:MM:SS' (or 'D-HH:MM:SS'), got {self.walltime!r}")
        parse_size(self.memory)
        for name in ("prologue", "job_extra"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: {name} must be a list of strings, got {value!r}")
        for name in ("account", "python", "interface", "host", "local_directory", "log_directory"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{where}: {name} must be a non-empty string or left out, got {value!r}")

    @classmethod
    def from_mapping(cls, data: Any, source: str = "Slurm config") -> SlurmConfig:
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: expected a mapping of keys {sorted(SLURM_KEYS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(SLURM_KEYS))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown}; known keys: " +
                             "; ".join(f"{k} ({v})" for k, v in SLURM_KEYS.items()))
        missing = [k for k in ("partition", "memory") if k not in data]
        if missing:
            raise ValueError(f"{source}: missing required key(s) {missing}")
        values = dict(data)
        for name in ("prologue", "job_extra"):
            if name in values:
                value = values[name]
                values[name] = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list) else value
        if "walltime" in values and isinstance(values["walltime"], int):
            raise ValueError(f"{source}: walltime must be quoted, e.g. \"04:00:00\" (YAML reads 04:00:00 unquoted "
                             f"as a number: {values['walltime']})")
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> SlurmConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--slurm {path}: no such file; write a YAML file with keys {sorted(SLURM_KEYS)}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: not valid YAML ({exc})") from None
        return cls.from_mapping(data, str(path))

    def cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for this configuration."""
        memory = parse_size(self.memory)
        gpu = self.gpus == 1
        kwargs: dict[str, Any] = {
            "queue": self.partition,
            "account": self.account,
            "walltime": self.walltime,
            "memory": self.memory,
            # a GPU job: one single-threaded worker with the job's cores; a CPU job: one worker per core
            "cores": 1 if gpu else self.cores,
            "processes": 1 if gpu else self.cores,
            "job_cpu": self.cores,
            "job_mem": _slurm_memory(memory),
            "python": self.python or sys.executable,
            "job_script_prologue": list(self.prologue),
            "job_extra_directives": ([f"--gres={self.gres}"] if gpu else []) + list(self.job_extra),
            "worker_extra_args": ["--resources", "GPU=1"] if gpu else [],
            "scheduler_options": {"dashboard_address": None} | ({"host": self.host} if self.host else {}),
        }
        for name in ("interface", "local_directory", "log_directory"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        return kwargs


def _slurm_memory(n_bytes: int | None) -> str | None:
    if n_bytes is None:
        return None
    return f"{math.ceil(n_bytes / 2**20)}M"


def slurm_cluster(config: SlurmConfig) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` for ``config``, scaled to ``config.jobs`` jobs (submitted with sbatch)."""
    from dask_jobqueue import SLURMCluster  # here, not at the top: only Slurm runs need it (~0.7 s to import)

    cluster = SLURMCluster(**config.cluster_kwargs())
    cluster.scale(jobs=config.jobs)
    return cluster


# --- the command line -----------------------------------------------------------------------------------


@contextlib.contextmanager
def open_client(*, scheduler: str | None = None, slurm: SlurmConfig | None = None, workers: int | None = None,
                gpu_workers: int = 0, memory_limit: int | None = None) -> Iterator[Any]:
    """A Dask client: on a running scheduler, on a new Slurm cluster, or on a new LocalCluster (the default)."""
    if scheduler and slurm:
        raise ValueError("give either --scheduler or --slurm, not both")
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout="30s")
        elif slurm is not None:
            cluster = slurm_cluster(slurm)
            client = Client(cluster)
        else:
            cluster = local_cluster(workers, gpu_workers=gpu_workers, memory_limit=memory_limit)
            client = Client(cluster)
        try:
            if cluster is not None and slurm is None:
                client.wait_for_workers(len(cluster.worker_spec), timeout=600)
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()
