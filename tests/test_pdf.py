"""The report as one PDF (scripts/book_pdf.py, `make pdf`): pages, chapter titles, figures and typeset math.

By default the PDF is printed from a single-page build of the session's smoke book (the notebooks'
outputs come from its execution cache); ``pytest tests/test_pdf.py --pdf _build/pdf/glassbox.pdf``
checks the PDF that `make pdf` wrote instead.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from conftest import ROOT, smoke_env
from test_book import BOOK, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# TeX commands of the book's formulas and the character MathJax draws for each: where the sources use
# one, the PDF's text must hold the character (typeset math) and not the command (raw TeX).
SYMBOLS = {r"\sum": "∑", r"\partial": "∂", r"\sigma": "σ", r"\theta": "θ", r"\mu": "μ"}
RAW_TEX = re.compile(r"\\(\(|\)|\[|\]|frac|sum|partial|mathbb|mathrm|cdot|left|right|begin)")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: run `make setup` as root or `apt-get install poppler-utils`")
    return found


def chapter_titles() -> dict[str, str]:
    """The first level-1 heading of each page of the table of contents."""
    titles = {}
    for name in toc_files():
        md, nb = BOOK / f"{name}.md", BOOK / f"{name}.ipynb"
        if nb.exists():
            cells = json.loads(nb.read_text())["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        else:
            text = md.read_text()
        heading = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), None)
        assert heading, f"{name} has no level-1 heading"
        titles[name] = heading
    return titles


def _normal(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())


@pytest.fixture(scope="module")
def pdf(request) -> Path:
    given = request.config.getoption("--pdf")
    if given:
        path = Path(given).resolve()
        if not path.is_file():
            pytest.fail(f"--pdf {given}: no such file (run `make pdf`)")
        return path
    smoke_book = request.getfixturevalue("smoke_book")  # built only when no PDF is given
    if smoke_book.output is None:
        pytest.skip("--book-html given and no --pdf: nothing to print")
    out = smoke_book.output / "pdf" / "glassbox.pdf"
    out.unlink(missing_ok=True)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "book_pdf.py"), "--path-output",
                           str(smoke_book.output), "--config", str(smoke_book.config), "--out", str(out)],
                          cwd=ROOT, env=smoke_env(), capture_output=True, text=True)
    assert proc.returncode == 0, f"book_pdf.py failed:\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
    return out


def test_pdf_has_a_page_per_chapter_at_least(pdf):
    info = subprocess.run([_tool("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages >= len(toc_files()), f"{pages} pages for {len(toc_files())} chapters, each starting a page"


def test_pdf_text_has_every_chapter_title_and_typeset_math(pdf):
    text = _normal(subprocess.run([_tool("pdftotext"), str(pdf), "-"], capture_output=True, text=True,
                                  check=True).stdout)
    missing = [title for title in chapter_titles().values() if _normal(title) not in text]
    assert not missing, f"chapter titles not in the PDF's text: {missing}"
    raw = sorted(set(RAW_TEX.findall(text)))
    assert not raw, f"raw TeX in the PDF (math not typeset): {raw}"
    sources = "\n".join(p.read_text() for p in list(BOOK.glob("*.ipynb")) + list(BOOK.glob("*.md")))
    expected = {tex: char for tex, char in SYMBOLS.items() if re.search(re.escape(tex) + r"(?![a-zA-Z])",
                                                                        sources.replace("\\\\", "\\"))}
    assert expected, "the book's formulas use none of SYMBOLS; update SYMBOLS"
    absent = {tex: char for tex, char in expected.items() if char not in text}
    assert not absent, f"typeset symbols missing from the PDF's text: {absent}"


def test_pdf_embeds_the_figures(pdf):
    listing = subprocess.run([_tool("pdfimages"), "-list", str(pdf)], capture_output=True, text=True,
                             check=True).stdout.splitlines()[2:]
    images = [row for row in listing if row.split()[2:3] == ["image"]]
    counts = json.loads(pdf.with_suffix(".json").read_text())
    assert counts["raster_images"] > 0, "the single page has no raster figures: is the book built?"
    assert len(images) >= counts["raster_images"], (
        f"{len(images)} images in the PDF, {counts['raster_images']} raster figures on the page")
