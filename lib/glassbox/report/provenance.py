"""Provenance: the collapsed block at the end of every chapter that says how its page was computed.

A chapter's last code cell (tagged ``remove-input``) is ``provenance.show(run)``. It renders the chapter's run
record (:meth:`glassbox.report.profiles.Run.record`): git commit and dirty flag, profile, seed, device, torch
and CUDA versions, GPU name, the library's source hash, the notebook's code hash, every store entry the chapter
loaded (hit) or computed (miss), and the wall time since ``setup_run``. In the built book it is an HTML
``<details>`` block, closed until a reader opens it; in a terminal or a papermill log it is plain text.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from IPython.display import display

TITLE = "Provenance of this page"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)} min {rest:.0f} s"


def _git(record: Mapping[str, Any]) -> str:
    git = record.get("git") or {}
    commit, dirty = git.get("commit"), git.get("dirty")
    if not commit:
        return "not a git checkout"
    return f"{commit[:12]} ({'with uncommitted changes' if dirty else 'clean'})"


def _artifacts(record: Mapping[str, Any]) -> list[str]:
    return [f"{a['name']} {a['key']} ({'hit' if a['hit'] else 'miss: computed'})"
            for a in record.get("artifacts") or []]


def rows(record: Mapping[str, Any], extra: Mapping[str, str | Sequence[str]] | None = None
         ) -> list[tuple[str, str | list[str]]]:
    """``(label, value)`` pairs of a run record, in reading order; a list value is one line per item."""
    params = record.get("parameters") or {}
    versions = record.get("versions") or {}
    artifacts = _artifacts(record)
    out: list[tuple[str, str | list[str]]] = [
        ("git commit", _git(record)),
        ("profile", str(params.get("profile", "—"))),
        ("seed", str(record.get("seed", "—"))),
        ("device", str(record.get("device", "—"))),
        ("GPU", str(record.get("gpu") or "none")),
        ("torch", str(versions.get("torch", "—"))),
        ("CUDA", str(record.get("cuda") or "none (CPU build of torch)")),
        ("threads", str(record.get("pinned_threads") or record.get("torch_threads") or "—")),
        ("library source (glassbox_source)", str(record.get("glassbox_source", "—"))),
        ("notebook code", str(record.get("notebook_source") or "—")),
        ("data", str(params.get("data_dir") or "simulated")),
        ("artifacts", artifacts or "none from the store"),
        ("wall time since set-up", _duration(record.get("wall_seconds"))),
        ("computed", str(record.get("created", "—"))),
        ("packages", ", ".join(f"{k} {v}" for k, v in versions.items() if k != "torch") or "—"),
    ]
    for label, value in (extra or {}).items():
        out.append((label, value if isinstance(value, str) else [str(v) for v in value]))
    return out


class Provenance:
    """A run record shown as a closed ``<details>`` block (HTML) or as aligned text (plain)."""

    def __init__(self, record: Mapping[str, Any], extra: Mapping[str, str | Sequence[str]] | None = None):
        self.record = dict(record)
        self.rows = rows(record, extra)

    def _repr_html_(self) -> str:
        body = []
        for label, value in self.rows:
            cell = "<br>".join(html.escape(v) for v in value) if isinstance(value, list) else html.escape(value)
            body.append(f"<tr><th style='text-align:left;vertical-align:top'>{html.escape(label)}</th>"
                        f"<td style='text-align:left'><code>{cell}</code></td></tr>")
        return (f"<details class='glassbox-provenance'><summary>{TITLE}</summary>"
                f"<table>{''.join(body)}</table></details>")

    def __repr__(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        lines = [TITLE]
        for label, value in self.rows:
            values = value if isinstance(value, list) else [value]
            for i, item in enumerate(values or ["—"]):
                lines.append(f"  {(label if i == 0 else ''):<{width}}  {item}")
        return "\n".join(lines)


def show(run: Any, extra: Mapping[str, str | Sequence[str]] | None = None) -> None:
    """Display the provenance of ``run`` (a :class:`~glassbox.report.profiles.Run`) as of now; ``extra`` adds
    rows (e.g. the results files a page read). Returns nothing, so a cell ending with it shows one block."""
    display(Provenance(run.record(), extra))
