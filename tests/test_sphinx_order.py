"""The book reads (and so executes) the Verdicts chapter after every other page, and re-reads it whenever any
other page is re-read. Checked on a real Sphinx build of a small project with the book's extension."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from glassbox.report import sphinx as book_sphinx

ROOT = Path(__file__).resolve().parents[1]

RECORDER = '''
from pathlib import Path

def _record(app, docname, source):
    with open(Path(app.srcdir) / "read-order.txt", "a") as fh:
        fh.write(docname + "\\n")

def setup(app):
    app.connect("source-read", _record)
    return {"parallel_read_safe": True}
'''


def _project(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text("import os, sys\nsys.path.insert(0, os.path.dirname(__file__))\n"
                                 "extensions = ['myst_nb', 'glassbox.report.sphinx', 'recorder']\n"
                                 "nb_execution_mode = 'off'\nexclude_patterns = ['_build']\n")
    (src / "recorder.py").write_text(RECORDER)
    names = ["index", "alpha", "verdicts", "zeta"]  # 'zeta' sorts after 'verdicts'
    (src / "index.md").write_text("# Index\n\n```{toctree}\nalpha\nverdicts\nzeta\n```\n")
    for name in names[1:]:
        (src / f"{name}.md").write_text(f"# {name}\n\ntext\n")
    return src


def _build(src: Path) -> list[str]:
    (src / "read-order.txt").unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(src / "_build")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    order = src / "read-order.txt"
    return order.read_text().split() if order.exists() else []


def test_verdicts_is_read_last_and_reread_with_any_other_page(tmp_path):
    src = _project(tmp_path)
    assert _build(src) == ["alpha", "index", "zeta", "verdicts"], "first build: everything, the Verdicts page last"
    assert _build(src) == [], "nothing changed: nothing is read"
    (src / "alpha.md").write_text("# alpha\n\nchanged\n")
    assert _build(src) == ["alpha", "verdicts"], "a changed chapter re-reads the Verdicts page after it"
    (src / "verdicts.md").write_text("# verdicts\n\nchanged\n")
    assert _build(src) == ["verdicts"]


def test_handlers_keep_the_order_in_place():
    class App:
        class config:
            glassbox_read_last = ["verdicts"]

    docnames = ["alpha", "verdicts", "zeta"]
    book_sphinx._read_last(App, None, docnames)
    assert docnames == ["alpha", "zeta", "verdicts"]

    class Env:
        found_docs = {"alpha", "verdicts", "zeta"}

    assert book_sphinx._reread_last(App, Env, set(), {"zeta"}, set()) == ["verdicts"]
    assert book_sphinx._reread_last(App, Env, set(), {"verdicts"}, set()) == []
    assert book_sphinx.READ_LAST == ["verdicts"]


def test_the_verdicts_notebook_is_never_served_from_the_execution_cache():
    nb = json.loads((ROOT / "book" / "verdicts.ipynb").read_text())
    assert nb["metadata"]["mystnb"]["execution_mode"] == "force"
