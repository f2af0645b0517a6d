"""Provenance: the store's access log, the run record's new fields, and the block every chapter ends with."""
from __future__ import annotations

import json
import re
from pathlib import Path

from glassbox.chapters import setup_run
from glassbox.core import repro, store
from glassbox.report.provenance import Provenance, rows


def test_access_log_records_misses_then_hits(tmp_path):
    store.access_log(clear=True)
    calls = []
    first = store.get_or_compute("demo", {"a": 1}, lambda: calls.append(1) or 42, root=tmp_path, progress=False)
    second = store.get_or_compute("demo", {"a": 1}, lambda: calls.append(1) or 43, root=tmp_path, progress=False)
    assert first == second == 42 and calls == [1]
    key = store.key_of("demo", {"a": 1})
    assert store.access_log() == [("demo", key, False), ("demo", key, True)]
    assert store.access_log(clear=True) and store.access_log() == []


def test_run_record_carries_artifacts_wall_time_and_notebook(tmp_path):
    store.get_or_compute("before", {"a": 1}, lambda: 1, root=tmp_path, progress=False)
    run = setup_run("data", profile="smoke", device="cpu", seed=0)  # a new run starts an empty log
    store.get_or_compute("during", {"b": 2}, lambda: 2, root=tmp_path, progress=False)
    record = run.record()
    assert [a["name"] for a in record["artifacts"]] == ["during"] and record["artifacts"][0]["hit"] is False
    assert record["wall_seconds"] >= 0
    assert record["notebook_source"] == repro.notebook_fingerprint(Path(__file__).parents[1] / "book" / "data.ipynb")
    assert set(record["git"]) == {"commit", "dirty"} and "cuda" in record and "gpu" in record
    json.dumps(record, default=str)


def test_notebook_fingerprint_sees_code_only(tmp_path):
    def write(cells):
        path = tmp_path / "nb.ipynb"
        path.write_text(json.dumps({"cells": cells}))
        return repro.notebook_fingerprint(path)

    code = {"cell_type": "code", "source": ["x = 1\n", "y = 2"], "outputs": []}
    base = write([code, {"cell_type": "markdown", "source": "text"}])
    assert base == write([dict(code, outputs=[{"text": "1"}]), {"cell_type": "markdown", "source": "other text"}])
    assert base != write([dict(code, source="x = 1\ny = 3")])
    assert repro.notebook_fingerprint(tmp_path / "absent.ipynb") is None


def test_git_state_outside_a_checkout(tmp_path):
    assert repro.git_state(tmp_path) == {"commit": None, "dirty": None}
    state = repro.git_state()
    if state["commit"] is not None:  # the test suite runs from a checkout (CI clones one)
        assert re.fullmatch(r"[0-9a-f]{40}", state["commit"]) and isinstance(state["dirty"], bool)


RECORD = {"parameters": {"profile": "smoke", "data_dir": None}, "seed": 3, "device": "cuda (NVIDIA H200)",
          "gpu": "NVIDIA H200", "cuda": "12.4", "versions": {"torch": "2.5.0", "numpy": "2.0"},
          "git": {"commit": "a" * 40, "dirty": True}, "glassbox_source": "0123456789abcdef",
          "notebook_source": "fedcba9876543210", "pinned_threads": 1,
          "artifacts": [{"name": "ct-dataset", "key": "k1", "hit": True}, {"name": "unet", "key": "k2", "hit": False}],
          "wall_seconds": 125.0, "created": "2026-01-01T00:00:00+00:00"}


def test_provenance_shows_every_field_the_issue_asks_for():
    block = Provenance(RECORD, extra={"results files read": ["results/data.json"]})
    html, text = block._repr_html_(), repr(block)
    assert html.startswith("<details") and "<summary>Provenance of this page</summary>" in html
    for expected in ("aaaaaaaaaaaa (with uncommitted changes)", "smoke", "3", "cuda (NVIDIA H200)", "NVIDIA H200",
                     "2.5.0", "12.4", "0123456789abcdef", "fedcba9876543210", "ct-dataset k1 (hit)",
                     "unet k2 (miss: computed)", "2 min 5 s", "results/data.json"):
        assert expected in html and expected in text, expected


def test_provenance_of_a_bare_record_says_what_is_unknown():
    labels = dict(rows({"parameters": {}}))
    assert labels["git commit"] == "not a git checkout" and labels["GPU"] == "none"
    assert labels["artifacts"] == "none from the store" and labels["wall time since set-up"] == "—"
    assert "<script>" not in Provenance({"parameters": {"profile": "<script>"}})._repr_html_()
