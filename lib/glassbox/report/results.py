"""Each chapter's headline numbers, machine-readable, in ``results/<chapter>.json``.

A results file holds the profile it was computed on, our numbers, the paper's numbers (labelled
``paper`` and never mixed with ours) and the run record (parameters, versions, device, seed).
A later chapter gathers them with :func:`load_all`.

Non-finite numbers are written explicitly as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
(the file stays strict JSON; ``float()`` in Python and ``Number()`` in JavaScript read them), never as a
silent ``null``; :func:`load_results` and :func:`load_all` turn them back into floats. So that this is
unambiguous, those three strings cannot be written as text.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from myst_nb import glue as _glue

from glassbox.core.paths import results_dir
from glassbox.core.store import write_atomically
from glassbox.measure.claims import Check, Claim, Deviation

SCHEMA = 2
"""2: non-finite numbers are the strings "NaN", "Infinity", "-Infinity" (1 wrote them as null)."""
NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
"""How results files spell non-finite numbers, and the floats they stand for."""


class ResultsFileError(ValueError):
    """A results file that is not valid JSON or not a results document; the message names the file."""


def _nonfinite_name(value: float) -> str:
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def to_jsonable(value: Any, nonfinite: Literal["string", "float"] = "string") -> Any:
    """Numbers, arrays, tensors, dataframes and dataclasses to plain JSON.

    ``nonfinite="string"`` (for files) writes NaN and infinities as ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"`` and refuses those three strings as text; ``"float"`` keeps them as floats (for glue).
    """
    def again(v: Any) -> Any:
        return to_jsonable(v, nonfinite)

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return again(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): again(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return again(value.reset_index().to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return again(value.to_dict())
    if isinstance(value, torch.Tensor):
        return again(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return again(value.tolist())
    if isinstance(value, (list, tuple)):
        return [again(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) or nonfinite == "float" else _nonfinite_name(value)
    if isinstance(value, str) and value in NONFINITE and nonfinite == "string":
        raise ValueError(f"the text {value!r} cannot be written to a results file: it spells a non-finite number "
                         f"there; pass the number float({value!r}) or other text")
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
    text = json.dumps(document, indent=2, allow_nan=False).encode()
    return write_atomically(path, lambda handle: handle.write(text))


def _restore_nonfinite(value: Any) -> Any:
    if isinstance(value, str):
        return NONFINITE.get(value, value)
    if isinstance(value, list):
        return [_restore_nonfinite(v) for v in value]
    if isinstance(value, dict):
        return {k: _restore_nonfinite(v) for k, v in value.items()}
    return value


def _read(path: Path) -> dict[str, Any]:
    """One results file, non-finite numbers as floats; errors name the file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"results file {path} is not valid JSON ({exc}); delete it and rerun its "
                               "chapter") from exc
    if not isinstance(document, dict) or "ours" not in document:
        raise ResultsFileError(f"results file {path} is not a glassbox results document (no 'ours' section); "
                               "delete it and rerun its chapter")
    return _restore_nonfinite(document)


def load_results(chapter: str) -> dict[str, Any]:
    path = results_path(chapter)
    if not path.exists():
        raise FileNotFoundError(f"no results for chapter {chapter!r} at {path}; run that chapter first")
    return _read(path)


def load_all() -> dict[str, dict[str, Any]]:
    """Every chapter's results file, by chapter name."""
    folder = results_dir()
    return {p.stem: _read(p) for p in sorted(folder.glob("*.json"))} if folder.exists() else {}


def glue(name: str, value: Any) -> None:
    """Make a computed number quotable in the prose (``{glue:text}`name:.2f```), as plain Python.

    MyST-NB formats glued numbers from their ``repr``; a NumPy scalar's repr (``np.float64(2.0)``) cannot
    be formatted and the book build warns, so values pass through :func:`to_jsonable` first.
    """
    _glue(name, to_jsonable(value, nonfinite="float"), display=False)
