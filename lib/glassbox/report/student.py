"""Student editions of the book's chapters: every exercise stub kept, every solution removed, answer checks kept.

A chapter's exercise is three code cells in a row (see ``book/CHAPTER_GUIDE.md``):

1. the stub the student completes, tagged :data:`EXERCISE` (it defines a function that raises
   ``NotImplementedError``);
2. the reference solution, tagged :data:`SOLUTION` and ``hide-cell`` (rendered behind a toggle in the book);
3. the answer check, tagged :data:`CHECK`: a call into the chapter's study module that tests the function now
   defined on fresh inputs and raises ``AssertionError`` with a hint when it is wrong.

:func:`student_edition` drops the solutions (and every output), so in the student's notebook the check runs
right after the stub. :func:`with_solutions` puts the reference solutions back into the stubs (how the tests
prove that a correct answer passes every check). ``make student`` writes the editions with
``scripts/student_edition.py``.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXERCISE, SOLUTION, CHECK = "exercise", "solution", "answer-check"
NOTE = ("**Student edition.** The solutions of this chapter's exercises are removed. Complete each function marked "
        "\"your turn\", then run the cell after it: the answer check tests your function on fresh inputs and says "
        "what is wrong, or that it is correct.")


class ExerciseLayoutError(ValueError):
    """A chapter's exercise cells are not stub, solution, check in a row."""


@dataclass(frozen=True)
class Exercise:
    """Cell indices of one exercise in the chapter notebook."""

    stub: int
    solution: int
    check: int


def _tags(cell: Mapping[str, Any]) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def exercises(notebook: Mapping[str, Any], name: str = "notebook") -> list[Exercise]:
    """The exercises of ``notebook``, checking that each is a stub, its solution and its answer check in a row."""
    cells = notebook["cells"]
    found = []
    for index, cell in enumerate(cells):
        tags = _tags(cell)
        if EXERCISE in tags:
            following = [_tags(c) for c in cells[index + 1:index + 3]]
            if len(following) < 2 or SOLUTION not in following[0] or CHECK not in following[1]:
                raise ExerciseLayoutError(f"{name}: the exercise stub in cell {index} must be followed by a cell "
                                          f"tagged {SOLUTION!r} and then one tagged {CHECK!r}")
            if "hide-cell" not in following[0]:
                raise ExerciseLayoutError(f"{name}: the solution in cell {index + 1} must also be tagged 'hide-cell'")
            found.append(Exercise(index, index + 1, index + 2))
        elif SOLUTION in tags and not (index and EXERCISE in _tags(cells[index - 1])):
            raise ExerciseLayoutError(f"{name}: the solution in cell {index} does not follow an exercise stub")
        elif CHECK in tags and not (index > 1 and SOLUTION in _tags(cells[index - 1])):
            raise ExerciseLayoutError(f"{name}: the answer check in cell {index} does not follow a solution")
    return found


def _clean(cell: dict[str, Any]) -> dict[str, Any]:
    cell = copy.deepcopy(cell)
    if cell["cell_type"] == "code":
        cell["outputs"], cell["execution_count"] = [], None
    cell.get("metadata", {}).pop("execution", None)
    return cell


def student_edition(notebook: Mapping[str, Any], name: str = "notebook") -> dict[str, Any]:
    """``notebook`` without its solution cells and outputs, with a note at the top."""
    solutions = {e.solution for e in exercises(notebook, name)}
    cells = [_clean(c) for i, c in enumerate(notebook["cells"]) if i not in solutions]
    note = {"cell_type": "markdown", "id": "student-note", "metadata": {}, "source": [NOTE]}
    first = 1 if cells and cells[0]["cell_type"] == "markdown" else 0
    out = {k: copy.deepcopy(v) for k, v in notebook.items() if k != "cells"}
    out["metadata"] = {k: v for k, v in out.get("metadata", {}).items() if k not in ("widgets", "papermill")}
    out["cells"] = cells[:first] + [note] + cells[first:]
    return out


def with_solutions(student: Mapping[str, Any], original: Mapping[str, Any]) -> dict[str, Any]:
    """The student edition with each stub replaced by the original notebook's reference solution."""
    solutions = [_source(original["cells"][e.solution]) for e in exercises(original)]
    out = copy.deepcopy(dict(student))
    stubs = [c for c in out["cells"] if EXERCISE in _tags(c)]
    if len(stubs) != len(solutions):
        raise ExerciseLayoutError(f"the student edition has {len(stubs)} stubs, the original {len(solutions)} solutions")
    for cell, source in zip(stubs, solutions):
        cell["source"] = source
    return out


def solution_only_lines(notebook: Mapping[str, Any]) -> set[str]:
    """Stripped non-empty lines of the solution cells that occur nowhere else in the notebook (not even inside
    another cell's text, e.g. a hint in the exercise's wording): what must not leak."""
    solution, elsewhere = set(), []
    for cell in notebook["cells"]:
        if SOLUTION in _tags(cell):
            solution |= {line.strip() for line in _source(cell).splitlines() if line.strip()}
        else:
            elsewhere.append(_source(cell))
    other = "\n".join(elsewhere)
    return {line for line in solution if line not in other}


def _texts(notebook: Mapping[str, Any]) -> list[str]:
    """Every cell's source and every output's text."""
    texts = []
    for cell in notebook["cells"]:
        texts.append(_source(cell))
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            texts.append("".join(text) if isinstance(text, list) else str(text))
            for value in output.get("data", {}).values():
                texts.append("".join(value) if isinstance(value, list) else str(value))
    return texts


def leaked_lines(student: Mapping[str, Any], original: Mapping[str, Any], min_substring: int = 16) -> list[str]:
    """Lines of the original's solutions that appear in ``student``: as a whole line anywhere, or, when at least
    ``min_substring`` characters long, inside any line (a solution pasted into a comment or an output)."""
    secret = solution_only_lines(original)
    texts = _texts(student)
    lines = {line.strip() for text in texts for line in text.splitlines()}
    joined = "\n".join(texts)
    return sorted(line for line in secret if line in lines or (len(line) >= min_substring and line in joined))


def chapters_with_exercises(book: Path) -> list[Path]:
    """The chapter notebooks of ``book`` that hold at least one exercise stub."""
    return [p for p in sorted(Path(book).glob("*.ipynb"))
            if any(EXERCISE in _tags(c) for c in json.loads(p.read_text())["cells"])]


def write_student_editions(book: Path, out: Path, chapters: Iterable[Path] | None = None) -> list[Path]:
    """Write ``out/<chapter>.ipynb`` for every chapter with exercises; refuses any edition that leaks a solution."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in chapters if chapters is not None else chapters_with_exercises(book):
        original = json.loads(Path(path).read_text())
        edition = student_edition(original, Path(path).name)
        leaks = leaked_lines(edition, original)
        if leaks:
            raise ExerciseLayoutError(f"{path.name}: the student edition would contain solution lines {leaks[:3]}")
        target = out / Path(path).name
        target.write_text(json.dumps(edition, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written
