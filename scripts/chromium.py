"""The system Chromium driven by Playwright, for the browser test and the PDF (scripts/book_pdf.py).

Playwright's own browser download (`playwright install`) is never used: the browser is Debian's
`chromium` package (scripts/install_system_packages.sh), launched through ``executable_path``.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

# Debian's /usr/bin/chromium is a shell wrapper that adds flags of its own (extensions, a shared-memory
# probe that prints noise); the real binary beside it is launched directly when present.
CANDIDATES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

# Resolves when the page has loaded, MathJax (if the page has it) has typeset everything, the web fonts
# are in, and every image is decoded. Returns what it waited for, for the caller's checks.
WAIT_UNTIL_RENDERED = """
async () => {
  for (const img of document.images) img.loading = "eager";
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await document.fonts.ready;
  await Promise.all(Array.from(document.images).map(img => img.decode().catch(() => null)));
  return {mathjax: !!(window.MathJax && MathJax.version), images: document.images.length};
}
"""


class BrowserMissing(RuntimeError):
    """No Chromium (or no Playwright) on this machine."""


def executable() -> str:
    """Path of the system Chromium; ``GLASSBOX_CHROMIUM`` overrides it."""
    override = os.environ.get("GLASSBOX_CHROMIUM")
    if override:
        if not Path(override).is_file():
            raise BrowserMissing(f"GLASSBOX_CHROMIUM={override!r} is not a file")
        return override
    for name in CANDIDATES:
        found = name if Path(name).is_file() else shutil.which(name)
        if found:
            return found
    raise BrowserMissing("no Chromium on this machine: run `make setup` as root, or "
                         "`apt-get install chromium` (Debian's package; `playwright install` is not used)")


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from the Playwright handle ``playwright`` (``sync_playwright()``)."""
    return playwright.chromium.launch(executable_path=executable(), args=LAUNCH_ARGS, headless=True)
