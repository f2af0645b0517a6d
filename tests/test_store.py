"""The artifact store: get-or-compute, stable keys, atomic writes, damage detection."""
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from glassbox.core import store as store_module
from glassbox.core.store import Store, StoreWarning, canonical, get_or_compute, key_of


@dataclass(frozen=True)
class Cfg:
    n: int
    dose: float


def test_computes_once_then_loads(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"x": np.arange(5.0), "t": torch.ones(2)}

    a = get_or_compute("thing", {"n": 1}, compute, root=tmp_path, progress=False)
    b = get_or_compute("thing", {"n": 1}, compute, root=tmp_path, progress=False)
    assert len(calls) == 1
    np.testing.assert_array_equal(a["x"], b["x"])
    assert torch.equal(a["t"], b["t"])


def test_key_is_stable_and_sensitive():
    assert key_of("a", {"n": 1, "m": 2}) == key_of("a", {"m": 2, "n": 1})  # order does not matter
    assert key_of("a", Cfg(1, 0.25)) == key_of("a", {"n": 1, "dose": 0.25})
    assert key_of("a", {"n": 1}) != key_of("a", {"n": 2})
    assert key_of("a", {"n": 1}) != key_of("b", {"n": 1})
    assert key_of("a", {"n": np.int64(1)}) == key_of("a", {"n": 1})


def test_key_depends_on_library_source(monkeypatch):
    before = key_of("a", {"n": 1})
    monkeypatch.setattr(store_module, "library_fingerprint", lambda: "0" * 16)
    assert key_of("a", {"n": 1}) != before


def test_unhashable_config_is_a_clear_error():
    with pytest.raises(TypeError, match=r"config.model: cannot use a Linear"):
        canonical({"model": torch.nn.Linear(1, 1)})
    with pytest.raises(ValueError, match="non-finite"):
        canonical({"x": float("nan")})


def test_truncated_entry_is_recomputed_with_warning(tmp_path):
    s = Store(tmp_path)
    s.get_or_compute("thing", {"n": 1}, lambda: np.arange(1000.0), progress=False)
    payload, meta = s.paths("thing", key_of("thing", {"n": 1}))
    payload.write_bytes(payload.read_bytes()[:100])
    with pytest.warns(StoreWarning, match="checksum mismatch"):
        value = s.get_or_compute("thing", {"n": 1}, lambda: np.arange(1000.0), progress=False)
    np.testing.assert_array_equal(value, np.arange(1000.0))
    found, _ = s.load("thing", key_of("thing", {"n": 1}))  # the damaged entry was replaced
    assert found


def test_payload_without_metadata_is_not_an_entry(tmp_path):
    """A run killed after writing the payload but before the metadata leaves no valid entry."""
    s = Store(tmp_path)
    payload, meta = s.paths("thing", key_of("thing", {"n": 1}))
    payload.parent.mkdir(parents=True)
    torch.save(np.arange(3), payload)
    found, _ = s.load("thing", key_of("thing", {"n": 1}))
    assert not found


def test_failed_compute_leaves_nothing(tmp_path):
    def boom():
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        get_or_compute("thing", {"n": 1}, boom, root=tmp_path, progress=False)
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.json"))


def test_metadata_records_config_and_versions(tmp_path):
    s = Store(tmp_path)
    s.get_or_compute("thing", {"n": 1}, lambda: 1, seed=4, progress=False)
    _, meta = s.paths("thing", key_of("thing", {"n": 1}))
    info = json.loads(meta.read_text())
    assert info["parameters"] == {"n": 1} and info["seed"] == 4 and "torch" in info["versions"]


def test_bad_entry_name(tmp_path):
    with pytest.raises(ValueError, match="store entry name"):
        get_or_compute("../escape", {}, lambda: 1, root=tmp_path, progress=False)
