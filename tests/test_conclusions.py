"""A chapter's conclusions are generated from its claims, never typed.

How generated blocks are marked: each chapter that makes claims has one section whose heading is
``## What this chapter finds``. Inside it, the conclusions come from a code cell tagged ``conclusions`` (and
``remove-input``) that calls ``display_conclusions``; the markdown cells of that section may explain method and
caveats but may not carry a verdict word (:data:`VERDICT_WORDS`) outside a glue role (``{glue:text}`name```,
whose value is computed). Every chapter also ends with the provenance block (``provenance.show(run)``).

Chapters still being converted by other work are strict-xfail in :data:`PENDING_CLAIMS` and
:data:`PENDING_PROVENANCE`: a chapter that is converted fails here until it is taken off the set, and the sets
must be empty when the work is done.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from glassbox import chapters
from glassbox.report.ledger import GENERATED_TAG

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
FINDINGS = "What this chapter finds"

VERDICT_WORDS = re.compile(
    r"\b(supported|supports?|contradict(?:s|ed|ion)?|inconclusive|holds?|held|refut(?:e|es|ed)|"
    r"confirm(?:s|ed)?|not testable|verified|disproved?)\b", re.IGNORECASE)
"""Words that state a verdict. In a conclusions section they may only come from generated output or glue."""
GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`[^`]*`")

PENDING_CLAIMS: set[str] = set()
"""Chapters still being converted to claims (strict xfail). Must be empty when the work is done."""
PENDING_PROVENANCE: set[str] = set()
"""Chapters that do not end with the provenance block yet (strict xfail). Must be empty when the work is done."""

CLAIM_CHAPTERS = [name for name in chapters.CHAPTERS if name != chapters.LEDGER_CHAPTER]


def _pending(names, pending, reason):
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=reason)) if n in pending else n
            for n in names]


def _cells(chapter: str) -> list[dict]:
    return json.loads((BOOK / f"{chapter}.ipynb").read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def verdict_words(markdown: str) -> list[str]:
    """The verdict words of a markdown text, glue roles left out."""
    return [m.group(0) for m in VERDICT_WORDS.finditer(GLUE_ROLE.sub(" ", markdown))]


def findings_section(cells: list[dict]) -> list[dict]:
    """The cells from the ``## What this chapter finds`` heading to the next heading of level 1 or 2."""
    start = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
             and re.search(rf"^##\s+{FINDINGS}\s*$", _source(c), flags=re.M)]
    if len(start) != 1:
        raise AssertionError(f"expected exactly one '## {FINDINGS}' heading, found {len(start)}")
    section = [cells[start[0]]]
    for cell in cells[start[0] + 1:]:
        if cell["cell_type"] == "markdown" and re.search(r"^#{1,2}\s", _source(cell), flags=re.M):
            break
        section.append(cell)
    return section


def test_the_detector_finds_typed_verdicts_and_spares_glue():
    assert verdict_words("Claim 2 of Qu et al. is supported by Table II.") == ["supported"]
    assert verdict_words("This confirms the paper; the effect holds.") == ["confirms", "holds"]
    assert verdict_words("Table II gives claim 2 no support.") == ["support"]
    assert verdict_words("The verdict is {glue:text}`verdict_2`; {glue:}`n_supported` claims.") == []
    assert verdict_words("Thresholds, a holdout set and the upheld method are method words.") == []


@pytest.mark.parametrize("chapter", _pending(CLAIM_CHAPTERS, PENDING_CLAIMS, "being converted to claims"))
def test_chapter_has_a_claims_ledger(chapter):
    assert callable(getattr(chapters.CHAPTERS[chapter], "claims", None)), \
        f"glassbox.studies.{chapter} defines no claims(): the Verdicts chapter cannot show it"
    assert callable(getattr(chapters.CHAPTERS[chapter], "deviations", None)), \
        f"glassbox.studies.{chapter} defines no deviations(): say how the chapter departs from the paper"


@pytest.mark.parametrize("chapter", _pending(CLAIM_CHAPTERS, PENDING_CLAIMS, "being converted to claims"))
def test_conclusions_are_generated_not_typed(chapter):
    section = findings_section(_cells(chapter))
    generated = [c for c in section if c["cell_type"] == "code" and GENERATED_TAG in _tags(c)]
    assert len(generated) == 1, f"{chapter}: the '{FINDINGS}' section needs one code cell tagged {GENERATED_TAG!r}"
    assert "display_conclusions(" in _source(generated[0]), f"{chapter}: the conclusions cell must render claims"
    assert "remove-input" in _tags(generated[0]), f"{chapter}: tag the conclusions cell 'remove-input'"
    typed = {i: verdict_words(_source(c)) for i, c in enumerate(section) if c["cell_type"] == "markdown"}
    typed = {i: words for i, words in typed.items() if words}
    assert not typed, (f"{chapter}: hand-typed verdict words in '{FINDINGS}': {typed}; "
                       "state them through claims (display_conclusions) or glue")


def test_generated_conclusions_are_no_markdown_elsewhere():
    """The tag marks code cells only: a markdown cell tagged 'conclusions' would be typed text posing as generated."""
    for chapter in CLAIM_CHAPTERS + [chapters.LEDGER_CHAPTER]:
        tagged = [c for c in _cells(chapter) if GENERATED_TAG in _tags(c) and c["cell_type"] != "code"]
        assert not tagged, f"{chapter}: only code cells may be tagged {GENERATED_TAG!r}"


def test_the_verdicts_page_types_no_verdict():
    typed = [verdict_words(_source(c)) for c in _cells(chapters.LEDGER_CHAPTER) if c["cell_type"] == "markdown"]
    assert not any(typed), f"verdicts.ipynb: verdict words in its prose: {typed}"


@pytest.mark.parametrize("chapter", _pending(list(chapters.CHAPTERS), PENDING_PROVENANCE, "provenance cell not added"))
def test_chapter_ends_with_its_provenance(chapter):
    code = [c for c in _cells(chapter) if c["cell_type"] == "code"]
    last = code[-1]
    assert re.search(r"\bprovenance\.show\(run\b", _source(last)), \
        f"{chapter}: the last code cell must be `provenance.show(run)` (glassbox.report.provenance)"
    assert "remove-input" in _tags(last), f"{chapter}: tag the provenance cell 'remove-input'"
