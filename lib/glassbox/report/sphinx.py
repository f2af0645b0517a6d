"""Sphinx extension for the book: key the notebook execution cache on the library and the profile, and read
the Verdicts chapter last.

jupyter-cache hashes only a notebook's code cells, so after a change in ``lib/glassbox`` or a
different ``GLASSBOX_PROFILE`` it would happily serve outputs computed by other code or on another
profile. This extension points MyST-NB at ``_build/.jupyter_cache/<profile>-<source hash>``, so a
cached output can only be reused by the exact library source and profile that produced it; caches
of older sources are pruned. It also keeps the pages' scripts offline and single (:func:`_offline_scripts`).
Enabled in ``_config.yml`` under ``sphinx.extra_extensions``.

**Reading order.** MyST-NB executes a notebook while Sphinx *reads* it (``NbParser.parse`` ->
``create_client``), and Sphinx reads the outdated documents one after another in the order of the list it
passes to the ``env-before-read-docs`` event (sorted by name, ``Builder.read``), in parallel only with
``-j N`` and when every extension is parallel-read safe. The Verdicts chapter reads every other chapter's
results file, so this extension

- moves the documents named in ``glassbox_read_last`` (default ``["verdicts"]``) to the end of that list;
- re-reads them whenever any other document is re-read (``env-get-outdated``), so their tables never lag;
- declares itself not parallel-read safe: under ``-j N`` Sphinx says so and reads serially.

The Verdicts notebook itself sets ``mystnb.execution_mode: force`` in its metadata, so it is executed on
every read instead of being served from the execution cache (whose key does not see the results files).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from glassbox.core.repro import library_fingerprint
from glassbox.report.profiles import default_profile


def cache_folder(outdir: Path, profile: str, fingerprint: str) -> Path:
    return Path(outdir).parent / ".jupyter_cache" / f"{profile}-{fingerprint}"


def _key_execution_cache(app: Any, config: Any) -> None:
    if config.nb_execution_cache_path:  # an explicit `execute.cache` in _config.yml wins
        return
    profile, fingerprint = default_profile(), library_fingerprint()
    folder = cache_folder(Path(app.outdir), profile, fingerprint)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for stale in folder.parent.glob(f"{profile}-*"):
        if stale != folder and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    config.nb_execution_cache_path = str(folder)


def _offline_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """Each script once per page, and no Thebe loader while Thebe is off.

    Jupyter Book 1 registers sphinx-thebe's and sphinx-togglebutton's inline scripts twice, so every page
    raised "Identifier 'THEBE_JS_URL' has already been declared"; that script also names a CDN, which an
    offline page must not. With ``launch_buttons.thebe: false`` nothing on the page uses Thebe."""
    scripts = context.get("script_files")
    if not scripts:
        return
    thebe_on = bool((app.config.html_theme_options or {}).get("launch_buttons", {}).get("thebe"))
    kept, seen = [], set()
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        body, filename = attributes.get("body", ""), getattr(script, "filename", str(script)) or ""
        if not thebe_on and ("THEBE_JS_URL" in body or filename.endswith("sphinx-thebe.js")):
            continue
        key = (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept  # in place: Sphinx still sorts this list by priority afterwards
READ_LAST = ["verdicts"]
"""Documents read after all others (they read what the others wrote)."""


def _reread_last(app: Any, env: Any, added: set[str], changed: set[str], removed: set[str]) -> list[str]:
    """``env-get-outdated``: when any other document is (re-)read, read the read-last documents again too."""
    last = [doc for doc in app.config.glassbox_read_last if doc in env.found_docs]
    return last if (added | changed | removed) - set(last) else []


def _read_last(app: Any, env: Any, docnames: list[str]) -> None:
    """``env-before-read-docs``: move the read-last documents to the end of the reading order, in place."""
    last = [doc for doc in app.config.glassbox_read_last if doc in docnames]
    for doc in last:
        docnames.remove(doc)
    docnames.extend(last)


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("glassbox_read_last", list(READ_LAST), "env", list)
    app.connect("config-inited", _key_execution_cache, priority=100)
    app.connect("html-page-context", _offline_scripts, priority=900)  # after the extensions that add scripts
    app.connect("env-get-outdated", _reread_last)
    app.connect("env-before-read-docs", _read_last)
    # serial reading is what keeps the read-last documents last
    return {"parallel_read_safe": False, "parallel_write_safe": True}
