"""Sphinx extension for the book: key the notebook execution cache on the library and the profile.

jupyter-cache hashes only a notebook's code cells, so after a change in ``lib/glassbox`` or a
different ``GLASSBOX_PROFILE`` it would happily serve outputs computed by other code or on another
profile. This extension points MyST-NB at ``_build/.jupyter_cache/<profile>-<source hash>``, so a
cached output can only be reused by the exact library source and profile that produced it; caches
of older sources are pruned. It also keeps the pages' scripts offline and single (:func:`_offline_scripts`).
Enabled in ``_config.yml`` under ``sphinx.extra_extensions``.
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


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _key_execution_cache, priority=100)
    app.connect("html-page-context", _offline_scripts, priority=900)  # after the extensions that add scripts
    return {"parallel_read_safe": True, "parallel_write_safe": True}
