"""Every chapter runs on `smoke` with papermill, then the whole book builds on `smoke` with no warning.

These are the slow tests (`-m slow`); `make test` runs them, `make test-fast` skips them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files.extend(section["file"] for section in chapter.get("sections", []))
    return files


CHAPTERS = [f for f in toc_files() if (BOOK / f"{f}.ipynb").exists()]


def test_toc_and_config_are_where_the_card_says():
    assert (ROOT / "_config.yml").is_file() and (ROOT / "_toc.yml").is_file()
    assert (BOOK / "_toc.yml").resolve() == (ROOT / "_toc.yml").resolve(), "book/_toc.yml must link to ../_toc.yml"
    for f in toc_files():
        assert (BOOK / f"{f}.ipynb").exists() or (BOOK / f"{f}.md").exists(), f"_toc.yml names missing {f}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_is_clean_and_parameterised(chapter):
    nb = json.loads((BOOK / f"{chapter}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") for c in code), f"{chapter}.ipynb is committed with outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{chapter}.ipynb needs exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    for name in ("profile", "device", "seed", "data_dir"):
        assert f"{name}:" in source or f"{name} =" in source, f"{chapter}: parameters cell lacks {name!r}"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_runs_on_smoke_with_papermill(chapter, tmp_path):
    import papermill

    out = tmp_path / f"{chapter}.ipynb"
    papermill.execute_notebook(str(BOOK / f"{chapter}.ipynb"), str(out), parameters={"profile": "smoke"},
                               kernel_name="python3", cwd=str(BOOK), progress_bar=False)
    results = Path(os.environ["GLASSBOX_RESULTS"]) / f"{chapter}.json"
    assert results.exists(), f"{chapter} did not write its results file"
    doc = json.loads(results.read_text())
    assert doc["profile"] == "smoke" and doc["ours"], f"{chapter}: results file lacks numbers"
    assert doc["record"]["versions"]["torch"], "results must record library versions"


@pytest.mark.slow
def test_whole_book_builds_on_smoke_without_warnings(smoke_book):
    """The session's smoke build (tests/conftest.py), which tests/test_browser.py then opens in Chromium."""
    if smoke_book.returncode is None:
        pytest.skip("--book-html given: this test checks only a build of its own")
    assert smoke_book.returncode == 0, f"book build failed or warned:\n{smoke_book.log}"
    read = smoke_book.read_order
    assert read and read[-1] == "verdicts", f"the Verdicts chapter must be read (and executed) last; order: {read}"
    html = smoke_book.html
    for page in toc_files():
        assert (html / f"{page}.html").exists(), f"{page}.html missing"
    for asset in ("mathjax/tex-mml-chtml.js", "requirejs/require.js", "@jupyter-widgets/html-manager/dist/embed-amd.js"):
        assert (html / asset).is_file(), f"{asset} is not served from the book's own files (html_extra_path)"
    doubled = [p.name for p in (html / "_static").glob("*.js") if p.name in ("require.js", "embed-amd.js")]
    assert not doubled, f"{doubled} in _static would be injected into every page a second time"
    caches = list((smoke_book.output / "_build" / ".jupyter_cache").glob("smoke-*"))
    assert len(caches) == 1, "the execution cache must be keyed on profile and library source"
