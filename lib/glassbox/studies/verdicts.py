"""The Verdicts chapter: every chapter's claims, read from the results files, one table per paper.

The chapter imports no other study. It reads ``results/<chapter>.json`` of each chapter that makes claims
(:func:`gather`) and refuses, with an error naming the file, anything it cannot vouch for:

- a **missing** file (the chapter has not run on this build);
- a **stale** file: computed by another library source (``record.glassbox_source``) or by other notebook code
  (``record.notebook_source``, the hash of the chapter's code cells) than the book being built;
- a file from **another profile or seed** than the Verdicts chapter's own run (no mixed tables);
- a **malformed** file (no ``claims`` list, a claim that is not a valid record, a paper key not in
  ``book/references.bib``).

Which chapters must have claims is the caller's list (the book passes
:func:`glassbox.chapters.chapters_with_claims`: every chapter whose study module defines ``claims``); the
chapters still without a claims ledger are passed as ``pending`` and shown as such, never silently dropped.
The book reads this chapter last (:mod:`glassbox.report.sphinx`) and executes it on every read, never from
the execution cache.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from glassbox.core.paths import project_root, results_dir
from glassbox.core.repro import library_fingerprint, notebook_fingerprint
from glassbox.core.tasks import Task
from glassbox.measure.claims import VERDICTS, Check, Claim, ClaimError, Deviation, verdict_counts
from glassbox.report.ledger import format_interval
from glassbox.report.ledger import format_number as _num
from glassbox.report.profiles import PROFILE_NAMES


@dataclass(frozen=True)
class VerdictsConfig:
    """The profile whose results files the chapter reads (its own: no mixed tables) and the precision of its
    tables. It computes nothing expensive."""

    profile: str
    digits: int = 3


PROFILES: dict[str, VerdictsConfig] = {name: VerdictsConfig(profile=name) for name in PROFILE_NAMES}
SIMULATED_ONLY = "it reads the other chapters' results files and has no data of its own"

OWN_CLAIMS = ""
"""The ``reference`` of the book's own claims (physics, controls): they come from no paper."""

VERDICT_COLOURS = {"supported": "#2e7d32", "contradicted": "#c62828", "inconclusive": "#f9a825",
                   "not testable here": "#9e9e9e"}


class ResultsError(RuntimeError):
    """A results file the Verdicts chapter needs is missing, stale, from another profile or seed, or malformed."""


@dataclass(frozen=True)
class ChapterLedger:
    """What one chapter's results file holds for the Verdicts chapter."""

    chapter: str
    path: Path
    created: str
    claims: tuple[Claim, ...]
    checks: tuple[Check, ...]
    deviations: tuple[Deviation, ...]
    record: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True)
class Ledger:
    """Every chapter's claims, checks and deviations for one profile, seed and library source."""

    profile: str
    seed: int
    source: str
    chapters: tuple[ChapterLedger, ...]
    pending: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def claims(self) -> list[Claim]:
        return [c for chapter in self.chapters for c in chapter.claims]

    @property
    def deviations(self) -> list[Deviation]:
        return [d for chapter in self.chapters for d in chapter.deviations]

    def references(self) -> list[str]:
        """The papers of the claims and deviations, in order of first appearance; the book's own claims last."""
        seen = list(dict.fromkeys([c.reference for c in self.claims] + [d.reference for d in self.deviations]))
        return [r for r in seen if r != OWN_CLAIMS] + ([OWN_CLAIMS] if OWN_CLAIMS in seen else [])

    def label(self, reference: str) -> str:
        """A short plain-text name of a paper (``Qu et al. 2023``) for figures."""
        if reference == OWN_CLAIMS:
            return "this book's own claims"
        return self.labels.get(reference, reference)

    def inputs(self) -> list[str]:
        """One line per results file read: path, when it was computed, its library source."""
        return [f"{c.path} (computed {c.created}, glassbox_source {c.record.get('glassbox_source')})"
                for c in self.chapters]


def plan(config: VerdictsConfig, *, seed: int, device: Any, data_dir: Any = None) -> list[Task]:
    """Nothing to precompute: the chapter only reads results files."""
    return []


# --- reading --------------------------------------------------------------------------------------


def _plain(text: str) -> str:
    """BibTeX text without braces and accent commands (``Z{\\"u}rich`` -> ``Zurich``)."""
    return re.sub(r"[{}]", "", re.sub(r"\\.", "", text)).strip()


def bibliography(path: str | Path | None = None) -> dict[str, str]:
    """``{key: "Qu et al. 2023"}`` of a BibTeX file (default ``book/references.bib``), for figure labels.

    Two entries with the same label get ``a``, ``b``... after the year, in the file's order.
    """
    path = Path(path) if path is not None else project_root() / "book" / "references.bib"
    if not path.is_file():
        raise ResultsError(f"bibliography {path} does not exist")
    labels: dict[str, str] = {}
    for match in re.finditer(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", path.read_text(), flags=re.S):
        key, body = match.group(1), match.group(2)
        author = re.search(r"author\s*=\s*\{(.*)\}\s*,?\s*$", body, flags=re.M)
        year = re.search(r"year\s*=\s*\{?(\d{4})", body)
        names = [_plain(a.split(",")[0]) for a in re.split(r"\s+and\s+", author.group(1))] if author else [key]
        if len(names) > 2 or (len(names) == 2 and names[1] == "others"):
            who = f"{names[0]} et al."
        else:
            who = " and ".join(names)
        labels[key] = f"{who} {year.group(1)}" if year else who
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    seen: dict[str, int] = {}
    for key, label in labels.items():
        if counts[label] > 1:
            labels[key] = label + "abcdefghijklmnopqrstuvwxyz"[seen.get(label, 0)]
            seen[label] = seen.get(label, 0) + 1
    return labels


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: cannot read it as a results file ({exc})") from exc


def _records(doc: dict[str, Any], key: str, kind: type, path: Path) -> tuple[Any, ...]:
    items = doc.get(key, [] if key == "deviations" else None)
    if not isinstance(items, list):
        raise ResultsError(f"{path}: no `{key}` list; the chapter must save it with save_results(..., {key}=...)")
    try:
        return tuple(kind.from_dict(item) if hasattr(kind, "from_dict") else kind(**item) for item in items)
    except (TypeError, ClaimError) as exc:
        raise ResultsError(f"{path}: an entry of `{key}` is not a valid {kind.__name__} record ({exc})") from exc


def load_chapter(chapter: str, *, profile: str, seed: int, source: str, folder: Path,
                 notebooks: Path | None, known_references: Sequence[str] | None = None) -> ChapterLedger:
    """One chapter's results file, checked to be current for this build (see the module docstring)."""
    path = folder / f"{chapter}.json"
    if not path.is_file():
        raise ResultsError(f"{path} is missing: chapter {chapter!r} has not written its results on this build. "
                           "Run that chapter first (the book reads this chapter last). If the chapter's outputs "
                           "came from the execution cache, remove the cache (`make clean`) so it runs again.")
    doc = _read(path)
    record = doc.get("record") or {}
    if doc.get("chapter") != chapter:
        raise ResultsError(f"{path} holds chapter {doc.get('chapter')!r}, not {chapter!r}")
    if doc.get("profile") != profile:
        raise ResultsError(f"mixed profiles: {path} was computed on profile {doc.get('profile')!r}, but this "
                           f"build is on {profile!r}; run chapter {chapter!r} on {profile!r}")
    if record.get("seed") != seed:
        raise ResultsError(f"mixed seeds: {path} was computed with seed {record.get('seed')!r}, but this build "
                           f"uses seed {seed}; run chapter {chapter!r} with seed {seed}")
    if record.get("glassbox_source") != source:
        raise ResultsError(f"stale results: {path} was computed by library source "
                           f"{record.get('glassbox_source')!r}, the library is now {source!r}; "
                           f"run chapter {chapter!r} again")
    if notebooks is not None:
        expected = notebook_fingerprint(notebooks / f"{chapter}.ipynb")
        if expected is not None and record.get("notebook_source") != expected:
            raise ResultsError(f"stale results: {path} was computed by other code of {chapter}.ipynb "
                               f"(notebook_source {record.get('notebook_source')!r}, the notebook is now "
                               f"{expected!r}); run chapter {chapter!r} again")
    claims = _records(doc, "claims", Claim, path)
    checks = _records(doc, "checks", Check, path)
    deviations = _records(doc, "deviations", Deviation, path)
    ids = [c.id for c in claims]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ResultsError(f"{path}: claim id(s) {duplicated} appear more than once")
    for item in (*claims, *deviations):
        if item.chapter != chapter:
            raise ResultsError(f"{path}: {type(item).__name__} {item.id!r} says it belongs to {item.chapter!r}")
        if known_references is not None and item.reference and item.reference not in known_references:
            raise ResultsError(f"{path}: {type(item).__name__} {item.id!r} names paper {item.reference!r}, "
                               "which is not a key of book/references.bib")
    return ChapterLedger(chapter=chapter, path=path, created=str(record.get("created", "?")), claims=claims,
                         checks=checks, deviations=deviations, record=record)


def gather(required: Sequence[str], pending: Sequence[str] = (), *, profile: str, seed: int,
           source: str | None = None, folder: str | Path | None = None, notebooks: str | Path | None = None,
           bib: str | Path | None = None) -> Ledger:
    """The claims of every chapter in ``required`` (in that order), each checked to be current.

    ``profile`` and ``seed`` are this build's (the Verdicts chapter's own run); ``source`` defaults to the
    library's fingerprint now; ``folder`` to the results folder; ``notebooks`` to ``book/`` (the folder of
    the chapter notebooks whose code hash each file must match; a chapter without a notebook there is not
    code-checked); ``bib`` to ``book/references.bib``. Raises :class:`ResultsError` naming the first file
    that fails.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile must be one of {PROFILE_NAMES}, got {profile!r}")
    overlap = sorted(set(required) & set(pending))
    if overlap:
        raise ValueError(f"chapter(s) {overlap} are both required and pending")
    source = source or library_fingerprint()
    folder = Path(folder) if folder is not None else results_dir()
    notebooks = Path(notebooks) if notebooks is not None else project_root() / "book"
    labels = bibliography(bib)
    chapters = tuple(load_chapter(ch, profile=profile, seed=seed, source=source, folder=folder,
                                  notebooks=notebooks, known_references=list(labels)) for ch in required)
    return Ledger(profile=profile, seed=seed, source=source, chapters=chapters, pending=tuple(pending),
                  labels=labels)


# --- tables ---------------------------------------------------------------------------------------


def _interval(claim: Claim, digits: int) -> str:
    if claim.interval is None:
        return "—"
    text = format_interval(claim, digits)
    return f"{text} ({claim.interval_kind})" if claim.interval_kind else text


def _link(chapter: str, section: str) -> str:
    """A MyST cross-reference: the claim's section label, else the chapter's page (checked by Sphinx)."""
    return f"{{ref}}`{chapter} <{section}>`" if section else f"{{doc}}`{chapter} <{chapter}>`"


def paper_table(ledger: Ledger, reference: str, digits: int = 3, links: bool = False) -> pd.DataFrame:
    """One row per claim of one paper: claim, paper, ours, chance, interval, verdict, where it is tested."""
    rows = []
    for c in ledger.claims:
        if c.reference != reference:
            continue
        unit = f" {c.unit}" if c.unit and c.ours is not None else ""
        rows.append({"claim": f"{c.statement} — {c.source}", "paper": _num(c.paper, digits),
                     "ours": _num(c.ours, digits) + unit, "chance": _num(c.chance, digits),
                     "interval": _interval(c, digits), "verdict": c.verdict,
                     "where": _link(c.chapter, c.section) if links else f"{c.chapter}: {c.section or 'chapter'}"})
    return pd.DataFrame(rows, columns=["claim", "paper", "ours", "chance", "interval", "verdict", "where"])


def deviations_table(ledger: Ledger, reference: str, links: bool = False) -> pd.DataFrame:
    """One row per deviation from one paper's protocol: aspect, the paper's, ours, why, which chapter."""
    rows = [{"aspect": d.aspect, "paper": d.paper, "ours": d.ours, "why": d.reason,
             "where": _link(d.chapter, "") if links else d.chapter}
            for d in ledger.deviations if d.reference == reference]
    return pd.DataFrame(rows, columns=["aspect", "paper", "ours", "why", "where"])


def chapters_table(ledger: Ledger) -> pd.DataFrame:
    """One row per chapter: how many claims with each verdict, failed quality checks, deviations, status
    (``read``, or ``pending`` for a chapter whose study module defines no ``claims`` yet)."""
    rows = []
    for ch in ledger.chapters:
        failed = [c.id for c in ch.checks if not c.passed]
        rows.append({"chapter": ch.chapter, "claims": len(ch.claims), **verdict_counts(ch.claims),
                     "failed quality checks": ", ".join(failed) or "none", "deviations": len(ch.deviations),
                     "status": "read"})
    for name in ledger.pending:
        rows.append({"chapter": name, "claims": "—", **dict.fromkeys(VERDICTS, "—"), "failed quality checks": "—",
                     "deviations": "—", "status": "pending"})
    return pd.DataFrame(rows).set_index("chapter")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub/MyST pipe table of a data frame (cells on one line, ``|`` escaped)."""
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _heading(reference: str, what: str) -> str:
    if reference == OWN_CLAIMS:
        return f"**The book's own {what.lower()}** (from no paper: physics and controls)"
    return f"**{what} of {{cite:t}}`{reference}`**"


def verdicts_markdown(ledger: Ledger, digits: int = 3) -> str:
    """One captioned table of claims per paper, linked to the sections that test them (MyST Markdown)."""
    blocks = []
    for reference in ledger.references():
        table = paper_table(ledger, reference, digits, links=True)
        if not table.empty:
            blocks.append(f"{_heading(reference, 'Claims')}\n\n{markdown_table(table)}")
    return "\n\n".join(blocks) or "_No chapter has saved claims yet._"


def deviations_markdown(ledger: Ledger) -> str:
    """One captioned table of deviations per paper (MyST Markdown)."""
    blocks = []
    for reference in ledger.references():
        table = deviations_table(ledger, reference, links=True)
        if not table.empty:
            blocks.append(f"{_heading(reference, 'Deviations from the protocol')}\n\n{markdown_table(table)}")
    return "\n\n".join(blocks) or "_No chapter has saved deviations yet._"


def summary_figure(ledger: Ledger) -> plt.Figure:
    """How many claims of each paper got each verdict: one stacked bar per paper."""
    references = [r for r in ledger.references() if any(c.reference == r for c in ledger.claims)]
    counts = np.array([[verdict_counts(c for c in ledger.claims if c.reference == r)[v] for v in VERDICTS]
                       for r in references]).reshape(len(references), len(VERDICTS))
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.55 * max(1, len(references))))
    left = np.zeros(len(references))
    y = np.arange(len(references))
    for j, verdict in enumerate(VERDICTS):
        ax.barh(y, counts[:, j], left=left, color=VERDICT_COLOURS[verdict], label=verdict, height=0.6)
        for yi, (x0, n) in enumerate(zip(left, counts[:, j])):
            if n:
                ax.text(x0 + n / 2, yi, str(int(n)), ha="center", va="center", color="white", fontsize=9)
        left += counts[:, j]
    ax.set_yticks(y, [ledger.label(r) for r in references])
    ax.invert_yaxis()
    ax.set_xlabel("claims")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(1.0, float(left.max(initial=0))) * 1.02)
    ax.legend(ncol=len(VERDICTS), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def numbers(ledger: Ledger) -> dict[str, Any]:
    """The chapter's headline numbers for ``results/verdicts.json`` (the files read, with their paths and times,
    belong in the run record: they differ between two runs of the same build)."""
    return {
        "claims": len(ledger.claims),
        "verdicts": verdict_counts(ledger.claims),
        "by_paper": {ledger.label(r): verdict_counts(c for c in ledger.claims if c.reference == r)
                     for r in ledger.references()},
        "deviations": len(ledger.deviations),
        "chapters_read": [c.chapter for c in ledger.chapters],
        "chapters_pending": list(ledger.pending),
    }


def summary(ledger: Ledger) -> Mapping[str, Any]:
    """Counts to quote in the prose (glue): claims (from papers and the book's own), papers with claims,
    chapters read and pending, deviations."""
    own = [c for c in ledger.claims if c.reference == OWN_CLAIMS]
    return {"n_claims": len(ledger.claims), "n_own_claims": len(own),
            "n_paper_claims": len(ledger.claims) - len(own),
            "n_papers": len({c.reference for c in ledger.claims} - {OWN_CLAIMS}),
            "n_chapters": len(ledger.chapters), "n_pending": len(ledger.pending),
            "n_deviations": len(ledger.deviations)}
