"""The whole report as one PDF: a single-page build of the book, printed by the system Chromium.

    python scripts/book_pdf.py [--out _build/pdf/glassbox.pdf] [--path-output .] [--config _config.yml]
    python scripts/book_pdf.py --html _build/singlehtml --out book.pdf     # print an existing build

It builds the book with ``jupyter-book build book/ --builder singlehtml`` (the notebooks' executed
outputs come from the same execution cache as ``make book``, so after ``make book`` nothing is run
again), opens the page from its file with every request outside the book blocked (as offline), waits
until MathJax has typeset every formula, the fonts are loaded and every image is decoded, and prints
it with Playwright's ``page.pdf`` (Chromium's print-to-PDF): A4, each chapter on a new page, page
numbers at the foot. Jupyter Book's own ``pdfhtml`` builder downloads a browser and fails offline.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import chromium

ROOT = Path(__file__).resolve().parents[1]

# Print layout on top of the theme's print style (which already hides the navigation): every chapter
# (a top-level section of the single page) starts on a new page, no figure or table is split, code the
# book hides behind "Show code cell source" stays out, long code lines wrap instead of being cut, and
# no shadow is printed (Chromium rasterises each one into an image of its own).
PRINT_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm; }
article.bd-article > section + section, .bd-article > section > section + section { break-before: page; }
img, figure, table, .cell_output { break-inside: avoid; }
a.headerlink, .toggle-button, .header-article, .prev-next-area, .bd-footer, .bd-header { display: none !important; }
details.above-input, details.below-input { display: none !important; }
pre { white-space: pre-wrap !important; overflow-wrap: anywhere; }
* { box-shadow: none !important; text-shadow: none !important; }
.bd-main .bd-content .bd-article-container { max-width: 100% !important; }
"""

FOOTER = ('<div style="font-size:8px;width:100%;text-align:center;color:#555;">'
          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>')

# distinct raster figures (PNG/JPEG) shown on the page: the PDF must embed at least as many images
RASTER_IMAGES = """() => new Set(Array.from(document.images).filter(i => i.naturalWidth > 0)
                     .map(i => i.currentSrc).filter(u => /\\.(png|jpe?g)$|^data:image\\/(png|jpeg)/i.test(u))).size"""

# every formula must be typeset before printing: the .math elements without a MathJax container
UNTYPESET = """() => Array.from(document.querySelectorAll(".math"))
                   .filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.slice(0, 80))"""


class PdfError(RuntimeError):
    """The single-page build or the printing failed."""


def build_single_page(path_output: Path, config: Path | None) -> Path:
    """Run ``jupyter-book build --builder singlehtml`` and return the folder holding index.html."""
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if jb is None:
        raise PdfError("jupyter-book is not installed in this environment; run `make setup`")
    command = [jb, "build", "book/", "--builder", "singlehtml", "--path-output", str(path_output)]
    if config is not None:
        command += ["--config", str(config)]
    print(f">> single-page build: {' '.join(command[1:])}", flush=True)
    proc = subprocess.run(command, cwd=ROOT)  # its log goes straight to the terminal (it can take minutes)
    if proc.returncode != 0:
        raise PdfError(f"the single-page build failed (exit {proc.returncode}; its log is above)")
    html = path_output / "_build" / "singlehtml"
    if not (html / "index.html").is_file():
        raise PdfError(f"the single-page build wrote no {html / 'index.html'}")
    return html


def root_page(html: Path) -> Path:
    """The single page: Jupyter Book's index.html is a redirect to the root document."""
    index = html / "index.html"
    match = re.search(r'http-equiv="Refresh" content="0; url=([^"]+)"', index.read_text(errors="replace")[:2000], re.I)
    return html / match.group(1) if match else index


def print_pdf(html: Path, out: Path, timeout_s: float = 300.0) -> dict[str, int]:
    """Print the single page in ``html`` to ``out``; returns the page's counts of formulas and images."""
    from playwright.sync_api import sync_playwright

    folder = html.resolve()
    outside: list[str] = []

    def on_route(route):
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or (url.startswith("file://") and
                                                             url[len("file://"):].startswith(str(folder))):
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.route("**/*", on_route)
            page.goto(root_page(folder).as_uri(), wait_until="load", timeout=timeout_s * 1000)
            found = page.evaluate(chromium.WAIT_UNTIL_RENDERED)
            missing = page.evaluate(UNTYPESET)
            if missing:
                raise PdfError(f"{len(missing)} formulas were not typeset by MathJax, e.g. {missing[:3]}")
            page.add_style_tag(content=PRINT_CSS)
            page.evaluate(chromium.WAIT_UNTIL_RENDERED)
            formulas = page.evaluate("() => document.querySelectorAll('mjx-container').length")
            raster = page.evaluate(RASTER_IMAGES)
            page.pdf(path=str(out), format="A4", print_background=True, display_header_footer=True,
                     header_template="<span></span>", footer_template=FOOTER,
                     margin={"top": "16mm", "bottom": "18mm", "left": "14mm", "right": "14mm"})
        finally:
            browser.close()
    if outside:
        raise PdfError(f"the page asked for files outside the book (blocked): {sorted(set(outside))[:5]}")
    return {"formulas": int(formulas), "images": int(found["images"]), "raster_images": int(raster)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "glassbox.pdf")
    parser.add_argument("--path-output", type=Path, default=ROOT,
                        help="jupyter-book --path-output (its _build/ holds the execution cache); default: the repo")
    parser.add_argument("--config", type=Path, default=None, help="jupyter-book --config (default: _config.yml)")
    parser.add_argument("--html", type=Path, default=None, help="print this single-page build; do not build")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        html = args.html if args.html is not None else build_single_page(args.path_output.resolve(), args.config)
        counts = print_pdf(html, args.out)
    except (PdfError, chromium.BrowserMissing) as error:
        print(f"!! make pdf: {error}", file=sys.stderr)
        return 1
    # what the page showed, for tests/test_pdf.py to compare with what the PDF holds
    args.out.with_suffix(".json").write_text(json.dumps(counts, indent=2))
    size = os.path.getsize(args.out) / 1e6
    print(f">> PDF: {args.out} ({size:.1f} MB; {counts['formulas']} formulas, {counts['images']} images; "
          f"{time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
