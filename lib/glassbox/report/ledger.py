"""Rendering claims and checks: a chapter's conclusions and checks come from these, never from typed prose.

A chapter ends its "What this chapter finds" section with one code cell, tagged ``conclusions``, that
displays :func:`conclusions_markdown` of its claims (the cell's input is hidden in the book). The text of
each verdict is therefore the verdict in ``results/<chapter>.json``; ``tests/test_conclusions.py`` checks that
no hand-written markdown cell of that section carries a verdict word.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
from IPython.display import Markdown, display

from glassbox.measure.claims import Check, Claim

GENERATED_TAG = "conclusions"
"""Cell tag of the code cell that renders a chapter's conclusions from its claims."""


def format_number(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``—`` for a missing or non-finite one; text as it is."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    value = float(value)
    if not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


_num = format_number


def format_interval(claim: Claim, digits: int = 3) -> str:
    """``[low, high]`` of a claim's interval, or an empty string when it has none."""
    if claim.interval is None:
        return ""
    lo, hi = claim.interval
    return f"[{_num(lo, digits)}, {_num(hi, digits)}]"


_interval = format_interval


def claims_table(claims: Sequence[Claim], digits: int = 3) -> pd.DataFrame:
    """One row per claim: source, statement, paper, ours with interval, chance, p, verdict."""
    rows = []
    for c in claims:
        ours = _num(c.ours, digits) + (f" {_interval(c, digits)}" if c.interval else "")
        rows.append({"claim": c.id, "source": c.source, "statement": c.statement,
                     "paper": _num(c.paper, digits), "ours": ours.strip(), "chance": _num(c.chance, digits),
                     "p": _num(c.p_value, 2), "verdict": c.verdict})
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame(
        columns=["source", "statement", "paper", "ours", "chance", "p", "verdict"])


def checks_table(checks: Iterable[Check]) -> pd.DataFrame:
    """One row per check: kind, what it checks, the value, the threshold, passed."""
    rows = [{"check": c.id, "kind": c.kind, "description": c.description, "value": c.value,
             "threshold": c.threshold, "passed": c.passed, "margin": c.margin_note} for c in checks]
    return pd.DataFrame(rows).set_index("check") if rows else pd.DataFrame(
        columns=["kind", "description", "value", "threshold", "passed", "margin"])


def claim_sentence(claim: Claim, digits: int = 3) -> str:
    """One Markdown paragraph: the paper's statement, the verdict, the numbers behind it and the rule."""
    head = f"**{claim.source}.** {claim.statement} — **{claim.verdict}**."
    if claim.verdict == "not testable here":
        return f"{head} {claim.note}".strip()
    unit = f" {claim.unit}" if claim.unit else ""
    numbers = []
    if claim.ours is not None:
        ours = f"ours {_num(claim.ours, digits)}{unit}"
        if claim.interval is not None:
            ours += f" {_interval(claim, digits)}" + (f" ({claim.interval_kind})" if claim.interval_kind else "")
        numbers.append(ours)
    if claim.paper is not None:
        numbers.append(f"paper {_num(claim.paper, digits)}{unit if not isinstance(claim.paper, str) else ''}")
    if claim.chance is not None:
        numbers.append(f"chance {_num(claim.chance, digits)}{unit}")
    if claim.p_value is not None:
        numbers.append(f"p = {_num(claim.p_value, 2)}")
    body = f" We test: {claim.test}"
    if numbers:
        body += f" ({'; '.join(numbers)})"
    body += f". Rule: {claim.rule}."
    if claim.note:
        body += f" {claim.note}"
    return head + body


def conclusions_markdown(claims: Sequence[Claim], digits: int = 3) -> str:
    """The chapter's conclusions, one paragraph per claim, in the order given."""
    if not claims:
        return "_This chapter makes no claims._"
    return "\n\n".join(f"- {claim_sentence(c, digits)}" for c in claims)


def display_conclusions(claims: Sequence[Claim], digits: int = 3) -> None:
    """Show :func:`conclusions_markdown` as Markdown in the notebook (and the built book)."""
    display(Markdown(conclusions_markdown(claims, digits)))
