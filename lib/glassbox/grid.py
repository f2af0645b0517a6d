"""The training grid: every chapter's expensive artifacts as tasks on Dask, written into the shared store.

Each study module's ``plan(config, *, seed, device, data_dir)`` lists the store entries its chapter computes
(:class:`glassbox.core.tasks.Task`). This module collects the plans of the chosen chapters, skips the tasks
whose entry is already in the store, and runs the rest on a Dask cluster -- dependencies first, independent
tasks side by side, one thread per worker -- so that the chapters afterwards find every artifact in the
store and train nothing::

    python -m glassbox.grid plan all --profile quick          # the tasks, and which are stored already
    python -m glassbox.grid run all --profile quick           # a LocalCluster: one worker per core
    python -m glassbox.grid run all --profile paper --scheduler tcp://host:8786   # a running cluster
    python -m glassbox.grid run all --profile paper --slurm slurm.yaml            # Slurm, via dask-jobqueue
    python -m glassbox.grid run all --profile paper --dry-run # every loop takes one step: do configs fit?

Every worker pins its thread count (:func:`glassbox.core.repro.pin_threads`) and each task runs after
:func:`~glassbox.core.repro.seed_everything` with the grid's seed, as in a chapter, so a model trained by the
grid is bit-identical to the one the chapter would train. A task's output (stdout, stderr, traceback) goes to
``<store>/_grid/logs/<entry>-<key>.log``; a failed task is retried (``--retries``), then reported with the
end of its log; a task whose dependency failed is reported as blocked. A worker killed mid-task (node lost,
out of memory) is replaced and the task runs again, resuming from its training checkpoint where it has one.

A dry run (``--dry-run``) runs every task inside :func:`glassbox.core.dryrun.dry_run` -- each training loop
takes its first step and returns -- against a scratch store under ``<store>/_grid/`` that is deleted
afterwards, and reports each task's time and peak memory. On the CPU each worker's memory is capped
(``--memory-limit``), so a configuration too large for the machine fails with a clear out-of-memory error
naming the task instead of taking the machine down.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from distributed import as_completed
from tqdm.auto import tqdm

from glassbox.chapters import CHAPTERS, chapter_config
from glassbox.core import repro
from glassbox.core.cluster import SlurmConfig, default_workers, memory_per_worker, open_client, parse_size
from glassbox.core.paths import store_dir
from glassbox.core.store import Store
from glassbox.core.tasks import Task, execute, is_stored, log_path
from glassbox.report.profiles import PROFILE_NAMES, resolve_data_dir, resolve_profile

GRID_FOLDER = "_grid"
"""Folder of the store that holds the grid's logs and dry-run scratch stores (not an entry name)."""
LOG_TAIL_LINES = 40


class GridError(RuntimeError):
    """A plan that cannot run (a cycle, a bad task) or a cluster that cannot run it."""


# --- plans ---------------------------------------------------------------------------------------------


def chapters_with_plan() -> list[str]:
    """The chapters (book order) whose study module has a ``plan()``."""
    return [name for name, module in CHAPTERS.items() if callable(getattr(module, "plan", None))]


@dataclass(frozen=True)
class Planned:
    """A task of the grid and the chapters that asked for it (two chapters may share an artifact)."""

    task: Task
    chapters: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.task.key


def _chapter_names(chapters: Sequence[str] | str) -> list[str]:
    names = [chapters] if isinstance(chapters, str) else list(chapters)
    if not names:
        raise ValueError("name at least one chapter, or 'all'")
    if "all" in names:
        return chapters_with_plan()
    unknown = [n for n in names if n not in CHAPTERS]
    if unknown:
        raise ValueError(f"unknown chapter(s) {unknown}; known chapters: {list(CHAPTERS)} or 'all'")
    without = [n for n in names if n not in chapters_with_plan()]
    if without:
        raise ValueError(f"chapter(s) {without} have no plan() in their study module yet; "
                         f"chapters with a plan: {chapters_with_plan()}")
    return list(dict.fromkeys(names))


def collect(chapters: Sequence[str] | str, profile: str | None = None, *, seed: int = 0,
            device: torch.device | str = "cpu", data_dir: str | os.PathLike | None = None) -> list[Planned]:
    """The tasks of ``chapters`` (or ``"all"``) on ``profile``, one per store key, dependencies first."""
    profile = resolve_profile(profile)
    folder = resolve_data_dir(data_dir)
    device = torch.device(device) if not isinstance(device, torch.device) else device
    by_key: dict[str, Planned] = {}
    for chapter in _chapter_names(chapters):
        config = chapter_config(chapter, profile)
        tasks = CHAPTERS[chapter].plan(config, seed=seed, device=device, data_dir=folder)
        if not isinstance(tasks, (list, tuple)):
            raise GridError(f"glassbox.studies.{chapter}.plan() must return a list of Task, got {type(tasks).__name__}")
        for task in tasks:
            if not isinstance(task, Task):
                raise GridError(f"glassbox.studies.{chapter}.plan() returned a {type(task).__name__}, not a Task")
            known = by_key.get(task.key)
            if known is None:
                by_key[task.key] = Planned(task, (chapter,))
            elif chapter not in known.chapters:
                by_key[task.key] = dataclasses.replace(known, chapters=known.chapters + (chapter,))
    return topological(list(by_key.values()))


def topological(planned: Sequence[Planned]) -> list[Planned]:
    """``planned`` with every task after the tasks it depends on (stable otherwise); a cycle is an error.

    A dependency that is not in the plan is allowed (an entry stored earlier, or one the task computes
    itself); :func:`missing_dependencies` lists them.
    """
    by_key = {p.key: p for p in planned}
    order: list[Planned] = []
    state: dict[str, str] = {}

    def visit(key: str, path: tuple[str, ...]) -> None:
        if state.get(key) == "done":
            return
        if state.get(key) == "open":
            cycle = " -> ".join(by_key[k].task.entry + ":" + k for k in path[path.index(key):] + (key,))
            raise GridError(f"the plan's dependencies form a cycle: {cycle}")
        state[key] = "open"
        for dep in by_key[key].task.deps:
            if dep in by_key:
                visit(dep, path + (key,))
        state[key] = "done"
        order.append(by_key[key])

    for p in planned:
        visit(p.key, ())
    return order


def missing_dependencies(planned: Sequence[Planned], store: Store) -> dict[str, list[str]]:
    """``{task key: [dependency keys neither planned nor stored]}`` (the task then computes them itself)."""
    keys = {p.key for p in planned}
    out = {}
    for p in planned:
        missing = [d for d in p.task.deps if d not in keys and not _stored_any_entry(store, d)]
        if missing:
            out[p.key] = missing
    return out


def _stored_any_entry(store: Store, key: str) -> bool:
    return store.root.is_dir() and any(store.root.glob(f"*/{key}.json"))


def plan_rows(planned: Sequence[Planned], store: Store) -> list[dict[str, Any]]:
    """One row per task: chapters, entry, key, label, dependencies, GPU, stored."""
    return [{"chapters": ",".join(p.chapters), "entry": p.task.entry, "key": p.key, "label": p.task.label,
             "deps": len(p.task.deps), "gpu": p.task.gpu, "stored": is_stored(store, p.task, verify=False)}
            for p in planned]


# --- outcomes -------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one task: ``stored`` (found, skipped), ``computed``, ``failed`` or ``blocked``."""

    planned: Planned
    status: str
    seconds: float | None = None
    peak_mb: float | None = None
    worker: str = ""
    attempts: int = 0
    cut: dict[str, int] = field(default_factory=dict)
    error: str = ""
    log: str = ""
    found: bool = False  # computed, but its entry was already stored by another task of the run (nothing ran)

    def row(self) -> dict[str, Any]:
        t = self.planned.task
        return {"chapters": ",".join(self.planned.chapters), "entry": t.entry, "key": t.key, "label": t.label,
                "status": self.status, "seconds": self.seconds, "peak_mb": self.peak_mb, "attempts": self.attempts,
                "worker": self.worker, "cut": self.cut, "found": self.found, "error": self.error, "log": self.log}


def _from_result(planned: Planned, result: Mapping[str, Any], log: Path) -> Outcome:
    return Outcome(planned, "computed", seconds=result["seconds"], peak_mb=result["peak_mb"], worker=result["worker"],
                   attempts=result["attempt"], cut=result["cut"], log=str(log),
                   found=bool(result.get("found", False)))


def _describe_error(exc: BaseException, memory_limit: float | None) -> str:
    name = type(exc).__name__
    text = f"{name}: {exc}"
    if name == "KilledWorker":
        limit = f" (memory limit {memory_limit / 2**30:.1f} GiB per worker)" if memory_limit else ""
        text = ("the worker running it died every time it ran the task -- out of memory" + limit
                + f", or killed from outside. {exc}")
    elif isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "Unable to allocate" in str(exc):
        limit = f" of {memory_limit / 2**30:.1f} GiB per worker" if memory_limit else ""
        text = (f"out of memory: the task needs more than the limit{limit}; give it more with --memory-limit and "
                f"fewer --workers, or a larger machine ({text})")
    return text


def log_tail(path: str | os.PathLike, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- running --------------------------------------------------------------------------------------------


def run_serial(planned: Sequence[Planned], *, store_root: str | os.PathLike | None = None, seed: int = 0,
               dry_run: bool = False, skip_stored: bool = True, memory_cap: int | None = None) -> list[Outcome]:
    """Run the tasks one after another in this process (no Dask): the reference the grid must reproduce.

    ``memory_cap`` caps this process's memory for good (:func:`glassbox.core.tasks.cap_memory`).
    """
    root = Path(store_root) if store_root is not None else store_dir()
    work_root, cleanup = _work_store(root, dry_run)
    logs = root / GRID_FOLDER / "logs"
    outcomes: dict[str, Outcome] = {}
    old_store = os.environ.get("GLASSBOX_STORE")
    old_pin = repro.pinned_threads()
    try:
        for p in topological(planned):
            if not dry_run and skip_stored and is_stored(Store(work_root), p.task):
                outcomes[p.key] = Outcome(p, "stored")
                continue
            failed = [d for d in p.task.deps if d in outcomes and outcomes[d].status in ("failed", "blocked")]
            if failed:
                outcomes[p.key] = Outcome(p, "blocked", error=f"dependency {failed[0]} did not complete")
                continue
            try:
                result = execute(p.task, store_root=str(work_root), seed=seed, log_dir=str(logs), dry=dry_run,
                                 memory_cap=memory_cap)
                outcomes[p.key] = _from_result(p, result, log_path(logs, p.task))
            except Exception as exc:  # noqa: BLE001 - reported with its log, the grid goes on
                outcomes[p.key] = Outcome(p, "failed", error=_describe_error(exc, memory_cap),
                                          log=str(log_path(logs, p.task)))
    finally:
        if old_store is None:
            os.environ.pop("GLASSBOX_STORE", None)
        else:
            os.environ["GLASSBOX_STORE"] = old_store
        if old_pin is not None:
            repro.pin_threads(old_pin)
        cleanup()
    return [outcomes[p.key] for p in planned]


def _work_store(root: Path, dry: bool):
    """The store tasks write into: the real one, or for a dry run a scratch one deleted afterwards."""
    if not dry:
        return root, lambda: None
    scratch = root / GRID_FOLDER / f"dryrun-{uuid.uuid4().hex[:12]}"
    scratch.mkdir(parents=True)
    return scratch, lambda: shutil.rmtree(scratch, ignore_errors=True)


def run_grid(planned: Sequence[Planned], client: Any, *, store_root: str | os.PathLike | None = None, seed: int = 0,
             dry_run: bool = False, retries: int = 2, gpu: bool = False, progress: bool | None = None,
             memory_limit: float | None = None, memory_cap: int | None = None) -> list[Outcome]:
    """Run the tasks on the Dask ``client``'s cluster and return one :class:`Outcome` per task (plan order).

    Tasks already in the store are skipped (not in a dry run); the rest are submitted with their dependencies'
    futures, so Dask starts a task only after the tasks it depends on. A task raising an exception is retried
    ``retries`` times; a worker that dies mid-task is replaced and the task resubmitted (Dask's
    ``distributed.scheduler.allowed-failures``). With ``gpu``, tasks that want a GPU ask for the Dask resource
    ``GPU`` (one unit), so they run only on workers offering it. ``memory_cap`` (bytes) caps each worker's
    memory (:func:`glassbox.core.tasks.cap_memory`; CPU workers only); ``memory_limit`` is only quoted in errors.
    """
    root = Path(store_root) if store_root is not None else store_dir()
    root.mkdir(parents=True, exist_ok=True)
    work_root, cleanup = _work_store(root, dry_run)
    logs = root / GRID_FOLDER / "logs"
    order = topological(planned)
    outcomes: dict[str, Outcome] = {}
    futures: dict[str, Any] = {}
    # the Dask key: identical grid runs on one scheduler share a task; other stores, seeds or dry runs do not
    run_id = hashlib.sha256(f"{work_root.resolve()}|{seed}|{dry_run}".encode()).hexdigest()[:8]
    try:
        for p in order:
            if not dry_run and is_stored(Store(work_root), p.task):
                outcomes[p.key] = Outcome(p, "stored")
                continue
            deps = [futures[d] for d in p.task.deps if d in futures]
            resources = {"GPU": 1} if gpu and p.task.gpu else None
            futures[p.key] = client.submit(
                execute, p.task, *deps, store_root=str(work_root), seed=seed, log_dir=str(logs), dry=dry_run,
                memory_cap=None if resources else memory_cap, key=f"{p.task.entry}-{p.key}-{run_id}", pure=False,
                retries=retries, resources=resources)
        show = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=len(futures), desc="grid" + (" (dry run)" if dry_run else ""), unit="task",
                  disable=not show) as bar:
            for _ in as_completed(list(futures.values())):
                bar.update(1)
        by_key = {p.key: p for p in order}
        for p in order:
            if p.key in outcomes:
                continue
            future = futures[p.key]
            failed_deps = [d for d in p.task.deps if d in outcomes and outcomes[d].status in ("failed", "blocked")]
            if future.status == "finished":
                outcomes[p.key] = _from_result(p, future.result(), log_path(logs, p.task))
            elif failed_deps:
                dep = by_key[failed_deps[0]].task
                outcomes[p.key] = Outcome(p, "blocked", error=f"dependency {dep.entry} {dep.key} ({dep.label}) failed")
            else:
                try:
                    error = future.exception()
                except Exception as exc:  # noqa: BLE001 - a cancelled future raises instead of returning it
                    error = exc
                outcomes[p.key] = Outcome(p, "failed", error=_describe_error(error, memory_limit),
                                          attempts=retries + 1, log=str(log_path(logs, p.task)))
    finally:
        for future in futures.values():
            future.release()
        cleanup()
    return [outcomes[p.key] for p in planned]


def _format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    def text(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.1f}"
        if isinstance(v, dict):
            return ",".join(f"{k}x{n}" for k, n in v.items()) or "-"
        return str(v)

    cells = [[text(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _device(name: str, *, local: bool, slurm: SlurmConfig | None) -> torch.device:
    if local:
        return repro.resolve_device(name)
    if name == "auto":
        return torch.device("cuda" if slurm is not None and slurm.gpus else "cpu")
    if name not in repro.DEVICES:
        raise ValueError(f"device must be one of {repro.DEVICES}, got {name!r}")
    return torch.device(name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m glassbox.grid", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("plan", "list the tasks and which are already in the store"),
                            ("run", "compute the tasks that are not in the store yet")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("chapters", nargs="+", help=f"chapter names or 'all' (chapters with a plan: "
                                                   f"{', '.join(chapters_with_plan())})")
        p.add_argument("--profile", default=None, choices=PROFILE_NAMES,
                       help="the chapters' profile (default: $GLASSBOX_PROFILE, else quick)")
        p.add_argument("--seed", type=int, default=0, help="the chapters' seed (default 0)")
        p.add_argument("--device", default="auto", choices=repro.DEVICES, help="where GPU tasks run (default auto)")
        p.add_argument("--data-dir", default=None, help="root of a real DICOM tree (default: simulated data)")
        p.add_argument("--store", default=None, help="the store folder (default: $GLASSBOX_STORE or artifacts/)")
    run = sub.choices["run"]
    where = run.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="attach to a running Dask scheduler, e.g. tcp://host:8786 (workers need glassbox and "
                            "the store's folder at the same path)")
    where.add_argument("--slurm", default=None, metavar="FILE", help="start a Slurm cluster from this YAML file")
    where.add_argument("--serial", action="store_true", help="run the tasks one by one in this process (no Dask)")
    run.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    run.add_argument("--gpu-workers", type=int, default=None,
                     help="local workers that take GPU tasks (default: one per GPU when the device is cuda)")
    run.add_argument("--memory-limit", default=None,
                     help="memory per local worker, e.g. 10GiB (default: the machine's memory / workers; for a "
                          "dry run at most 90%% of the free memory / workers)")
    run.add_argument("--retries", type=int, default=2, help="retries of a failed task (default 2)")
    run.add_argument("--dry-run", action="store_true",
                     help="every task takes its first optimisation step (or first batch) and stops, in a scratch "
                          "store; reports time and peak memory per task")
    run.add_argument("--report", default=None, metavar="FILE", help="also write the outcomes as JSON to FILE")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--print-job-script", action="store_true",
                     help="with --slurm: print the sbatch script of one job and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    store_root = Path(args.store) if args.store else store_dir()
    store = Store(store_root)
    profile = resolve_profile(args.profile)
    if args.command == "plan":
        planned = collect(args.chapters, profile, seed=args.seed, device=_device(args.device, local=True, slurm=None),
                          data_dir=args.data_dir)
        rows = plan_rows(planned, store)
        print(_format_table(rows, ["chapters", "entry", "key", "gpu", "deps", "stored", "label"]))
        stored = sum(r["stored"] for r in rows)
        print(f"\n{len(rows)} tasks on profile {profile}, seed {args.seed}: {stored} in the store ({store_root}), "
              f"{len(rows) - stored} to compute")
        _note_chapters_without_plan(args.chapters)
        for key, deps in missing_dependencies(planned, store).items():
            print(f"note: task {key} depends on {deps}, neither planned nor stored (it will compute them itself)")
        return 0

    slurm = SlurmConfig.from_file(args.slurm) if args.slurm else None
    if args.print_job_script:
        if slurm is None:
            raise SystemExit("--print-job-script needs --slurm FILE")
        from dask_jobqueue.slurm import SLURMJob  # only Slurm needs it (see slurm_cluster)

        kwargs = {k: v for k, v in slurm.cluster_kwargs().items() if k != "scheduler_options"}
        print(SLURMJob(scheduler="tcp://SCHEDULER:8786", name="glassbox-grid", **kwargs).job_script())
        return 0
    local = not (args.scheduler or slurm)
    device = _device(args.device, local=local, slurm=slurm)
    planned = collect(args.chapters, profile, seed=args.seed, device=device, data_dir=args.data_dir)
    gpu = device.type == "cuda"
    memory_limit = parse_size(args.memory_limit)
    started = time.perf_counter()
    print(f"grid: {len(planned)} tasks on profile {profile}, seed {args.seed}, device {device}, "
          f"store {store_root}{' (dry run)' if args.dry_run else ''}", flush=True)
    _note_chapters_without_plan(args.chapters)
    if not args.dry_run and all(is_stored(store, p.task) for p in planned):
        outcomes = [Outcome(p, "stored") for p in planned]  # nothing to compute: no cluster to start
    elif args.serial:
        cap = (memory_limit or memory_per_worker(1, dry_run=True)) if args.dry_run and device.type == "cpu" else None
        outcomes = run_serial(planned, store_root=store_root, seed=args.seed, dry_run=args.dry_run, memory_cap=cap)
    else:
        gpu_workers = (args.gpu_workers if args.gpu_workers is not None
                       else (torch.cuda.device_count() if gpu and local else 0))
        workers = args.workers or default_workers()
        limit = memory_limit or (memory_per_worker(workers, dry_run=args.dry_run) if local else None)
        cap = limit if args.dry_run and device.type == "cpu" else None
        if limit:
            print(f"grid: {workers} local workers, {limit / 2**30:.1f} GiB each"
                  f"{' (allocations beyond it fail: a dry run never takes the machine down)' if cap else ''}",
                  flush=True)
        with open_client(scheduler=args.scheduler, slurm=slurm, workers=workers, gpu_workers=gpu_workers,
                         memory_limit=limit) as client:
            if gpu and args.scheduler:
                offered = [w for w in client.scheduler_info()["workers"].values() if "GPU" in w.get("resources", {})]
                if not offered:
                    raise GridError(f"device cuda but no worker of {args.scheduler} offers the resource GPU; start the "
                                    "GPU workers with `dask worker ADDRESS --nthreads 1 --resources GPU=1`")
            outcomes = run_grid(planned, client, store_root=store_root, seed=args.seed, dry_run=args.dry_run,
                                retries=args.retries, gpu=gpu, progress=False if args.no_progress else None,
                                memory_limit=limit, memory_cap=cap)
    return _report(outcomes, args, time.perf_counter() - started)


def _note_chapters_without_plan(chapters: Sequence[str]) -> None:
    if "all" in chapters:
        without = [name for name in CHAPTERS if name not in chapters_with_plan()]
        if without:
            print(f"note: chapters without a plan() yet (they compute in their notebook): {', '.join(without)}")


def _report(outcomes: Sequence[Outcome], args: argparse.Namespace, seconds: float) -> int:
    rows = [o.row() for o in outcomes]
    columns = ["chapters", "entry", "key", "status", "seconds", "peak_mb", "attempts"]
    if args.dry_run:
        columns.append("cut")
    print(_format_table(rows, columns + ["label"]))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("stored", "computed", "failed", "blocked")}
    print(f"\n{len(outcomes)} tasks in {seconds:.1f} s: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if args.dry_run:
        uncut = [o for o in outcomes if o.status == "computed" and not o.cut]
        for o in uncut:
            print(f"note: {o.planned.task.entry} ({o.planned.task.label}) met no dry-run hook: it ran to its end "
                  f"({o.seconds:.1f} s); wrap its loops in glassbox.core.dryrun.steps()")
    for o in outcomes:
        if o.status == "failed":
            print(f"\nFAILED {o.planned.task.entry} {o.planned.key} ({o.planned.task.label}):\n  {o.error}\n"
                  f"  log {o.log}, last lines:\n" + _indent(log_tail(o.log)))
        elif o.status == "blocked":
            print(f"\nBLOCKED {o.planned.task.entry} {o.planned.key}: {o.error}")
    if args.report:
        Path(args.report).write_text(json.dumps({"seconds": seconds, "tasks": rows}, indent=2, default=str))
    return 1 if counts["failed"] or counts["blocked"] else 0


def _indent(text: str) -> str:
    buffer = io.StringIO()
    for line in text.splitlines():
        buffer.write("    " + line + "\n")
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
