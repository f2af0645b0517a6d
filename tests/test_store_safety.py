"""The store with entries from elsewhere and many writers: nothing runs on load, no mixed entries, no litter.

Concurrency tests start real processes that write into one store folder at the same time.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.core import store as store_module
from glassbox.core.store import (
    FORMAT,
    Store,
    StoreWarning,
    UnsafeEntryError,
    clean_orphans,
    decode_value,
    encode_value,
    get_or_compute,
    key_of,
    write_atomically,
)
from glassbox.data import mri
from glassbox.studies import data as data_study

# fork where there is one: spawn re-imports torch in every child, which took ~10 s per test on a busy 2-core machine
PROCESSES = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def same(a, b) -> bool:
    """Structural equality that also compares types, dtypes and array contents."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, np.generic):
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and np.isnan(a):
        return np.isnan(b)
    if hasattr(a, "__dataclass_fields__"):
        return all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    return a == b


def store_round_trip(tmp_path: Path, value):
    s = Store(tmp_path)
    s.save("thing", "k1", value, {})
    found, back = s.load("thing", "k1")
    assert found
    return back


# --- what an entry may hold --------------------------------------------------------------------------


def test_every_kind_of_stored_value_round_trips(tmp_path):
    mr = mri.MRIDataset(images=np.random.default_rng(0).random((2, 4, 4), dtype=np.float32),
                        labels=np.array([0, 1]), patients=np.array(["P001", "P002"]),
                        tumour_masks=np.zeros((2, 4, 4), bool), vendor="A")
    value = {
        "state_dict": collections.OrderedDict(w=torch.randn(3, 2), b=torch.nn.Parameter(torch.zeros(2))),
        "arrays": [np.arange(6, dtype=np.uint16).reshape(2, 3), np.array([1.5, np.nan], dtype=">f4"),
                   np.array(3.0), np.zeros((0, 5)), np.array([True, False]), np.array(["ab", "c"]),
                   np.arange(10)[::3], np.array([1 + 2j])],
        "scalars": (np.float64(2.5), np.int32(-7), np.bool_(True), 3, 2.0, float("inf"), None, "s", b"raw", 2**70),
        "history": [{"epoch": 1, "loss": 0.5}],
        "torch": (torch.Size([1, 2]), torch.float16, torch.device("cpu")),
        "dataclasses": [mr, data_study.PROFILES["smoke"]],
        "tagged-looking tuple": (store_module._TAG + "ndarray", 1, 2),
        (1, "tuple key"): "x",
    }
    back = store_round_trip(tmp_path, value)
    assert same(back, value)
    assert back["arrays"][0].flags.writeable  # usable like the original


def test_arrays_that_share_memory_with_tensors_round_trip(tmp_path):
    """As kspace's models store them: a state_dict tensor and ``tensor.numpy()`` views of it (found on smoke)."""
    weights = torch.rand(4, 4)
    value = {"state_dict": {"mask": weights}, "eval_mask": weights.numpy(), "flat": weights.numpy().reshape(-1)}
    back = store_round_trip(tmp_path, value)
    assert same(back, value)


plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
    | st.binary(max_size=5) | st.sampled_from([store_module._TAG, store_module._TAG + "ndarray"]),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12)


@settings(max_examples=100, deadline=None)
@given(plain)
def test_encoding_of_plain_data_is_lossless(value):
    assert same(decode_value(encode_value(value)), value)


@pytest.mark.parametrize("value, where", [
    ({"frame": __import__("pandas").DataFrame({"a": [1]})}, r"value\['frame'\]: cannot store a pandas"),
    ({"objects": np.array([{}, 1], dtype=object)}, r"value\['objects'\].*dtype object"),
    ([lambda: 1], r"value\[0\]: cannot store a builtins.function"),
    ({"s": {1, 2}}, r"value\['s'\]: cannot store a builtins.set"),
    ({"model": torch.nn.Linear(1, 1)}, r"cannot store a torch.nn.modules.linear.Linear"),
    ({np.int64(1): 2}, "dict key"),
])
def test_values_that_could_hold_code_are_refused_when_saved(tmp_path, value, where):
    with pytest.raises(TypeError, match=where):
        get_or_compute("thing", {"n": 1}, lambda: value, root=tmp_path, progress=False)
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.tmp"))


@dataclasses.dataclass(frozen=True)
class NotFromGlassbox:
    n: int


def test_dataclasses_from_outside_glassbox_are_refused(tmp_path):
    with pytest.raises(TypeError, match="only dataclasses and enums defined at module level in glassbox"):
        Store(tmp_path).save("thing", "k1", {"cfg": NotFromGlassbox(1)}, {})


# --- entries from elsewhere ---------------------------------------------------------------------------


class RunsCode:
    """Pickles to a call of os.system: loading it with plain pickle creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def plant(store: Store, name: str, key: str, obj) -> Path:
    """Write ``obj`` with plain torch.save as the payload of (name, key), with a matching checksum."""
    payload, meta = store.paths(name, key)
    payload.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, payload)
    meta.write_text(json.dumps({"name": name, "key": key, "sha256": store_module._sha256(payload)}))
    return payload


def test_malicious_entry_with_matching_checksum_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    s = Store(tmp_path / "store")
    key = key_of("thing", {"n": 1})
    payload = plant(s, "thing", key, {"format": FORMAT, "value": {"state_dict": RunsCode(marker)}})
    computed = []
    with pytest.raises(UnsafeEntryError, match=rf"{payload}.*other than tensors and plain data.*refused.*Delete"):
        s.get_or_compute("thing", {"n": 1}, lambda: computed.append(1), progress=False)
    with pytest.raises(UnsafeEntryError):
        s.load("thing", key)
    assert not marker.exists() and not computed
    assert payload.exists()  # left for the user to inspect, not silently replaced
    # the planted file really is an attack: an unrestricted load runs its code
    torch.load(payload, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("planted, match", [
    ({"format": FORMAT, "value": (store_module._TAG + "dataclass", "os:system", {})}, "only classes of glassbox"),
    ({"format": FORMAT, "value": (store_module._TAG + "dataclass", "glassbox.core.store:Store", {})}, "not a dataclass"),
    ({"format": FORMAT, "value": (store_module._TAG + "enum", "glassbox.core.store:Store", 1)}, "not an enum"),
    ({"format": FORMAT, "value": (store_module._TAG + "ndarray", "|O8", (1,), torch.zeros(8, dtype=torch.uint8))},
     "not a numeric"),
    ({"format": FORMAT, "value": (store_module._TAG + "ndarray", "<f8", (4,), torch.zeros(8, dtype=torch.uint8))},
     "8 bytes"),
    ({"format": FORMAT, "value": {1, 2}}, "a set, which the store never writes"),
    ({"w": torch.ones(2)}, "is not a 'glassbox-store/2' entry"),
])
def test_forged_entries_are_refused(tmp_path, planted, match):
    s = Store(tmp_path)
    plant(s, "thing", "k1", planted)
    with pytest.raises(UnsafeEntryError, match=match):
        s.load("thing", "k1")


def test_damaged_entries_are_still_recomputed_with_a_warning(tmp_path):
    s = Store(tmp_path)
    s.save("thing", "k1", {"x": np.arange(3)}, {})
    payload, meta = s.paths("thing", "k1")
    payload.write_bytes(payload.read_bytes()[:-40])  # a torch file cut short, but with a matching checksum
    meta.write_text(json.dumps({"sha256": store_module._sha256(payload)}))  # matching checksum, unreadable file
    with pytest.warns(StoreWarning, match="torch cannot read it"):
        assert s.load("thing", "k1") == (False, None)
    meta.write_text("{not json")
    with pytest.warns(StoreWarning, match="metadata unreadable"):
        assert s.load("thing", "k1") == (False, None)


# --- files on disk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_get_the_users_umask_not_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        s = Store(tmp_path)
        s.save("thing", "k1", {"x": 1}, {})
        written = write_atomically(tmp_path / "other.bin", lambda handle: handle.write(b"x"))
    finally:
        os.umask(old)
    for path in (*s.paths("thing", "k1"), written, tmp_path / "thing" / ".k1.lock"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


def test_payload_is_fsynced_and_hashed_before_it_is_renamed(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace, real_sha = os.fsync, os.replace, store_module._sha256
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(f"rename {Path(b).suffix}"), real_replace(a, b))[1])
    monkeypatch.setattr(store_module, "_sha256", lambda p: (events.append(f"hash {Path(p).name[-4:]}"), real_sha(p))[1])
    Store(tmp_path).save("thing", "k1", {"x": 1}, {})
    # payload temp fsynced, hashed while still temporary, metadata temp fsynced, renames, folder fsynced
    assert events == ["fsync", "hash .tmp", "fsync", "rename .pt", "rename .json", "fsync"]


def test_orphan_rules(tmp_path):
    folder = tmp_path / "thing"
    folder.mkdir()
    dead_here = PROCESSES.Process(target=time.sleep, args=(0,))
    dead_here.start()
    dead_here.join()
    host = store_module._host()
    orphan = folder / f".k1.pt.{host}.{dead_here.pid}.0abc.tmp"
    live = folder / f".k2.pt.{host}.{os.getpid()}.0abc.tmp"
    elsewhere_fresh = folder / ".k3.pt.otherhost.1.0abc.tmp"
    elsewhere_old = folder / ".k4.pt.otherhost.1.0abc.tmp"
    legacy_old = folder / ".k5.pt.x8y2ab.tmp"  # a mkstemp name from before: only age tells
    for path in (orphan, live, elsewhere_fresh, elsewhere_old, legacy_old):
        path.write_bytes(b"partial")
    hours_ago = time.time() - 2 * store_module.ORPHAN_AGE_S
    for path in (elsewhere_old, legacy_old):
        os.utime(path, (hours_ago, hours_ago))
    assert sorted(clean_orphans(folder)) == sorted([orphan, elsewhere_old, legacy_old])
    assert live.exists() and elsewhere_fresh.exists()


# --- many writers ------------------------------------------------------------------------------------


def _save_many(root: str, n_keys: int, writer: int, barrier) -> None:
    s = Store(root)
    payload = np.full(100_000, writer, dtype=np.int64)  # 0.8 MB: big enough that writes overlap
    barrier.wait()
    for i in range(n_keys):
        s.save("race", f"k{i:03d}", {"writer": writer, "data": payload}, {"writer": writer})


def _compute_many(root: str, n_keys: int, log: str, writer: int, barrier) -> None:
    barrier.wait()
    for i in range(n_keys):
        def compute(i=i):
            with open(log, "a") as fh:
                fh.write(f"{writer} {i}\n")
            time.sleep(0.002)
            return {"writer": writer, "i": i}
        get_or_compute("race", {"i": i}, compute, root=root, progress=False)


def _run_together(target, *args) -> None:
    """Run ``target(*args, writer, barrier)`` in two processes that start their work at the same moment."""
    barrier = PROCESSES.Barrier(2)
    processes = [PROCESSES.Process(target=target, args=(*args, writer, barrier)) for writer in (1, 2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"


def test_two_processes_writing_the_same_keys_leave_no_mixed_entry(tmp_path):
    n_keys = 100
    _run_together(_save_many, str(tmp_path), n_keys)
    s = Store(tmp_path)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)  # a checksum mismatch would warn
        for i in range(n_keys):
            found, value = s.load("race", f"k{i:03d}")
            meta = json.loads(s.paths("race", f"k{i:03d}")[1].read_text())
            assert found and meta["writer"] == value["writer"] and (value["data"] == value["writer"]).all()
    assert not list((tmp_path / "race").glob("*.tmp"))


def test_two_processes_computing_the_same_keys_compute_each_once(tmp_path):
    n_keys, log = 30, tmp_path / "computed.log"
    _run_together(_compute_many, str(tmp_path / "store"), n_keys, str(log))
    computed = [line.split()[1] for line in log.read_text().splitlines()]
    assert sorted(computed) == sorted(str(i) for i in range(n_keys))  # every key once, by one writer or the other


def _write_and_hang(root: str, ready) -> None:
    real_save = torch.save

    def save_then_hang(obj, handle):
        real_save(obj, handle)
        handle.flush()
        ready.set()
        time.sleep(600)

    torch.save = save_then_hang
    Store(root).save("thing", "k1", {"x": np.zeros(100_000)}, {})


def test_a_killed_writers_temporary_file_is_cleaned_and_its_lock_freed(tmp_path):
    ready = PROCESSES.Event()
    child = PROCESSES.Process(target=_write_and_hang, args=(str(tmp_path), ready))
    child.start()
    try:
        assert ready.wait(120), "the writer never got going"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    left = list((tmp_path / "thing").glob(".*.tmp"))
    assert len(left) == 1 and f".{child.pid}." in left[0].name and left[0].stat().st_size > 100_000
    s = Store(tmp_path)
    lock = s.lock("thing", "k1")
    lock.acquire(timeout=10)  # the dead writer's lock is free
    lock.release()
    s.save("thing", "k2", {"y": 1}, {})  # the next write in the folder cleans up
    assert not list((tmp_path / "thing").glob(".*.tmp"))
    assert s.load("thing", "k1") == (False, None) and s.load("thing", "k2")[0]
