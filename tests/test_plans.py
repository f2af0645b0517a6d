"""The plan() contract of the Qu studies: after every task of a chapter's plan has run, the chapter's entry point
computes nothing through the store (no training, no simulation), and the plan lists every entry the chapter stores."""
from __future__ import annotations

import pytest

from glassbox.core.store import Store
from glassbox.core.tasks import Task
from glassbox.studies import feature_space, randomness, unet_training


def _in_dependency_order(tasks: list[Task]) -> list[Task]:
    done: set[str] = set()
    ordered: list[Task] = []
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if set(t.deps) <= done]
        assert ready, f"the plan's dependencies form a cycle or name unknown tasks: {[t.deps for t in pending]}"
        for task in ready:
            ordered.append(task)
            done.add(task.key)
            pending.remove(task)
    return ordered


@pytest.fixture
def saves(monkeypatch, tmp_path):
    """Every store entry written (a write happens only on a miss), in a store of its own."""
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "store"))
    written: list[str] = []
    original = Store._write  # where save() and get_or_compute() both write an entry

    def counting_write(self, name, key, value, record):
        written.append(key)
        return original(self, name, key, value, record)

    monkeypatch.setattr(Store, "_write", counting_write)
    return written


@pytest.mark.slow
@pytest.mark.parametrize("study", [unet_training, feature_space, randomness], ids=lambda m: m.__name__.split(".")[-1])
def test_after_the_plan_the_chapter_computes_nothing(study, saves):
    config = study.PROFILES["smoke"]
    tasks = study.plan(config, seed=0, device="cpu")
    keys = [t.key for t in tasks]
    assert len(set(keys)) == len(keys), "a plan lists each store entry once"
    assert all(dep in keys for t in tasks for dep in t.deps)
    for task in _in_dependency_order(tasks):
        before = len(saves)
        task.run()
        assert saves[before:] == [task.key], f"{task.label}: the task wrote {saves[before:]}, not its own entry"
    misses = len(saves)
    study.run(config, seed=0, device="cpu", progress=False)
    assert saves[misses:] == [], f"{study.__name__}.run computed {len(saves) - misses} entries the plan missed"


def test_plans_are_cheap_and_name_the_same_grid(monkeypatch, tmp_path):
    """Planning simulates nothing; the two Qu chapters plan the same trainings (the feature chapter adds none)."""
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "empty"))
    config = unet_training.PROFILES["smoke"]
    training = {t.key for t in unet_training.plan(config, seed=0, device="cpu")}
    features = {t.key for t in feature_space.plan(config, seed=0, device="cpu")}
    assert features < training                                       # + control and thread experiment
    grid = [t for t in unet_training.plan(config, seed=0, device="cpu") if t.entry == "denoiser"]
    # 3 depths x (trial 1 shared by three modes + trial 2 of each mode) + the control
    assert len(grid) == 3 * 4 + 1
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.pt"))
    trials = [t for t in randomness.plan(randomness.PROFILES["smoke"], seed=0, device="cpu") if t.entry == "randomness-trial"]
    conditions = randomness.conditions_for(randomness.PROFILES["smoke"], "cpu")
    assert len(trials) == randomness.PROFILES["smoke"].n_pairs * (1 + len(conditions))   # one trial A per pair
