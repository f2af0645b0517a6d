"""Each chapter's headline numbers, machine-readable, in ``results/<chapter>.json``.

A results file holds the profile it was computed on, our numbers, the paper's numbers (labelled
``paper`` and never mixed with ours) and the run record (parameters, versions, device, seed).
A later chapter gathers them with :func:`load_all`.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glassbox.core.paths import results_dir
from glassbox.measure.claims import Check, Claim, Deviation

SCHEMA = 1


def to_jsonable(value: Any) -> Any:
    """Numbers, arrays, tensors, dataframes and dataclasses to plain JSON (NaN and inf become null)."""
    import dataclasses

    import pandas as pd

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.reset_index().to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return to_jsonable(value.to_dict())
    if isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)


def results_path(chapter: str) -> Path:
    if not chapter or not chapter.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"chapter must be a simple name like 'data' or 'feature_space', got {chapter!r}")
    return results_dir() / f"{chapter}.json"


def save_results(chapter: str, numbers: Mapping[str, Any], *, record: Mapping[str, Any],
                 paper: Mapping[str, Any] | None = None, profile: str | None = None,
                 claims: Sequence[Claim] = (), checks: Sequence[Check] = (),
                 deviations: Sequence[Deviation] = ()) -> Path:
    """Write ``results/<chapter>.json`` atomically and return its path.

    ``claims`` (:class:`~glassbox.measure.claims.Claim`), ``checks``
    (:class:`~glassbox.measure.claims.Check`) and ``deviations`` (:class:`~glassbox.measure.claims.Deviation`)
    are stored as lists of plain records under those keys; the Verdicts chapter gathers them from every
    chapter.
    """
    for item in (*claims, *deviations):
        if item.chapter != chapter:
            kind = type(item).__name__.lower()
            raise ValueError(f"{kind} {item.id!r} belongs to chapter {item.chapter!r}, not {chapter!r}")
    path = results_path(chapter)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema": SCHEMA,
        "chapter": chapter,
        "profile": profile or record.get("parameters", {}).get("profile"),
        "ours": to_jsonable(numbers),
        "paper": to_jsonable(paper) if paper is not None else None,
        "claims": [to_jsonable(c.as_dict()) for c in claims],
        "checks": [to_jsonable(c.as_dict()) for c in checks],
        "deviations": [to_jsonable(d.as_dict()) for d in deviations],
        "record": to_jsonable(record),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(document, fh, indent=2, allow_nan=False)
    os.replace(tmp, path)
    return path


def load_results(chapter: str) -> dict[str, Any]:
    path = results_path(chapter)
    if not path.exists():
        raise FileNotFoundError(f"no results for chapter {chapter!r} at {path}; run that chapter first")
    return json.loads(path.read_text())


def load_all() -> dict[str, dict[str, Any]]:
    """Every chapter's results file, by chapter name."""
    folder = results_dir()
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.exists() else {}


def glue(name: str, value: Any) -> None:
    """Make a computed number quotable in the prose (``{glue:text}`name:.2f```), as plain Python.

    MyST-NB formats glued numbers from their ``repr``; a NumPy scalar's repr (``np.float64(2.0)``) cannot
    be formatted and the book build warns, so values pass through :func:`to_jsonable` first.
    """
    from myst_nb import glue as _glue

    _glue(name, to_jsonable(value), display=False)
