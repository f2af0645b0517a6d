"""The training grid: a cold ``make book`` with the grid against the same build without it, in one run.

Both builds start cold -- an empty artifact store, an empty results folder and an empty notebook execution
cache, each in its own temporary folder -- and run the very command a user runs: ``make book`` (``GRID=1``:
first ``python -m glassbox.grid run all`` on a LocalCluster with one worker per core, then ``jupyter-book
build``, whose chapters find their models in the store) against ``make book GRID=0`` (each chapter trains what
it needs while it executes, one notebook after another). ``ref/ours`` is the speed-up of the grid.

Targets on the reference machine (2 cores, ``quick``): speed-up >= 1.5 and the whole cold book with the grid
within 20 minutes. The two builds must also agree: every chapter's ``results/*.json`` equal
(``scripts/compare_results.py``), or the row fails whatever its speed. ``GLASSBOX_BENCH_KEEP=DIR`` keeps both
builds (store, results, HTML, logs) in ``DIR`` instead of a temporary folder. Run it on an idle machine:
``python bench/run.py grid`` (two cold builds, about 30 minutes; measured 2026-12-02: 1043 s without the grid,
643 s with it, 1.62x, results identical).
``run(quick=True)`` builds on ``smoke``: it checks the benchmark, not the targets (a smoke book trains little).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import Row

ROOT = Path(__file__).resolve().parents[1]
SPEEDUP_TARGET = 1.5
BOOK_TARGET_S = 20 * 60.0


def _make_book(grid: bool, profile: str, folder: Path) -> tuple[float, float | None]:
    """Seconds of one cold ``make book`` into ``folder``, and of its grid phase (from the grid's own report)."""
    folder.mkdir(parents=True)
    env = dict(os.environ, GLASSBOX_STORE=str(folder / "store"), GLASSBOX_RESULTS=str(folder / "results"),
               GLASSBOX_PROFILE=profile)
    log = folder / "make-book.log"
    started = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(["make", "book", f"GRID={int(grid)}", f"BOOK_OUT={folder}"], cwd=ROOT, env=env,
                              stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"make book GRID={int(grid)} failed ({proc.returncode}); end of {log}:\n{text[-4000:]}")
    grid_seconds = None
    for line in text.splitlines():  # "<n> tasks in <s> s: ..." closes the grid's report
        if " tasks in " in line and line.split(" tasks in ")[0].strip().isdigit():
            grid_seconds = float(line.split(" tasks in ")[1].split(" s")[0])
    return seconds, grid_seconds


def _result_differences(first: Path, second: Path) -> list[str]:
    """Differences between two builds' results files (scripts/compare_results.py; timings and run records aside)."""
    spec = importlib.util.spec_from_file_location("compare_results", ROOT / "scripts" / "compare_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not any(first.glob("*.json")):
        return [f"no results files in {first}"]
    return module.compare_folders(first, second)


def run(quick: bool) -> list[Row]:
    profile = "smoke" if quick else "quick"
    # warm the interpreter's file cache once, so neither build pays for the first import alone
    subprocess.run([sys.executable, "-c", "import glassbox.chapters, distributed"], cwd=ROOT, check=True)
    keep = os.environ.get("GLASSBOX_BENCH_KEEP")
    with (contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="bench-grid-")) as tmp:
        serial, _ = _make_book(False, profile, Path(tmp) / "serial")
        with_grid, grid_phase = _make_book(True, profile, Path(tmp) / "grid")
        differences = _result_differences(Path(tmp) / "serial" / "results", Path(tmp) / "grid" / "results")
    workers = len(os.sched_getaffinity(0))
    speedup = serial / with_grid
    note = (f"{profile}, {workers} workers; grid phase {grid_phase:.0f} s of it" if grid_phase is not None
            else f"{profile}, {workers} workers")
    note += ("; results identical to the serial build" if not differences
             else f"; {len(differences)} results differ from the serial build, first: {differences[0]}")
    return [Row(name=f"cold make book ({profile}): with grid vs without", ours=with_grid, reference=serial, unit="s",
                target=f"ref/ours >= {SPEEDUP_TARGET}, ours <= {BOOK_TARGET_S:.0f} s",
                passed=False if differences else (None if quick else bool(speedup >= SPEEDUP_TARGET
                                                                          and with_grid <= BOOK_TARGET_S)),
                note=note)]
