"""The training grid: plans, dry runs, and Dask execution that reproduces serial training bit for bit.

Cluster tests use one LocalCluster of 2 single-threaded workers (one of them labelled with the Dask resource
``GPU``, to test the gating without a GPU). Plans: every chapter whose study has ``plan()`` (parametrized, so
the chapters' plans are covered as they land) and a small synthetic plan (``tests/gridplans.py``: the data
chapter's data set and tiny U-Net trainings that depend on it).
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import cloudpickle
import dask.config
import numpy as np
import pytest
import torch

import gridplans
from glassbox import grid
from glassbox.core import cluster, dryrun, repro
from glassbox.core.store import Store
from glassbox.core.tasks import PlanMismatchError, Task, execute, is_stored
from glassbox.data import lowdose_ct
from glassbox.data.lowdose_ct import DATA_PROFILES
from glassbox.training.loop import fit

cloudpickle.register_pickle_by_value(gridplans)  # the workers cannot import tests/

ROOT = Path(__file__).resolve().parents[1]
SMOKE_DATA = DATA_PROFILES["smoke"]
IGNORED_KEYS = ("seconds",)  # wall-clock times inside stored histories: the only thing allowed to differ


def planned(tasks: list[Task]) -> list[grid.Planned]:
    return grid.topological([grid.Planned(t, ("test",)) for t in tasks])


def chapter_plans() -> list[Any]:
    return [pytest.param(name, id=name) for name in grid.chapters_with_plan()]


def plan_of(name: str, **kwargs: Any) -> list[grid.Planned]:
    if name == "synthetic":
        return planned(gridplans.plan(SMOKE_DATA, **kwargs))
    return grid.collect([name], "smoke", seed=0, device="cpu")


def differences(a: Any, b: Any, where: str = "value") -> list[str]:
    """Where two stored values differ (exact comparison; keys in IGNORED_KEYS skipped)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and a.shape == b.shape and torch.equal(a, b))
        return [] if same else [where]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        same = (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b, equal_nan=True))
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where} keys {sorted(map(str, set(a) ^ set(b)))}"]
        return [d for k in a if k not in IGNORED_KEYS for d in differences(a[k], b[k], f"{where}[{k!r}]")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            return [f"{where} length/type"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        if type(a) is not type(b):
            return [f"{where} type"]
        return [d for f in dataclasses.fields(a) for d in differences(getattr(a, f.name), getattr(b, f.name),
                                                                      f"{where}.{f.name}")]
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return []
    return [] if type(a) is type(b) and a == b else [where]


def assert_same_entries(root_a: Path, root_b: Path, tasks: list[grid.Planned]) -> None:
    for p in tasks:
        found_a, a = Store(root_a).load(p.task.entry, p.key)
        found_b, b = Store(root_b).load(p.task.entry, p.key)
        assert found_a and found_b, f"{p.task.entry} {p.key}: in store a {found_a}, in store b {found_b}"
        diff = differences(a, b)
        assert not diff, f"{p.task.entry} {p.key} ({p.task.label}) differs at {diff[:5]}"


def store_snapshot(root: Path) -> dict[str, float]:
    """Every entry file of a store with its modification time (not the grid's logs, checkpoints, locks, temp files)."""
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".") and grid.GRID_FOLDER not in p.parts
            and "_checkpoints" not in p.parts}


# --- dry runs ---------------------------------------------------------------------------------------------


def test_steps_is_the_identity_outside_a_dry_run_and_one_step_inside():
    items = [1, 2, 3]
    assert dryrun.steps(items, "loop") is items and not dryrun.active()
    with dryrun.dry_run() as log:
        assert dryrun.active()
        assert list(dryrun.steps(items, "loop")) == [1]
        assert list(dryrun.steps([], "empty")) == []
        with pytest.raises(RuntimeError, match="already active"), dryrun.dry_run():
            pass
    assert log.cut == {"loop": 1} and not dryrun.active()


def test_fit_takes_exactly_one_optimisation_step_in_a_dry_run():
    data = torch.utils.data.TensorDataset(torch.randn(20, 3), torch.randn(20, 1))
    calls = []

    def loss_fn(model, batch):
        calls.append(len(batch[0]))
        return torch.nn.functional.mse_loss(model(batch[0]), batch[1])

    def run(dry: bool):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        before = [p.detach().clone() for p in model.parameters()]
        calls.clear()
        with dryrun.dry_run() if dry else _nothing() as log:
            history = fit(model, data, loss_fn, epochs=5, batch_size=4, data_seed=1, progress=False,
                          optimizer=lambda p: torch.optim.SGD(p, lr=0.1), val_fn=lambda m: {"val": 1.0})
        moved = any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        return list(calls), len(history), moved, log

    calls_dry, epochs_dry, moved, log = run(dry=True)
    assert calls_dry == [4] and epochs_dry == 1 and moved  # one batch, one step, the epoch's code ran once
    assert log.cut == {"train": 2}  # the epoch loop and the batch loop
    calls_full, epochs_full, _, _ = run(dry=False)
    assert calls_full == [4] * 25 and epochs_full == 5


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_simulated_data_in_a_dry_run_has_the_full_shapes_from_one_simulated_patient():
    full = lowdose_ct.simulate_patients(32, 3, 2, seed=4)
    with dryrun.dry_run() as log:
        dry = lowdose_ct.simulate_patients(32, 3, 2, seed=4)
    assert list(dry) == list(full)
    first = next(iter(full))
    for pid in full:
        for k in (0, 1):
            assert dry[pid][k].shape == full[pid][k].shape and dry[pid][k].dtype == full[pid][k].dtype
            assert np.array_equal(dry[pid][k], full[first][k])  # copies of the one simulated patient
    assert not np.array_equal(full["S001"][0], full[first][0])
    assert log.cut == {"simulate_patients": 2}


# --- plans ------------------------------------------------------------------------------------------------


def _task(entry: str, deps: tuple[str, ...] = (), run=None) -> Task:
    return Task(entry=entry, config={"x": entry}, run=run or (lambda: None), deps=deps)


def test_topological_order_puts_dependencies_first_and_names_a_cycle():
    a = _task("a")
    b = _task("b", deps=(a.key,))
    c = _task("c", deps=(b.key, "not-planned"))
    order = grid.topological([grid.Planned(t, ("x",)) for t in (c, b, a)])
    assert [p.task.entry for p in order] == ["a", "b", "c"]
    x = Task(entry="x", config={}, run=lambda: None, deps=(Task(entry="y", config={}, run=lambda: None).key,))
    y = Task(entry="y", config={}, run=lambda: None, deps=(x.key,))
    with pytest.raises(grid.GridError, match="cycle"):
        grid.topological([grid.Planned(x, ("z",)), grid.Planned(y, ("z",))])


def test_collect_merges_a_task_two_chapters_share(monkeypatch):
    from types import SimpleNamespace

    shared = _task("shared")
    fake = {name: SimpleNamespace(PROFILES={"smoke": 1, "quick": 2, "paper": 3},
                                  plan=lambda config, *, seed, device, data_dir=None, n=name: [shared, _task(n)])
            for name in ("one", "two")}
    for name, module in fake.items():
        monkeypatch.setitem(grid.CHAPTERS, name, module)
    tasks = grid.collect(["one", "two"], "smoke")
    assert [(p.task.entry, p.chapters) for p in tasks] == [("shared", ("one", "two")), ("one", ("one",)),
                                                           ("two", ("two",))]
    with pytest.raises(ValueError, match="unknown chapter"):
        grid.collect(["nope"], "smoke")


def test_data_plan_is_the_chapters_own_call(tmp_path, monkeypatch, capsys):
    import shutil

    from pydicom.data import get_testdata_file

    real = tmp_path / "real"  # a data_dir must hold DICOM files; real data are read as they are, not planned
    real.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), real / "CT_small.dcm")
    tasks = grid.collect(["data"], "smoke", seed=3)
    assert len(tasks) == 1 and grid.collect(["data"], "smoke", seed=3, data_dir=real) == []
    outcomes = grid.run_serial(tasks, store_root=tmp_path, seed=3)
    assert [o.status for o in outcomes] == ["computed"]
    before = store_snapshot(tmp_path)
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path))
    capsys.readouterr()
    lowdose_ct.get_pairs(SMOKE_DATA, seed=3)  # what the data chapter calls
    assert "loaded" in capsys.readouterr().out and store_snapshot(tmp_path) == before


def test_execute_logs_pins_threads_and_refuses_a_task_that_stores_under_another_key(tmp_path):
    from glassbox.core.store import get_or_compute

    good = Task(entry="e", config={"a": 1}, run=lambda: get_or_compute("e", {"a": 1}, lambda: 1, progress=False))
    result = execute(good, store_root=str(tmp_path), seed=0, log_dir=str(tmp_path / "logs"))
    assert result["attempt"] == 1 and result["peak_mb"] > 0 and repro.pinned_threads() == repro.THREADS
    log = (tmp_path / "logs" / f"e-{good.key}.log").read_text()
    assert "=== attempt 1: e" in log and "=== attempt 1 done" in log
    wrong = Task(entry="e", config={"a": 2}, run=lambda: get_or_compute("e", {"a": 3}, lambda: 1, progress=False))
    with pytest.raises(PlanMismatchError, match="left no entry under its key"):
        execute(wrong, store_root=str(tmp_path), seed=0, log_dir=str(tmp_path / "logs"))


def test_serial_run_reports_a_failure_with_its_log_and_blocks_its_dependents(tmp_path):
    bad = Task(entry="bad", config={}, run=gridplans.fail, label="fails")
    after = Task(entry="after", config={}, run=lambda: None, deps=(bad.key,))
    outcomes = grid.run_serial(planned([bad, after]), store_root=tmp_path)
    assert [o.status for o in outcomes] == ["failed", "blocked"]
    assert "boom: a bad configuration" in outcomes[0].error
    tail = grid.log_tail(outcomes[0].log)
    assert "about to fail" in tail and "Traceback" in tail and "ValueError: boom" in tail


MEMORY_CAP = """
import sys
sys.path.insert(0, {tests!r})
import gridplans
from functools import partial
from glassbox import grid
from glassbox.core.tasks import Task

small = Task(entry="small", config={{"bytes": 1 << 20}}, run=partial(gridplans.allocate, "small", 1 << 20))
large = Task(entry="large", config={{"bytes": 3 << 30}}, run=partial(gridplans.allocate, "large", 3 << 30))
tasks = grid.topological([grid.Planned(t, ("test",)) for t in (small, large)])
for o in grid.run_serial(tasks, store_root={store!r}, dry_run=True, memory_cap=2 << 30):
    print("OUTCOME", o.planned.task.entry, o.status, o.error)
"""


def test_a_task_beyond_the_memory_cap_fails_with_a_clear_error_not_a_crash(tmp_path):
    script = MEMORY_CAP.format(tests=str(Path(__file__).parent), store=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.startswith("OUTCOME")]
    assert lines[0] == "OUTCOME small computed ", out.stdout + out.stderr[-3000:]
    assert lines[1].startswith("OUTCOME large failed out of memory: the task needs more than the limit"), lines
    assert "Unable to allocate 3.00 GiB" in lines[1]
    assert not list(tmp_path.glob("*/*.json"))  # a dry run writes only into its scratch store, then deletes it


def test_cli_plan_lists_the_tasks_and_what_is_stored(tmp_path, capsys):
    assert grid.main(["plan", "data", "--profile", "smoke", "--store", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ct-dataset" in out and "1 tasks on profile smoke, seed 0: 0 in the store" in out
    grid.run_serial(grid.collect(["data"], "smoke"), store_root=tmp_path)
    assert grid.main(["plan", "all", "--profile", "smoke", "--store", str(tmp_path)]) == 0
    assert f"{len(grid.collect('all', 'smoke'))} tasks" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        grid.main(["plan", "data", "--profile", "huge"])


# --- Slurm ------------------------------------------------------------------------------------------------

SLURM_YAML = """\
partition: gpu
jobs: 4
cores: 8
memory: 64GB
gpus: 1
walltime: "12:00:00"
account: radiology
python: /shared/glassbox/.venv/bin/python
prologue: ["module load cuda/12.4", "cd /shared/glassbox"]
job_extra: ["--constraint=a100"]
"""


def test_slurm_config_becomes_a_gpu_job_script_with_one_worker_offering_the_gpu(tmp_path):
    from dask_jobqueue.slurm import SLURMJob

    path = tmp_path / "slurm.yaml"
    path.write_text(SLURM_YAML)
    config = cluster.SlurmConfig.from_file(path)
    assert (config.partition, config.jobs, config.cores, config.gpus) == ("gpu", 4, 8, 1)
    kwargs = {k: v for k, v in config.cluster_kwargs().items() if k != "scheduler_options"}
    script = SLURMJob(scheduler="tcp://10.0.0.1:8786", name="glassbox-grid", **kwargs).job_script()
    for line in ("#SBATCH -p gpu", "#SBATCH -A radiology", "#SBATCH --cpus-per-task=8", "#SBATCH -t 12:00:00",
                 "#SBATCH --gres=gpu:1", "#SBATCH --constraint=a100", "module load cuda/12.4", "cd /shared/glassbox",
                 "/shared/glassbox/.venv/bin/python -m distributed.cli.dask_worker tcp://10.0.0.1:8786",
                 "--nthreads 1", "--resources GPU=1"):
        assert line in script, f"{line!r} missing from\n{script}"
    assert "--nworkers" not in script  # one worker process per GPU job
    assert "#SBATCH --mem=61036M" in script  # 64 GB = 64e9 bytes, in MiB rounded up


def test_slurm_cpu_jobs_run_one_single_threaded_worker_per_core(tmp_path):
    from dask_jobqueue.slurm import SLURMJob

    config = cluster.SlurmConfig.from_mapping({"partition": "cpu", "memory": "32GiB", "cores": 16})
    kwargs = {k: v for k, v in config.cluster_kwargs().items() if k != "scheduler_options"}
    script = SLURMJob(scheduler="tcp://10.0.0.1:8786", **kwargs).job_script()
    assert "--nthreads 1" in script and "--nworkers 16" in script and "GPU" not in script and "gres" not in script
    assert "#SBATCH --mem=32768M" in script


def test_slurm_cluster_accepts_the_configuration_without_submitting_a_job():
    from dask_jobqueue import SLURMCluster

    config = cluster.SlurmConfig.from_mapping({"partition": "gpu", "memory": "16GB", "gpus": 1, "host": "127.0.0.1"})
    with SLURMCluster(**config.cluster_kwargs()) as slurm:  # starts only the scheduler; sbatch runs on scale()
        script = slurm.job_script()
        assert slurm.scheduler_address.startswith("tcp://127.0.0.1:")
    assert f"dask_worker {slurm.scheduler_address}" in script and "--resources GPU=1" in script


@pytest.mark.parametrize("data, message", [
    ({"memory": "8GB"}, "missing required key"),
    ({"partition": "p", "memory": "8GB", "gpu": 1}, "unknown key"),
    ({"partition": "p", "memory": "8GB", "gpus": 2}, "gpus must be 0 or 1"),
    ({"partition": "p", "memory": "lots"}, "cannot read memory size"),
    ({"partition": "p", "memory": "8GB", "walltime": 43200}, "walltime must be quoted"),
    ({"partition": "p", "memory": "8GB", "walltime": "12h"}, "HH:MM:SS"),
    ({"partition": "p", "memory": "8GB", "jobs": 0}, "jobs must be a positive integer"),
    ({"partition": "p", "memory": "8GB", "prologue": [1]}, "prologue must be a list of strings"),
    ([1, 2], "expected a mapping"),
])
def test_slurm_config_refuses_bad_input_naming_it(data, message):
    with pytest.raises(ValueError, match=message):
        cluster.SlurmConfig.from_mapping(data)


def test_cli_prints_the_slurm_job_script(tmp_path, capsys):
    path = tmp_path / "slurm.yaml"
    path.write_text(SLURM_YAML)
    assert grid.main(["run", "data", "--slurm", str(path), "--print-job-script"]) == 0
    assert "#SBATCH --gres=gpu:1" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="no such file"):
        grid.main(["run", "data", "--slurm", str(tmp_path / "missing.yaml")])


# --- on a LocalCluster ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    with cluster.open_client(workers=2, gpu_workers=1) as dask_client:
        yield dask_client


def _malloc_settings() -> dict[str, str | None]:
    return {"trim": os.environ.get(cluster.TRIM_VARIABLE), "mmap": os.environ.get("MALLOC_MMAP_THRESHOLD_")}


def test_local_workers_start_without_dasks_malloc_trim_threshold(client):
    """Dask's default MALLOC_TRIM_THRESHOLD_ fixes glibc's mmap threshold, and training on a worker then pays a page
    fault for every large tensor (half the speed of a notebook, measured); local workers run as a kernel does."""
    assert dask.config.get(f"distributed.nanny.pre-spawn-environ.{cluster.TRIM_VARIABLE}") is None
    settings = client.run(_malloc_settings)
    assert len(settings) == 2
    assert all(s == {"trim": None, "mmap": None} for s in settings.values()), settings


@pytest.mark.parametrize("name", [pytest.param("synthetic", id="synthetic"), *chapter_plans()])
def test_grid_models_are_bit_identical_to_serial_training(client, tmp_path, name):
    tasks = plan_of(name)
    serial = grid.run_serial(tasks, store_root=tmp_path / "serial")
    assert all(o.status == "computed" for o in serial), [o.row() for o in serial if o.status != "computed"]
    outcomes = grid.run_grid(tasks, client, store_root=tmp_path / "grid", progress=False)
    assert all(o.status == "computed" for o in outcomes), [o.row() for o in outcomes if o.status != "computed"]
    assert_same_entries(tmp_path / "serial", tmp_path / "grid", tasks)
    again = grid.run_grid(tasks, client, store_root=tmp_path / "grid", progress=False)
    assert [o.status for o in again] == ["stored"] * len(tasks)  # a task whose key is there is skipped


def test_independent_tasks_run_side_by_side_and_gpu_tasks_only_on_gpu_workers(client, tmp_path):
    # each training pauses, so one worker cannot finish them all before the other starts (robust under load)
    outcomes = grid.run_grid(plan_of("synthetic", trials=4, training=gridplans.TinyTraining(pause_s=1.0)), client,
                             store_root=tmp_path, progress=False)
    assert len({o.worker for o in outcomes}) == 2  # the trainings were spread over both workers
    info = client.scheduler_info()["workers"]
    pids = client.run(os.getpid)
    gpu_pids = [pid for addr, pid in pids.items() if info[addr]["resources"].get("GPU")]
    assert len(gpu_pids) == 1 and len(pids) == 2
    probes = [Task(entry="gpu-probe", config={"i": i}, gpu=True,
                   run=partial(gridplans.store_pid, "gpu-probe", {"i": i})) for i in range(6)]
    gated = grid.run_grid(planned(probes), client, store_root=tmp_path / "gpu", gpu=True, progress=False)
    assert [o.status for o in gated] == ["computed"] * 6
    assert {Store(tmp_path / "gpu").load("gpu-probe", t.key)[1] for t in probes} == set(gpu_pids)


def test_failed_task_is_retried_then_reported_with_its_log(client, tmp_path):
    bad = Task(entry="bad", config={"n": 1}, run=gridplans.fail, label="fails")
    after = Task(entry="after", config={}, run=lambda: None, deps=(bad.key,))
    outcomes = grid.run_grid(planned([bad, after]), client, store_root=tmp_path, retries=1, progress=False)
    assert [o.status for o in outcomes] == ["failed", "blocked"]
    assert "ValueError: boom" in outcomes[0].error
    log = Path(outcomes[0].log).read_text()
    assert log.count("=== attempt ") == 4  # two attempts, each with its start and end line
    assert "=== attempt 2 failed" in log


def test_a_worker_killed_mid_task_leads_to_a_retry_and_the_same_result(client, tmp_path):
    reference = plan_of("synthetic", trials=1)
    grid.run_serial(reference, store_root=tmp_path / "serial")
    tasks = plan_of("synthetic", trials=1, training=gridplans.TinyTraining(pause_s=0.5))
    assert [p.key for p in tasks] == [p.key for p in reference]  # the pause is not part of any key
    training = tasks[1]
    checkpoints = tmp_path / "grid" / "_checkpoints" / gridplans.ENTRY / training.key
    result: dict[str, Any] = {}
    runner = threading.Thread(target=lambda: result.update(
        outcomes=grid.run_grid(tasks, client, store_root=tmp_path / "grid", progress=False)))
    runner.start()
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("epoch_0002.pt")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(checkpoints.glob("epoch_0002.pt")), "the training never reached epoch 2"
    busy = [addr for addr, keys in client.processing().items() if any(training.key in str(k) for k in keys)]
    assert len(busy) == 1
    pid = client.run(os.getpid, workers=busy)[busy[0]]
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=600)
    outcome = result["outcomes"][1]
    assert outcome.status == "computed", outcome.row()
    assert outcome.attempts == 2 and str(pid) not in outcome.worker
    assert_same_entries(tmp_path / "serial", tmp_path / "grid", reference)
    client.wait_for_workers(2, timeout=300)  # the nanny restarted the killed worker


# --- two grids at once, chapters after a grid, paper dry runs (slow: processes and notebooks) ---------------

TWO_RUNS = """
import os
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import cloudpickle, gridplans
cloudpickle.register_pickle_by_value(gridplans)
from glassbox import grid
from glassbox.core import cluster
from glassbox.data.lowdose_ct import DATA_PROFILES

if __name__ == "__main__":
    tasks = grid.topological([grid.Planned(t, ("test",)) for t in gridplans.plan(DATA_PROFILES["smoke"], trials=3)
                              + gridplans.pid_probes(30, ready={ready!r}, hold_s=0.1, size=1 << 22)])
    with cluster.open_client(workers=2) as client:
        Path({ready!r}, str(os.getpid())).touch()  # the probes start once both runs are up
        outcomes = grid.run_grid(tasks, client, store_root={store!r}, progress=False)
    print("STATUSES", [o.status for o in outcomes])
"""


@pytest.mark.slow
def test_two_grid_runs_at_once_on_one_store_leave_no_mismatched_entry(tmp_path):
    if not callable(getattr(Store, "lock", None)):
        pytest.skip("the store has no per-key lock yet (Store.lock, issue #18's store hardening): two writers of "
                    "one key can pair one's payload with the other's checksum")
    script = tmp_path / "run.py"
    (tmp_path / "ready").mkdir()
    script.write_text(TWO_RUNS.format(tests=str(Path(__file__).parent), store=str(tmp_path / "store"),
                                      ready=str(tmp_path / "ready")))
    runs = [subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for _ in range(2)]
    outputs = [r.communicate(timeout=900)[0] for r in runs]
    assert all(r.returncode == 0 for r in runs), outputs
    tasks = plan_of("synthetic", trials=3)
    grid.run_serial(tasks, store_root=tmp_path / "serial")
    probes = planned(gridplans.pid_probes(30))  # each run stores its own pid: writers' payloads differ
    mismatched = [f"{p.task.entry} {p.key}" for p in tasks + probes if not is_stored(Store(tmp_path / "store"), p.task)]
    assert not mismatched, f"{len(mismatched)} of {len(tasks + probes)} entries missing or not matching their checksum"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_same_entries(tmp_path / "serial", tmp_path / "store", tasks)
    assert not [str(w.message) for w in caught if "store" in str(w.message).lower()]


@pytest.mark.slow
@pytest.mark.parametrize("chapter", chapter_plans())
def test_after_a_grid_run_the_chapter_trains_nothing(tmp_path, chapter):
    env = dict(os.environ, GLASSBOX_STORE=str(tmp_path / "store"), GLASSBOX_RESULTS=str(tmp_path / "results"))
    run = subprocess.run([sys.executable, "-m", "glassbox.grid", "run", chapter, "--profile", "smoke", "--workers",
                          "2", "--no-progress"], env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    before = store_snapshot(tmp_path / "store")
    if not plan_of(chapter):
        assert not before, f"{chapter} plans nothing, yet the grid stored {sorted(before)}"
        pytest.skip(f"{chapter} plans nothing (it reads only results files): there is nothing for the grid to precompute")
    assert before
    papermill = Path(sys.executable).parent / "papermill"
    notebook = subprocess.run([str(papermill), str(ROOT / "book" / f"{chapter}.ipynb"), str(tmp_path / "out.ipynb"),
                               "-p", "profile", "smoke", "--cwd", str(ROOT / "book")],
                              env=env, capture_output=True, text=True, timeout=1800)
    assert notebook.returncode == 0, notebook.stderr[-4000:]
    outputs = "".join(o.get("text", "") if isinstance(o.get("text"), str) else "".join(o.get("text", []))
                      for cell in json.loads((tmp_path / "out.ipynb").read_text())["cells"]
                      for o in cell.get("outputs", []))
    assert "computing" not in outputs, [line for line in outputs.splitlines() if "computing" in line]
    assert store_snapshot(tmp_path / "store") == before  # store hits only: no entry written or rewritten


def check_dry_run(tmp_path: Path, chapter: str, profile: str) -> None:
    """``grid run <chapter> --profile <profile> --dry-run`` on the CPU: every task either computes with its loops
    cut short or fails with a clear out-of-memory report; nothing reaches the real store."""
    report = tmp_path / "report.json"
    env = dict(os.environ, GLASSBOX_STORE=str(tmp_path / "store"))
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "glassbox.grid", "run", chapter, "--profile", profile, "--device",
                          "cpu", "--dry-run", "--workers", "1", "--no-progress", "--report", str(report)],
                         env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    assert report.exists(), run.stdout[-4000:] + run.stderr[-4000:]
    rows = json.loads(report.read_text())["tasks"]
    assert rows, f"the {profile} dry run of {chapter} planned no task"
    print(f"\n{profile} dry run of {chapter}: {seconds:.0f} s wall, tasks:")
    for row in rows:
        print(f"  {row['entry']:24s} {row['status']:9s} {row['seconds'] or 0:7.1f} s {row['peak_mb'] or 0:8.0f} MiB "
              f"cut {row['cut']} {row['error'][:200]}")
    other = [r for r in rows if r["status"] != "computed" and "out of memory" not in r["error"]
             and r["status"] != "blocked"]
    assert not other, other  # every failure is a clear out-of-memory report, nothing else
    uncut = [r["label"] for r in rows if r["status"] == "computed" and not r["cut"] and not r["found"]]
    assert not uncut, f"tasks ran to their end without a dry-run hook: {uncut}"
    assert not list((tmp_path / "store").glob("*/*.json")), "a dry run must not write into the real store"
    assert run.returncode == (0 if all(r["status"] == "computed" for r in rows) else 1)


@pytest.mark.slow
def test_smoke_dry_run_of_every_chapter_cuts_every_task(tmp_path):
    """Every task of every chapter meets a dry-run hook (on smoke: a minute; the paper sizes are opt-in below)."""
    check_dry_run(tmp_path, "all", "smoke")


@pytest.mark.slow
@pytest.mark.paper_dry_run
@pytest.mark.parametrize("chapter", chapter_plans())
def test_paper_dry_run_fits_or_says_clearly_that_it_does_not(tmp_path, chapter):
    check_dry_run(tmp_path, chapter, "paper")
