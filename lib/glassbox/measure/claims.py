"""Claims and checks as data: what a paper says, what we computed to test it, and a verdict chosen by a rule.

A chapter never types a verdict. It builds :class:`Claim` records with one of the rules below, whose
thresholds are arguments the chapter states before it looks at the data, and renders its conclusions from
them (:func:`glassbox.report.ledger`). The vocabulary is fixed (:data:`VERDICTS`):

- ``supported``: the data show what the paper says, beyond the rule's uncertainty;
- ``contradicted``: the data show the opposite (or a value outside what the paper's statement allows);
- ``inconclusive``: the uncertainty allows both, or a quality check the claim depends on failed;
- ``not testable here``: our set-up cannot test it (the reason is the claim's ``note``).

:class:`Check` is a measured property of a run. An ``invariant`` must hold on every run (finite values,
shapes, an inversion error): :func:`require` raises when it does not, and the build fails. A ``quality``
check is a statistic of a trained model with a threshold (a mean of v, a loss level): it never raises; a
failed one is shown as failed and every claim that names it in ``depends_on`` becomes ``inconclusive``
(:func:`apply_checks`).

:class:`Deviation` records one way a chapter departs from a paper's protocol; the Verdicts chapter lists
them beside the verdicts.

Rules (each returns ``(verdict, rule_text)``; ``rule_text`` states the thresholds in words):

- :func:`interval_rule` -- is a confidence interval inside, outside or across the region the claim needs;
- :func:`equivalence_rule` -- "A equals B" within a stated margin (two one-sided intervals);
- :func:`p_value_rule` -- a one-sided test of the claimed direction, with the opposite direction as evidence
  against.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

VERDICTS: tuple[str, ...] = ("supported", "contradicted", "inconclusive", "not testable here")
VERDICT_MEANINGS: dict[str, str] = {
    "supported": "the data show what the paper says, beyond the rule's uncertainty",
    "contradicted": "the data show the opposite, or a value outside what the paper's statement allows",
    "inconclusive": "the uncertainty allows both, or a quality check the claim depends on failed",
    "not testable here": "our set-up cannot test the claim (the reason is given)",
}
CHECK_KINDS: tuple[str, ...] = ("invariant", "quality")


class ClaimError(ValueError):
    """A claim, check or rule got inconsistent arguments (an unknown verdict, an interval upside down)."""


class InvariantError(AssertionError):
    """An invariant of a run does not hold: the run is wrong, not merely weak."""


def _finite(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ClaimError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _interval(interval: Sequence[float], name: str = "interval") -> tuple[float, float]:
    if len(interval) != 2:
        raise ClaimError(f"{name} must be (low, high), got {interval!r}")
    lo, hi = (float(v) for v in interval)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise ClaimError(f"{name} must be (low, high) with low <= high and no NaN, got {interval!r}")
    return lo, hi


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# --- rules ------------------------------------------------------------------------------------------


def interval_rule(interval: Sequence[float], *, above: float | None = None, below: float | None = None,
                  what: str = "the estimate") -> tuple[str, str]:
    """The claim needs the quantity ``> above`` (and/or ``< below``).

    ``supported`` if the whole interval lies in that region, ``contradicted`` if the whole interval lies
    outside it, ``inconclusive`` if it straddles a boundary.
    """
    if above is None and below is None:
        raise ClaimError("interval_rule needs `above`, `below` or both")
    lo, hi = _interval(interval)
    region_lo = -math.inf if above is None else _finite(above, "above")
    region_hi = math.inf if below is None else _finite(below, "below")
    if region_lo >= region_hi:
        raise ClaimError(f"empty region: above={above!r} is not below below={below!r}")
    parts = ([f"> {_fmt(region_lo)}"] if above is not None else []) + ([f"< {_fmt(region_hi)}"] if below is not None else [])
    region = " and ".join(parts)
    rule = (f"supported if the whole interval of {what} is {region}; contradicted if the whole interval is "
            f"outside that; inconclusive otherwise")
    if lo > region_lo and hi < region_hi:
        return "supported", rule
    if hi <= region_lo or lo >= region_hi:
        return "contradicted", rule
    return "inconclusive", rule


def equivalence_rule(interval: Sequence[float], margin: float, *, what: str = "the difference") -> tuple[str, str]:
    """The claim says a difference is (practically) zero: ``|difference| <= margin``.

    ``supported`` if the interval lies within ``[-margin, margin]``, ``contradicted`` if it lies entirely
    outside, ``inconclusive`` otherwise. ``margin`` must come from the data's own scale (for example the
    test-set interval of one trial's score), never from the paper's numbers or ours.
    """
    lo, hi = _interval(interval)
    margin = _finite(margin, "margin")
    if margin <= 0:
        raise ClaimError(f"margin must be positive, got {margin!r}")
    rule = (f"supported if the interval of {what} lies within ±{_fmt(margin)}; contradicted if it lies entirely "
            f"outside; inconclusive otherwise")
    if -margin <= lo and hi <= margin:
        return "supported", rule
    if hi < -margin or lo > margin:
        return "contradicted", rule
    return "inconclusive", rule


def p_value_rule(p_claimed: float, p_opposite: float | None = None, *, alpha: float = 0.05,
                 direction: str = "the claimed direction") -> tuple[str, str]:
    """A one-sided test: ``p_claimed`` tests the claimed direction, ``p_opposite`` the opposite one.

    ``supported`` if ``p_claimed < alpha``; ``contradicted`` if ``p_opposite < alpha``; ``inconclusive``
    otherwise (no evidence either way is not evidence against).
    """
    p_claimed = _finite(p_claimed, "p_claimed")
    alpha = _finite(alpha, "alpha")
    if not 0 < alpha < 1 or not 0 <= p_claimed <= 1:
        raise ClaimError(f"need 0 < alpha < 1 and p-values in [0, 1], got alpha={alpha}, p={p_claimed}")
    rule = f"one-sided test of {direction} at alpha = {alpha:g}: supported if p < alpha"
    if p_opposite is not None:
        p_opposite = _finite(p_opposite, "p_opposite")
        if not 0 <= p_opposite <= 1:
            raise ClaimError(f"p_opposite must be in [0, 1], got {p_opposite}")
        rule += "; contradicted if the opposite direction has p < alpha"
    rule += "; inconclusive otherwise"
    if p_claimed < alpha:
        return "supported", rule
    if p_opposite is not None and p_opposite < alpha:
        return "contradicted", rule
    return "inconclusive", rule


# --- records ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """A measured property of a run: an ``invariant`` (must hold) or a ``quality`` check (may fail, is shown)."""

    id: str
    description: str
    value: float | None
    threshold: str
    passed: bool
    kind: str = "quality"
    margin_note: str = ""

    def __post_init__(self) -> None:
        if not self.id or not isinstance(self.id, str):
            raise ClaimError(f"a check needs a non-empty string id, got {self.id!r}")
        if self.kind not in CHECK_KINDS:
            raise ClaimError(f"check kind must be one of {CHECK_KINDS}, got {self.kind!r}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def quality_check(id: str, description: str, value: float, *, above: float | None = None,
                  below: float | None = None, margin_note: str = "") -> Check:
    """A quality check ``value > above`` and/or ``value < below`` (never raises; a NaN value fails)."""
    if above is None and below is None:
        raise ClaimError("quality_check needs `above`, `below` or both")
    value = float(value)
    ok = math.isfinite(value) and (above is None or value > above) and (below is None or value < below)
    parts = ([f"> {above:g}"] if above is not None else []) + ([f"< {below:g}"] if below is not None else [])
    return Check(id=id, description=description, value=value if math.isfinite(value) else None,
                 threshold=" and ".join(parts), passed=bool(ok), kind="quality", margin_note=margin_note)


def require(id: str, description: str, condition: bool, value: float | None = None, threshold: str = "") -> Check:
    """An invariant: returns the passed :class:`Check`, or raises :class:`InvariantError` naming it."""
    if not bool(condition):
        raise InvariantError(f"invariant {id!r} does not hold: {description}"
                             + (f" (value {value!r}, required {threshold})" if value is not None else ""))
    return Check(id=id, description=description, value=None if value is None else float(value),
                 threshold=threshold, passed=True, kind="invariant")


@dataclass(frozen=True)
class Claim:
    """One claim of a paper (or of our own chapter), tested: the paper's words, our numbers, the verdict.

    ``verdict`` and ``rule`` come from one of the rule functions of this module (or ``not testable here``
    with the reason in ``note``). ``interval`` is the uncertainty of ``ours`` and ``interval_kind`` says what
    it covers (e.g. "95% bootstrap over test patients"). ``depends_on`` names :class:`Check` ids; a failed
    one turns the verdict into ``inconclusive`` (:func:`apply_checks`).

    ``reference`` is the BibTeX key (``book/references.bib``) of the paper the claim comes from; empty for
    the book's own claims (physics, controls). The Verdicts chapter groups claims by it. ``section`` is the
    MyST label of the chapter section that tests the claim (``(label)=`` above its heading); the Verdicts
    chapter links there, or to the chapter's page when it is empty.
    """

    id: str
    chapter: str
    source: str
    statement: str
    test: str
    verdict: str
    rule: str
    ours: float | None = None
    interval: tuple[float, float] | None = None
    interval_kind: str = ""
    paper: float | str | None = None
    chance: float | None = None
    p_value: float | None = None
    unit: str = ""
    section: str = ""
    note: str = ""
    depends_on: tuple[str, ...] = field(default_factory=tuple)
    reference: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ClaimError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")
        for name in ("id", "chapter", "source", "statement", "test"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ClaimError(f"claim {self.id!r}: {name} must be a non-empty string")
        for name in ("reference", "section"):
            value = getattr(self, name)
            if not isinstance(value, str) or any(ch.isspace() or ch in "`{}" for ch in value):
                raise ClaimError(f"claim {self.id!r}: {name} must be a key or label without spaces, got {value!r}")
        if self.verdict == "not testable here" and not self.note:
            raise ClaimError(f"claim {self.id!r} is not testable here: say why in `note`")
        if self.interval is not None:
            object.__setattr__(self, "interval", _interval(self.interval, f"claim {self.id!r} interval"))
        object.__setattr__(self, "depends_on", tuple(self.depends_on))

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["interval"] = list(self.interval) if self.interval is not None else None
        out["depends_on"] = list(self.depends_on)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        data = dict(data)
        if data.get("interval") is not None:
            data["interval"] = tuple(data["interval"])
        data["depends_on"] = tuple(data.get("depends_on") or ())
        return cls(**data)


@dataclass(frozen=True)
class Deviation:
    """One way a chapter departs from a paper's protocol (data, model size, training length, metric).

    ``paper`` says what the paper did, ``ours`` what the chapter does on this run's profile (computed from
    the configuration where it depends on it), ``reason`` why. ``reference`` is the paper's BibTeX key.
    Chapters save them with ``save_results(..., deviations=)``; the Verdicts chapter lists them per paper.
    """

    id: str
    chapter: str
    reference: str
    aspect: str
    paper: str
    ours: str
    reason: str

    def __post_init__(self) -> None:
        for name in ("id", "chapter", "reference", "aspect", "paper", "ours", "reason"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ClaimError(f"deviation {self.id!r}: {name} must be a non-empty string")
        if any(ch.isspace() for ch in self.reference):
            raise ClaimError(f"deviation {self.id!r}: reference must be a BibTeX key, got {self.reference!r}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deviation:
        return cls(**data)


def not_testable(id: str, chapter: str, source: str, statement: str, reason: str, **kwargs: Any) -> Claim:
    """A claim our set-up cannot test; ``reason`` is shown in place of a number."""
    return Claim(id=id, chapter=chapter, source=source, statement=statement, test="—", verdict="not testable here",
                 rule="—", note=reason, **kwargs)


def apply_checks(claims: Iterable[Claim], checks: Iterable[Check]) -> list[Claim]:
    """Claims whose ``depends_on`` names a failed (or missing) check become ``inconclusive``, with a note."""
    by_id = {c.id: c for c in checks}
    out = []
    for claim in claims:
        missing = [d for d in claim.depends_on if d not in by_id]
        if missing:
            raise ClaimError(f"claim {claim.id!r} depends on unknown check(s) {missing}")
        failed = [d for d in claim.depends_on if not by_id[d].passed]
        if failed and claim.verdict in ("supported", "contradicted"):
            note = (claim.note + " " if claim.note else "") + \
                f"Would be {claim.verdict}, but check(s) {', '.join(failed)} failed."
            claim = dataclasses.replace(claim, verdict="inconclusive", note=note)
        out.append(claim)
    return out


def verdict_counts(claims: Iterable[Claim]) -> dict[str, int]:
    """How many claims got each verdict (every verdict of :data:`VERDICTS` appears)."""
    counts = dict.fromkeys(VERDICTS, 0)
    for claim in claims:
        counts[claim.verdict] += 1
    return counts
