"""Results files: one JSON per chapter, ours and the paper's side by side."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from glassbox.report.results import ResultsFileError, load_all, load_results, save_results, to_jsonable


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    table = pd.DataFrame({"layer": ["Down1", "Up1"], "svcca": [0.5, np.float32(0.25)]})
    path = save_results("demo", {"psnr": np.float64(31.5), "table": table, "bad": float("nan")},
                        record={"parameters": {"profile": "smoke"}}, paper={"psnr": 30.0})
    assert path == tmp_path / "demo.json"
    doc = load_results("demo")
    assert doc["profile"] == "smoke" and doc["ours"]["psnr"] == 31.5 and doc["paper"]["psnr"] == 30.0
    assert doc["ours"]["table"][1] == {"index": 1, "layer": "Up1", "svcca": 0.25}
    assert np.isnan(doc["ours"]["bad"])  # NaN comes back as NaN ...
    assert json.loads(path.read_text())["ours"]["bad"] == "NaN"  # ... spelled out in the file, not null
    assert list(load_all()) == ["demo"]
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))  # strict JSON


def test_missing_results_name_the_chapter(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no results for chapter 'nothing'"):
        load_results("nothing")


def test_bad_chapter_name():
    with pytest.raises(ValueError, match="chapter must be a simple name"):
        save_results("../x", {}, record={})


def test_to_jsonable_handles_arrays():
    assert to_jsonable({"a": np.arange(3), "b": (1, np.inf)}) == {"a": [0, 1, 2], "b": [1, "Infinity"]}


def test_non_finite_numbers_are_explicit_in_the_file_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    numbers = {"nan": float("nan"), "inf": np.float32(np.inf), "ninf": -np.inf, "row": [1.0, np.nan],
               "tensor": __import__("torch").tensor([np.inf]), "table": pd.DataFrame({"x": [np.nan]})}
    path = save_results("demo", numbers, record={})
    written = json.loads(path.read_text())["ours"]
    assert written["nan"] == "NaN" and written["inf"] == "Infinity" and written["ninf"] == "-Infinity"
    assert written["row"] == [1.0, "NaN"] and written["tensor"] == ["Infinity"]
    assert written["table"] == [{"index": 0, "x": "NaN"}]
    back = load_results("demo")["ours"]
    assert np.isnan(back["nan"]) and back["inf"] == np.inf and back["ninf"] == -np.inf and np.isnan(back["row"][1])
    assert to_jsonable(float("nan"), nonfinite="float") != to_jsonable(float("nan"), nonfinite="float")  # a float


def test_text_that_spells_a_non_finite_number_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    with pytest.raises(ValueError, match="'NaN' cannot be written"):
        save_results("demo", {"label": "NaN"}, record={})


@pytest.mark.parametrize("content, match", [("{not json", "not valid JSON"), ('["a list"]', "not a glassbox results"),
                                            (b"\xff\xfe", "not valid JSON")])
def test_a_broken_results_file_is_named(tmp_path, monkeypatch, content, match):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    save_results("good", {"x": 1}, record={})
    bad = tmp_path / "bad.json"
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ResultsFileError, match=rf"results file {bad}.*{match}"):
        load_all()
    with pytest.raises(ResultsFileError, match=str(bad)):
        load_results("bad")


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_results_files_get_the_users_umask(tmp_path, monkeypatch, umask):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    old = os.umask(umask)
    try:
        path = save_results("demo", {"x": 1}, record={})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert not list(tmp_path.glob(".*.tmp"))
