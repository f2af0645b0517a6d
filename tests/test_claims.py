"""Claims and checks: every verdict rule on both sides of its threshold and in its inconclusive band."""
from __future__ import annotations

import json

import pytest

from glassbox.measure.claims import (
    VERDICTS,
    Claim,
    ClaimError,
    Deviation,
    InvariantError,
    apply_checks,
    equivalence_rule,
    interval_rule,
    not_testable,
    p_value_rule,
    quality_check,
    require,
    verdict_counts,
)
from glassbox.report.ledger import checks_table, claims_table, conclusions_markdown
from glassbox.report.results import load_results, save_results


@pytest.mark.parametrize("interval, expected", [
    ((0.6, 0.9), "supported"),       # wholly above 0.5
    ((0.1, 0.4), "contradicted"),    # wholly below
    ((0.4, 0.6), "inconclusive"),    # straddles
    ((0.1, 0.5), "contradicted"),    # touching the boundary from below is outside the open region
])
def test_interval_rule_above(interval, expected):
    verdict, rule = interval_rule(interval, above=0.5)
    assert verdict == expected
    assert "> 0.5" in rule


def test_interval_rule_band_and_below():
    assert interval_rule((0.2, 0.3), above=0.1, below=0.4)[0] == "supported"
    assert interval_rule((0.35, 0.45), above=0.1, below=0.4)[0] == "inconclusive"
    assert interval_rule((0.5, 0.6), above=0.1, below=0.4)[0] == "contradicted"
    assert interval_rule((-2.0, -1.0), below=0.0)[0] == "supported"
    with pytest.raises(ClaimError, match="empty region"):
        interval_rule((0, 1), above=1.0, below=0.0)
    with pytest.raises(ClaimError, match="low <= high"):
        interval_rule((1.0, 0.0), above=0.0)
    with pytest.raises(ClaimError, match="needs"):
        interval_rule((0.0, 1.0))


@pytest.mark.parametrize("interval, expected", [
    ((-0.1, 0.2), "supported"),
    ((0.6, 0.9), "contradicted"),
    ((-0.9, -0.6), "contradicted"),
    ((0.3, 0.7), "inconclusive"),
    ((-1.0, 1.0), "inconclusive"),
])
def test_equivalence_rule(interval, expected):
    assert equivalence_rule(interval, margin=0.5)[0] == expected


def test_equivalence_rule_needs_a_positive_margin():
    with pytest.raises(ClaimError, match="positive"):
        equivalence_rule((0, 0.1), margin=0.0)


@pytest.mark.parametrize("p, p_opp, expected", [
    (0.01, 0.99, "supported"),
    (0.049, None, "supported"),
    (0.05, None, "inconclusive"),      # alpha itself is not below alpha
    (0.5, 0.5, "inconclusive"),
    (0.99, 0.01, "contradicted"),
])
def test_p_value_rule(p, p_opp, expected):
    assert p_value_rule(p, p_opp, alpha=0.05)[0] == expected


def test_p_value_rule_rejects_nonsense():
    with pytest.raises(ClaimError):
        p_value_rule(1.5)
    with pytest.raises(ClaimError):
        p_value_rule(0.1, alpha=0.0)
    with pytest.raises(ClaimError):
        p_value_rule(float("nan"))


def _claim(verdict="supported", **kw):
    base = dict(id="x.1", chapter="x", source="Paper, Table 1", statement="A is above chance.",
                test="CKA against its permutation chance", verdict=verdict, rule="r", ours=0.7,
                interval=(0.6, 0.8), chance=0.1)
    base.update(kw)
    return Claim(**base)


def test_claim_validates_vocabulary_and_reason():
    with pytest.raises(ClaimError, match="verdict must be one of"):
        _claim(verdict="holds")
    with pytest.raises(ClaimError, match="say why"):
        _claim(verdict="not testable here")
    claim = not_testable("x.2", "x", "Paper, Fig. 2", "B is true.", "needs GPU kernels")
    assert claim.verdict == "not testable here" and "GPU" in conclusions_markdown([claim])
    assert set(verdict_counts([_claim(), claim]).keys()) == set(VERDICTS)


def test_quality_checks_never_raise_and_invariants_do():
    ok = quality_check("v.mean", "mean of v near 0", 0.2, below=1.0)
    bad = quality_check("v.var", "variance of v", 3.0, above=0.5, below=1.5)
    nan = quality_check("v.nan", "a NaN fails", float("nan"), below=1.0)
    assert ok.passed and not bad.passed and not nan.passed and nan.value is None
    assert require("shape", "shapes agree", True).passed
    with pytest.raises(InvariantError, match="inversion"):
        require("inversion", "inversion error below 1e-3", False, value=0.1, threshold="< 1e-3")


def test_failed_check_makes_dependent_claims_inconclusive():
    checks = [quality_check("good", "g", 1.0, above=0.0), quality_check("bad", "b", -1.0, above=0.0)]
    claims = [_claim(id="a", depends_on=("good",)), _claim(id="b", depends_on=("bad",)),
              _claim(id="c", verdict="contradicted", depends_on=("bad",))]
    out = apply_checks(claims, checks)
    assert [c.verdict for c in out] == ["supported", "inconclusive", "inconclusive"]
    assert "bad failed" in out[1].note
    with pytest.raises(ClaimError, match="unknown check"):
        apply_checks([_claim(depends_on=("nope",))], checks)


def test_claims_round_trip_through_the_results_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    claims = [_claim(), not_testable("x.2", "x", "Paper", "B.", "no data")]
    checks = [quality_check("q", "q", 0.5, below=1.0)]
    save_results("x", {"n": 1}, record={"parameters": {"profile": "smoke"}}, claims=claims, checks=checks)
    doc = load_results("x")
    assert [Claim.from_dict(c) for c in doc["claims"]] == claims
    assert doc["checks"][0]["passed"] is True
    json.dumps(doc)  # plain JSON
    with pytest.raises(ValueError, match="belongs to chapter"):
        save_results("y", {}, record={}, claims=claims)


def test_rendering_carries_the_verdict_and_numbers():
    text = conclusions_markdown([_claim(paper=0.2, p_value=0.001, note="A caveat.")])
    assert "**supported**" in text and "0.7" in text and "[0.6, 0.8]" in text and "chance 0.1" in text
    assert "A caveat." in text
    table = claims_table([_claim()])
    assert table.loc["x.1", "verdict"] == "supported"
    assert checks_table([quality_check("q", "q", 0.5, below=1.0)]).loc["q", "passed"]


def test_claim_reference_and_section_are_keys():
    assert _claim(reference="qu2023beware", section="data-noise-law").reference == "qu2023beware"
    with pytest.raises(ClaimError, match="reference must be a key"):
        _claim(reference="Qu et al.")
    with pytest.raises(ClaimError, match="section must be a key"):
        _claim(section="{ref}`x`")


def _deviation(**kw):
    base = dict(id="x.d1", chapter="x", reference="qu2023beware", aspect="data", paper="512 x 512 Mayo slices",
                ours="64 x 64 phantoms", reason="no licence")
    base.update(kw)
    return Deviation(**base)


def test_deviation_needs_every_field():
    assert Deviation.from_dict(_deviation().as_dict()) == _deviation()
    with pytest.raises(ClaimError, match="reason must be a non-empty string"):
        _deviation(reason=" ")
    with pytest.raises(ClaimError, match="reference must be a BibTeX key"):
        _deviation(reference="Qu 2023")


def test_deviations_round_trip_through_the_results_file(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_RESULTS", str(tmp_path))
    save_results("x", {"n": 1}, record={}, claims=[_claim()], deviations=[_deviation()])
    doc = load_results("x")
    assert [Deviation.from_dict(d) for d in doc["deviations"]] == [_deviation()]
    with pytest.raises(ValueError, match="deviation 'x.d1' belongs to chapter 'x', not 'y'"):
        save_results("y", {}, record={}, deviations=[_deviation()])
