"""Results files: one JSON per chapter, ours and the paper's side by side."""
import json

import numpy as np
import pandas as pd
import pytest

from glassbox.report.results import load_all, load_results, save_results, to_jsonable


def test_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    table = pd.DataFrame({"layer": ["Down1", "Up1"], "svcca": [0.5, np.float32(0.25)]})
    path = save_results("demo", {"psnr": np.float64(31.5), "table": table, "bad": float("nan")},
                        record={"parameters": {"profile": "smoke"}}, paper={"psnr": 30.0})
    assert path == tmp_path / "demo.json"
    doc = load_results("demo")
    assert doc["profile"] == "smoke" and doc["ours"]["psnr"] == 31.5 and doc["paper"]["psnr"] == 30.0
    assert doc["ours"]["table"][1] == {"index": 1, "layer": "Up1", "svcca": 0.25}
    assert doc["ours"]["bad"] is None  # NaN is not valid JSON; it becomes null
    assert list(load_all()) == ["demo"]
    json.loads(path.read_text())  # strict JSON


def test_missing_results_name_the_chapter(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no results for chapter 'nothing'"):
        load_results("nothing")


def test_bad_chapter_name():
    with pytest.raises(ValueError, match="chapter must be a simple name"):
        save_results("../x", {}, record={})


def test_to_jsonable_handles_arrays():
    assert to_jsonable({"a": np.arange(3), "b": (1, np.inf)}) == {"a": [0, 1, 2], "b": [1, None]}
