"""Sphinx extension for the book: key the notebook execution cache on the library and the profile.

jupyter-cache hashes only a notebook's code cells, so after a change in ``lib/glassbox`` or a
different ``GLASSBOX_PROFILE`` it would happily serve outputs computed by other code or on another
profile. This extension points MyST-NB at ``_build/.jupyter_cache/<profile>-<source hash>``, so a
cached output can only be reused by the exact library source and profile that produced it; caches
of older sources are pruned. Enabled in ``_config.yml`` under ``sphinx.extra_extensions``.
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


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _key_execution_cache, priority=100)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
