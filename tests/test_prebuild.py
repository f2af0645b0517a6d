"""The chapters executed side by side before the build are the ones the build serves from its cache: checked on a
real ``jupyter-book build`` of a small book with the book's extension (each notebook counts its executions)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nbformat
import pytest

from conftest import jupyter_book
from glassbox.report import prebuild

pytestmark = pytest.mark.slow

CONFIG = """title: tiny
execute:
  execute_notebooks: cache
  timeout: 120
  raise_on_error: true
sphinx:
  extra_extensions: [glassbox.report.sphinx]
"""


def _notebook(path: Path, code: str, force: bool = False) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    if force:
        nb.metadata["mystnb"] = {"execution_mode": "force"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, path)


def _counting(name: str) -> str:
    return f"with open('runs-{name}.txt', 'a') as fh:\n    fh.write('run\\n')\nprint('{name} ran')"


def _book(tmp_path: Path, chapters: dict[str, str], forced: tuple[str, ...] = ()) -> Path:
    book = tmp_path / "book"
    book.mkdir()
    (book / "_config.yml").write_text(CONFIG)
    toc = "format: jb-book\nroot: intro\nchapters:\n" + "".join(f"  - file: {name}\n" for name in chapters)
    (book / "_toc.yml").write_text(toc)
    (book / "intro.md").write_text("# Intro\n")
    for name, code in chapters.items():
        _notebook(book / f"{name}.ipynb", code, force=name in forced)
    return book


def _runs(book: Path, name: str) -> int:
    path = book / f"runs-{name}.txt"
    return len(path.read_text().split()) if path.exists() else 0


def test_the_build_serves_the_prebuilt_chapters_and_executes_only_the_forced_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_PROFILE", "smoke")
    book = _book(tmp_path, {"alpha": _counting("alpha"), "beta": _counting("beta"), "verdicts": _counting("verdicts")},
                 forced=("verdicts",))
    assert [p.stem for p in prebuild.toc_notebooks(book)] == ["alpha", "beta", "verdicts"]
    out = tmp_path / "out"

    status = prebuild.prebuild(book, out)
    assert status == {"alpha": "executed", "beta": "executed"}, "the forced chapter is left to the build"
    assert (_runs(book, "alpha"), _runs(book, "beta"), _runs(book, "verdicts")) == (1, 1, 0)
    assert prebuild.prebuild(book, out) == {"alpha": "cached", "beta": "cached"}, "a second call executes nothing"
    assert _runs(book, "alpha") == 1

    proc = subprocess.run([jupyter_book(), "build", str(book), "--path-output", str(out)],
                          capture_output=True, text=True, env={**os.environ, "GLASSBOX_PROFILE": "smoke"})
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "alpha.ipynb: Using cached notebook" in log and "beta.ipynb: Using cached notebook" in log, log[-3000:]
    assert (_runs(book, "alpha"), _runs(book, "beta"), _runs(book, "verdicts")) == (1, 1, 1)
    assert "alpha ran" in (out / "_build" / "html" / "alpha.html").read_text(), "the cached outputs are on the page"


def test_a_failing_chapter_is_reported_and_left_uncached(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_PROFILE", "smoke")
    book = _book(tmp_path, {"alpha": _counting("alpha"), "broken": "raise RuntimeError('chapter broke')"})
    status = prebuild.prebuild(book, tmp_path / "out")
    assert status["alpha"] == "executed"
    assert status["broken"].startswith("failed") and "chapter broke" in status["broken"], status
    # not cached: the build would execute it again and fail with its traceback
    assert prebuild.prebuild(book, tmp_path / "out")["broken"].startswith("failed")
