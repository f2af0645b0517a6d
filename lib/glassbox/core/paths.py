"""Where Glassbox writes things: the artifact store and the results files.

Both can be moved with environment variables (the tests point them at temporary folders):
``GLASSBOX_STORE`` for artifacts, ``GLASSBOX_RESULTS`` for results. By default they sit at the
top of the repository (``artifacts/``, ``results/``), both ignored by git.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root when glassbox runs from a checkout, else the current folder."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "lib" / "glassbox").is_dir():
            return parent
    return Path.cwd()


def store_dir() -> Path:
    return Path(os.environ.get("GLASSBOX_STORE") or project_root() / "artifacts")


def results_dir() -> Path:
    return Path(os.environ.get("GLASSBOX_RESULTS") or project_root() / "results")
