"""Student editions (``make student``): no solution leaks, a correct answer passes every check, a bare stub fails it.

- fast: every chapter with exercises has stub, solution, check in a row; its student edition holds no line of any
  solution (and the leak detector does find a leak when one is planted); the CLI writes the editions;
- slow: each student edition runs on ``smoke`` with the reference solutions filled in, and with the bare stubs
  every answer-check cell fails while every other cell runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from glassbox.report import student

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = student.chapters_with_exercises(BOOK)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_some_chapter_has_exercises():
    assert "pixelwise" in [p.stem for p in CHAPTERS]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_exercise_has_a_solution_and_an_answer_check(path):
    nb = _load(path)
    found = student.exercises(nb, path.name)
    assert found, f"{path.name} has no exercise"
    for exercise in found:
        stub = "".join(nb["cells"][exercise.stub]["source"])
        check = "".join(nb["cells"][exercise.check]["source"])
        assert "NotImplementedError" in stub, f"{path.name}: the stub in cell {exercise.stub} must raise NotImplementedError"
        function = stub.split("def ", 1)[1].split("(", 1)[0]
        assert function in check, f"{path.name}: the answer check in cell {exercise.check} must test {function}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_holds_no_solution(path):
    original = _load(path)
    edition = student.student_edition(original, path.name)
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in edition["cells"]]
    assert not any(student.SOLUTION in t for t in tags)
    assert sum(student.EXERCISE in t for t in tags) == sum(student.CHECK in t for t in tags) == \
        len(student.exercises(original))
    assert not any(c.get("outputs") for c in edition["cells"] if c["cell_type"] == "code")
    assert student.solution_only_lines(original), "every solution must hold something the stub does not"
    assert student.leaked_lines(edition, original) == []


def test_leak_detector_finds_a_planted_solution():
    path = CHAPTERS[0]
    original = _load(path)
    edition = student.student_edition(original)
    assert student.leaked_lines(student.with_solutions(edition, original), original), "a filled-in edition leaks"
    secret = sorted(student.solution_only_lines(original), key=len)[-1]
    edition["cells"][-1]["source"] = ["# " + secret]
    assert student.leaked_lines(edition, original)


def test_exercise_layout_errors_are_named():
    cells = [{"cell_type": "code", "metadata": {"tags": ["exercise"]}, "source": "def f():\n    raise NotImplementedError"},
             {"cell_type": "code", "metadata": {"tags": ["answer-check"]}, "source": "check(f)"}]
    with pytest.raises(student.ExerciseLayoutError, match="followed by a cell tagged 'solution'"):
        student.exercises({"cells": cells})
    cells.insert(1, {"cell_type": "code", "metadata": {"tags": ["solution"]}, "source": "def f():\n    return 1"})
    with pytest.raises(student.ExerciseLayoutError, match="hide-cell"):
        student.exercises({"cells": cells})


def test_make_student_script_writes_every_edition(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "student_edition.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("*.ipynb")) == sorted(p.name for p in CHAPTERS)


def _execute(nb: dict, tmp_path: Path) -> dict:
    """Run a notebook on smoke with errors allowed; return it executed."""
    import nbformat
    from nbclient import NotebookClient

    env = {"GLASSBOX_PROFILE": "smoke", "MPLBACKEND": "Agg"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        notebook = nbformat.reads(json.dumps(nb), as_version=4)
        NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(BOOK)}}).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return json.loads(nbformat.writes(notebook))


def _errors(nb: dict) -> dict[int, str]:
    return {i: next(o["ename"] + ": " + o["evalue"][:200] for o in c["outputs"] if o["output_type"] == "error")
            for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
            and any(o["output_type"] == "error" for o in c.get("outputs", []))}


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_runs_with_the_solutions_and_its_checks_fail_with_the_stubs(path, tmp_path):
    original = _load(path)
    edition = student.student_edition(original, path.name)
    checks = {i for i, c in enumerate(edition["cells"]) if student.CHECK in c.get("metadata", {}).get("tags", [])}

    solved = _execute(student.with_solutions(edition, original), tmp_path)
    assert _errors(solved) == {}, f"{path.name} with the reference solutions: {_errors(solved)}"
    for index in checks:
        printed = "".join("".join(o.get("text", "")) for o in solved["cells"][index]["outputs"])
        assert "correct" in printed, f"cell {index} should report a correct answer, printed {printed!r}"

    bare = _execute(edition, tmp_path)
    errors = _errors(bare)
    assert set(errors) == checks, f"{path.name} with bare stubs: errors in cells {errors}, checks are {sorted(checks)}"
    assert all(message.startswith("AssertionError") for message in errors.values()), errors
