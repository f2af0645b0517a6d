"""Every page of the built book in a real browser (the system Chromium through Playwright), offline.

Each page is opened from its file (file://, as a reader opens a downloaded book) and must:
- load nothing from outside the book's folder (every such request is blocked and reported), and reference
  no outside URL in what it loads (src, stylesheets, widget attributes; plain <a> links are fine);
- log no console error and raise no page error, except the harmless ones in ALLOWED_CONSOLE;
- show every image (``naturalWidth > 0``), at least one figure if it is a notebook chapter, and every widget
  (a rendered view beside each view script);
- render all math (each .math element holds a MathJax container, none an error);
- show no stderr or traceback output block and no progress bar (widget model or text bar).
A full-page screenshot of each page goes to _build/screenshots/<page>.png.

Runs in `make test` after the smoke book build (the session fixture ``smoke_book``); for any other
build: ``pytest tests/test_browser.py --book-html _build/html``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
sys.path.insert(0, str(ROOT / "scripts"))

from chromium import WAIT_UNTIL_RENDERED  # noqa: E402 - scripts/ is on the path from here on

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Console errors allowed, each (a substring of the message) with the reason it is harmless. Empty: the two that
# every page logged before are fixed where they arise: "Identifier 'THEBE_JS_URL' has already been declared"
# (Jupyter Book 1 injected sphinx-thebe's inline script twice; glassbox.report.sphinx drops it while Thebe is off) and
# "Got invalid theme mode" (the theme's first visit had no default mode; _config.yml sets html_context).
ALLOWED_CONSOLE: dict[str, str] = {}

# Schemes that never leave the machine.
LOCAL_SCHEMES = ("data:", "blob:", "about:")

# In the page: everything the checks below need, gathered after rendering.
INSPECT = r"""
() => {
  const text = el => (el.innerText || el.textContent || "").trim().slice(0, 300);
  const views = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]'));
  const unrendered = views.filter(s => {
    const area = s.previousElementSibling;
    return !(area && area.classList.contains("widget-subarea") && area.querySelector(".jupyter-widgets")
             && area.getBoundingClientRect().height > 0);
  }).map(s => s.textContent.trim().slice(0, 120));
  const states = Array.from(document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]'));
  const progressModels = states.flatMap(s => {
    try { return Object.values(JSON.parse(s.textContent).state || {}); } catch (e) { return []; }
  }).filter(m => /Progress/.test(m.model_name || "")).map(m => m.model_name);
  const math = Array.from(document.querySelectorAll(".math"));
  const referenced = Array.from(document.querySelectorAll(
      "script[src], img[src], iframe[src], link[href]:not([rel='canonical']), source[src], [data-jupyter-widgets-cdn]"))
    .map(el => el.getAttribute("src") || el.getAttribute("href") || el.getAttribute("data-jupyter-widgets-cdn"));
  return {
    title: document.title,
    images: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length,
    brokenImages: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0))
                    .map(i => i.getAttribute("src")),
    widgetViews: views.length,
    unrenderedWidgets: unrendered,
    progressModels: progressModels,
    mathElements: math.length,
    unrenderedMath: math.filter(m => !m.querySelector("mjx-container")).map(text),
    mathErrors: Array.from(document.querySelectorAll("mjx-merror")).map(m => m.getAttribute("data-mjx-error") || text(m)),
    stderrBlocks: Array.from(document.querySelectorAll(".output.stderr, .output.traceback, .output.error")).map(text),
    textBars: Array.from(document.querySelectorAll(".output")).map(text).filter(t => /\d+%\|/.test(t)),
    outsideReferences: referenced.filter(u => /^([a-z][a-z0-9+.-]*:)?\/\//i.test(u || "")),
  };
}
"""


def pages(html: Path) -> list[Path]:
    """Every HTML page at the top of the build (chapters, index, search, genindex, bibliography)."""
    found = sorted(html.glob("*.html"))
    assert found, f"no HTML pages in {html}"
    return found


def _inside(url: str, folder: Path) -> bool:
    if url.startswith(LOCAL_SCHEMES):
        return True
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return False
    path = Path(unquote(parsed.path)).resolve()
    return path == folder or folder in path.parents


def check_page(browser, page_file: Path, folder: Path, screenshot: Path | None, widget_wait_ms: int = 60_000,
               ) -> list[str]:
    """Open ``page_file`` and return its problems (empty when the page is clean)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    problems: list[str] = []
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    page = context.new_page()

    def on_route(route):
        if _inside(route.request.url, folder):
            route.continue_()
        else:
            problems.append(f"request outside the book: {route.request.url}")
            route.abort()

    def on_request(request):  # file:// requests are not routed; they are checked here
        if not _inside(request.url, folder) and urlparse(request.url).scheme == "file":
            problems.append(f"request outside the book's folder: {request.url}")

    def on_console(message):
        if message.type == "error" and not any(known in message.text for known in ALLOWED_CONSOLE):
            problems.append(f"console error: {message.text[:300]}")

    context.route("**/*", on_route)
    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {str(error)[:300]}"))
    page.on("requestfailed", lambda request: problems.append(
        f"request failed: {request.url} ({request.failure})") if _inside(request.url, folder) else None)
    page.on("response", lambda response: problems.append(f"HTTP {response.status}: {response.url}")
            if response.status >= 400 else None)
    try:
        page.goto(page_file.resolve().as_uri(), wait_until="load", timeout=120_000)
        page.evaluate(WAIT_UNTIL_RENDERED)
        if page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count():
            try:  # the widget manager renders after load; give it time on a busy machine
                page.wait_for_function(
                    """() => Array.from(document.querySelectorAll(
                          'script[type="application/vnd.jupyter.widget-view+json"]'))
                        .every(s => s.previousElementSibling &&
                                    s.previousElementSibling.querySelector('.jupyter-widgets'))""",
                    timeout=widget_wait_ms)
            except PlaywrightTimeout:  # reported below as unrendered widgets
                pass
            page.evaluate(WAIT_UNTIL_RENDERED)  # widget outputs may hold images of their own
        found = page.evaluate(INSPECT)
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        context.close()
    for key, label in (("brokenImages", "image that does not load"), ("unrenderedWidgets", "widget not rendered"),
                       ("progressModels", "progress-bar widget"), ("unrenderedMath", "math not rendered"),
                       ("mathErrors", "math error"), ("stderrBlocks", "stderr/traceback output block"),
                       ("textBars", "text progress bar in an output"),
                       ("outsideReferences", "reference to a URL outside the book")):
        problems += [f"{label}: {item}" for item in found[key]]
    if (folder / "_sources" / f"{page_file.stem}.ipynb").is_file() and found["images"] == 0:
        problems.append("a chapter without a single figure (were the notebooks run with MPLBACKEND=Agg?)")
    return problems


REDIRECT = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def redirect_problems(page_file: Path, folder: Path) -> list[str] | None:
    """For a redirect page (Jupyter Book's index.html): its problems (a target outside the book or missing);
    None for an ordinary page."""
    match = REDIRECT.search(page_file.read_text(errors="replace")[:2000])
    if match is None:
        return None
    target = match.group(1)
    if re.match(r"^([a-z][a-z0-9+.-]*:)?//", target, re.I):
        return [f"redirects outside the book: {target}"]
    return [] if (folder / target).is_file() else [f"redirects to a missing page: {target}"]


def check_book(html: Path, screenshots: Path | None = SCREENSHOTS, widget_wait_ms: int = 60_000,
               ) -> dict[str, list[str]]:
    """``{page name: problems}`` for every page of the build in ``html``."""
    import chromium
    from playwright.sync_api import sync_playwright

    folder = html.resolve()
    report: dict[str, list[str]] = {}
    with sync_playwright() as playwright:
        browser = chromium.launch(playwright)
        try:
            for page_file in pages(folder):
                redirect = redirect_problems(page_file, folder)
                if redirect is not None:  # the page it points to is checked on its own
                    report[page_file.name] = redirect
                    continue
                shot = screenshots / f"{page_file.stem}.png" if screenshots is not None else None
                report[page_file.name] = check_page(browser, page_file, folder, shot, widget_wait_ms)
        finally:
            browser.close()
    return report


def test_every_page_renders_offline_in_chromium(smoke_book):
    html = smoke_book.html
    if not (html / "index.html").is_file():
        pytest.fail(f"no built book at {html}: the smoke build failed (see "
                    "test_whole_book_builds_on_smoke_without_warnings)")
    report = check_book(html)
    bad = {name: problems for name, problems in report.items() if problems}
    listing = "\n".join(f"{name}:\n  " + "\n  ".join(dict.fromkeys(problems)) for name, problems in bad.items())
    assert not bad, f"{len(bad)} of {len(report)} pages have problems:\n{listing}"


def test_the_widget_and_math_checks_can_fail(tmp_path):
    """The checks themselves: a page with a CDN script, raw TeX and an unrendered widget is caught."""
    book = tmp_path / "book"
    book.mkdir()
    (book / "index.html").write_text(
        '<html><head><script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script></head>'
        '<body><span class="math">\\(x^2\\)</span><img src="missing.png">'
        '<div class="output stderr"><pre>epoch 1: 100%|██████|</pre></div>'
        '<script type="application/vnd.jupyter.widget-view+json">{"model_id": "m"}</script></body></html>')
    problems = "\n".join(check_book(book, screenshots=None, widget_wait_ms=500)["index.html"])
    for expected in ("request outside the book: https://cdn.jsdelivr.net/", "reference to a URL outside the book",
                     "math not rendered: \\(x^2\\)", "image that does not load: missing.png",
                     "widget not rendered", "stderr/traceback output block: epoch 1",
                     "text progress bar in an output"):
        assert expected in problems, f"{expected!r} not reported; got:\n{problems}"
    assert re.search(r"request failed: file://.*missing\.png", problems), problems
