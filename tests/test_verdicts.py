"""The Verdicts chapter's reader and tables, on synthetic results files: it shows what the chapters saved and
refuses a missing, stale, other-profile, other-seed or malformed file with an error naming it."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from glassbox import chapters
from glassbox.core.repro import notebook_fingerprint
from glassbox.measure.claims import Claim, Deviation, equivalence_rule, interval_rule, not_testable
from glassbox.report.results import save_results
from glassbox.studies import verdicts
from glassbox.studies.verdicts import ResultsError

SOURCE = "0123456789abcdef"
BIB = """@misc{paperA,
  title  = {A},
  author = {Alpha, Ann and Beta, Bob and Gamma, Gil},
  year   = {2020}
}
@article{paperB,
  title  = {B},
  author = {Delta, Dan},
  year   = {2021}
}
"""


@pytest.fixture()
def book(tmp_path, monkeypatch):
    """A results folder, a notebooks folder and a bibliography of two papers."""
    results, notebooks = tmp_path / "results", tmp_path / "book"
    notebooks.mkdir()
    (notebooks / "references.bib").write_text(BIB)
    monkeypatch.setenv("GLASSBOX_RESULTS", str(results))
    return tmp_path


def _notebook(book: Path, chapter: str, code: str = "x = 1") -> str:
    path = book / "book" / f"{chapter}.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": code, "metadata": {}, "outputs": []}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return notebook_fingerprint(path)


def _claim(chapter: str, id: str, verdict_interval=(0.6, 0.8), **kw) -> Claim:
    verdict, rule = interval_rule(verdict_interval, above=0.5, what="CKA")
    base = dict(id=id, chapter=chapter, source="Table II", statement=f"Claim {id} | with a pipe.",
                test="CKA against chance", verdict=verdict, rule=rule, ours=sum(verdict_interval) / 2,
                interval=verdict_interval, interval_kind="95% bootstrap", paper=0.9, chance=0.1,
                reference="paperA")
    base.update(kw)
    return Claim(**base)


def _save(book: Path, chapter: str, claims=(), *, profile="smoke", seed=0, source=SOURCE, deviations=(),
          notebook: str | None = "default") -> Path:
    notebook = _notebook(book, chapter) if notebook == "default" else notebook
    record = {"parameters": {"profile": profile}, "seed": seed, "glassbox_source": source,
              "notebook_source": notebook, "created": "2026-01-01T00:00:00+00:00"}
    return save_results(chapter, {"n": 1}, record=record, claims=claims, deviations=deviations)


def _gather(book: Path, required, pending=(), **kw):
    options = dict(profile="smoke", seed=0, source=SOURCE, notebooks=book / "book", bib=book / "book" / "references.bib")
    return verdicts.gather(required, pending, **(options | kw))


def _two_chapters(book: Path) -> None:
    own_verdict, own_rule = equivalence_rule((-0.02, 0.01), 0.05, what="slope + 0.5")
    _save(book, "alpha", [_claim("alpha", "alpha.1", section="alpha-sec"),
                          _claim("alpha", "alpha.2", (0.4, 0.6)),
                          Claim(id="alpha.own", chapter="alpha", source="physics", statement="Slope is -1/2.",
                                test="fit", verdict=own_verdict, rule=own_rule, ours=-0.5)],
          deviations=[Deviation("alpha.d", "alpha", "paperA", "data", "Mayo", "phantoms", "licence")])
    _save(book, "beta", [_claim("beta", "beta.1", (0.1, 0.3), reference="paperB"),
                         not_testable("beta.2", "beta", "Fig. 3", "GPU kernels differ.", "no GPU here",
                                      reference="paperB")])


def test_gather_reads_every_chapter_in_order(book):
    _two_chapters(book)
    ledger = _gather(book, ["alpha", "beta"], pending=["gamma"])
    assert [c.id for c in ledger.claims] == ["alpha.1", "alpha.2", "alpha.own", "beta.1", "beta.2"]
    assert ledger.references() == ["paperA", "paperB", ""], "papers in order of appearance, own claims last"
    assert ledger.label("paperA") == "Alpha et al. 2020" and ledger.label("paperB") == "Delta 2021"
    numbers = verdicts.numbers(ledger)
    assert numbers["verdicts"] == {"supported": 2, "contradicted": 1, "inconclusive": 1, "not testable here": 1}
    assert numbers["by_paper"]["Alpha et al. 2020"]["inconclusive"] == 1
    assert numbers["chapters_pending"] == ["gamma"]
    table = verdicts.chapters_table(ledger)
    assert table.loc["alpha", "claims"] == 3 and table.loc["beta", "not testable here"] == 1
    assert table.loc["gamma", "status"] == "pending" and table.loc["alpha", "status"] == "read"


def test_tables_link_each_claim_to_its_section(book):
    _two_chapters(book)
    ledger = _gather(book, ["alpha", "beta"])
    table = verdicts.paper_table(ledger, "paperA")
    assert list(table.columns) == ["claim", "paper", "ours", "chance", "interval", "verdict", "where"]
    assert list(table["verdict"]) == ["supported", "inconclusive"]
    assert table.loc[0, "interval"] == "[0.6, 0.8] (95% bootstrap)"
    text = verdicts.verdicts_markdown(ledger)
    assert "{ref}`alpha <alpha-sec>`" in text, "a claim with a section links to its label"
    assert "{doc}`beta <beta>`" in text, "a claim without one links to its chapter"
    assert "{cite:t}`paperA`" in text and "{cite:t}`paperB`" in text
    assert "Claim alpha.1 \\| with a pipe." in text, "a pipe in a cell must not split the table"
    assert text.index("paperA") < text.index("paperB") < text.index("own claims")
    deviations = verdicts.deviations_markdown(ledger)
    assert "phantoms" in deviations and "{cite:t}`paperA`" in deviations and "paperB" not in deviations


def test_summary_figure_counts_each_verdict(book):
    _two_chapters(book)
    fig = verdicts.summary_figure(_gather(book, ["alpha", "beta"]))
    widths = sorted(p.get_width() for p in fig.axes[0].patches if p.get_width() > 0)
    assert widths == [1, 1, 1, 1, 1], "five claims, each verdict of each paper one bar segment"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["Alpha et al. 2020", "Delta 2021",
                                                                    "this book's own claims"]
    plt.close(fig)


def test_a_book_without_claims_yet_renders(book):
    ledger = _gather(book, [], pending=["alpha", "beta"])
    assert verdicts.verdicts_markdown(ledger) == "_No chapter has saved claims yet._"
    assert verdicts.deviations_markdown(ledger) == "_No chapter has saved deviations yet._"
    plt.close(verdicts.summary_figure(ledger))
    assert list(verdicts.chapters_table(ledger)["status"]) == ["pending", "pending"]


def test_missing_file_is_named(book):
    _save(book, "alpha", [_claim("alpha", "alpha.1")])
    with pytest.raises(ResultsError, match=r"beta\.json is missing: chapter 'beta'"):
        _gather(book, ["alpha", "beta"])


def test_pending_chapters_are_not_read(book):
    _save(book, "alpha", [_claim("alpha", "alpha.1")])
    ledger = _gather(book, ["alpha"], pending=["beta"])  # beta has no file and needs none
    assert ledger.pending == ("beta",)
    with pytest.raises(ValueError, match="both required and pending"):
        _gather(book, ["alpha"], pending=["alpha"])


def test_mixed_profiles_are_refused(book):
    _save(book, "alpha", [_claim("alpha", "alpha.1")])
    _save(book, "beta", [_claim("beta", "beta.1")], profile="quick")
    with pytest.raises(ResultsError, match=r"mixed profiles: .*beta\.json was computed on profile 'quick'.*'smoke'"):
        _gather(book, ["alpha", "beta"])
    assert _gather(book, ["beta"], profile="quick").profile == "quick"


def test_other_seed_is_refused(book):
    _save(book, "alpha", [_claim("alpha", "alpha.1")], seed=3)
    with pytest.raises(ResultsError, match=r"mixed seeds: .*alpha\.json .*seed 3"):
        _gather(book, ["alpha"])


def test_other_library_source_is_stale(book):
    _save(book, "alpha", [_claim("alpha", "alpha.1")], source="fedcba9876543210")
    with pytest.raises(ResultsError, match=r"stale results: .*alpha\.json .*'fedcba9876543210'.*'0123456789abcdef'"):
        _gather(book, ["alpha"])


def test_other_notebook_code_is_stale(book):
    _save(book, "alpha", [_claim("alpha", "alpha.1")])
    _gather(book, ["alpha"])
    _notebook(book, "alpha", code="x = 2")  # the chapter's code changed after its results were written
    with pytest.raises(ResultsError, match=r"stale results: .*alpha\.json was computed by other code of alpha\.ipynb"):
        _gather(book, ["alpha"])


@pytest.mark.parametrize("damage, message", [
    (lambda doc: doc.pop("claims"), "no `claims` list"),
    (lambda doc: doc["claims"][0].update(verdict="holds"), "not a valid Claim record"),
    (lambda doc: doc["claims"][0].update(unknown_field=1), "not a valid Claim record"),
    (lambda doc: doc["claims"][0].update(reference="nobody2024"), "not a key of book/references.bib"),
    (lambda doc: doc["claims"].append(dict(doc["claims"][0])), "appear more than once"),
    (lambda doc: doc.update(chapter="other"), "holds chapter 'other'"),
])
def test_malformed_files_are_named(book, damage, message):
    path = _save(book, "alpha", [_claim("alpha", "alpha.1")])
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ResultsError, match=message) as error:
        _gather(book, ["alpha"])
    assert "alpha.json" in str(error.value)


def test_unreadable_file_is_named(book):
    path = _save(book, "alpha", [_claim("alpha", "alpha.1")])
    path.write_text("{ not json")
    with pytest.raises(ResultsError, match=r"alpha\.json: cannot read it"):
        _gather(book, ["alpha"])


def test_the_real_bibliography_gives_short_labels():
    labels = verdicts.bibliography()
    assert labels["qu2023beware"] == "Qu et al. 2023" and labels["lu2023ksampling"] == "Lu 2023"
    assert labels["mccollough2017grandchallenge"] == "McCollough et al. 2017"  # "and others"
    assert {labels["eulig2022slides"], labels["eulig2022invariances"]} == {"Eulig et al. 2022a", "Eulig et al. 2022b"}


def test_registry_splits_chapters_into_with_and_without_claims():
    with_claims, without = chapters.chapters_with_claims(), chapters.chapters_without_claims()
    assert "data" in with_claims and chapters.LEDGER_CHAPTER not in with_claims + without
    assert sorted(with_claims + without) == sorted(set(chapters.CHAPTERS) - {chapters.LEDGER_CHAPTER})
    assert list(chapters.CHAPTERS)[-1] == chapters.LEDGER_CHAPTER, "the Verdicts chapter is the book's last"
