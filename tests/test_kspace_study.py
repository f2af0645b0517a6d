"""Tests of the k-space study (glassbox.studies.kspace): configs, the paper's table, claims that follow the
scores, the evaluation mask, and the plan contract (after the plan, the chapter trains nothing)."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from glassbox.core import dryrun
from glassbox.data.mri import MRIDataset
from glassbox.measure.claims import InvariantError
from glassbox.studies import kspace as kx
from glassbox.studies.kspace import cohorts, models, tables

SMOKE = kx.PROFILES["smoke"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="rates"):
        kx.KSpaceConfig(rates=(0.0,))
    with pytest.raises(ValueError, match="full sampling is always trained"):
        kx.KSpaceConfig(rates=(0.2, 1.0))
    with pytest.raises(ValueError, match="baseline_rates"):
        kx.KSpaceConfig(rates=(0.2,), baseline_rates=(0.3,))
    with pytest.raises(ValueError, match="repeated line counts"):
        kx.KSpaceConfig(size=16, rates=(0.2, 0.21), baseline_rates=())
    with pytest.raises(ValueError, match="n_seeds"):
        kx.KSpaceConfig(n_seeds=0)


def test_every_profile_has_every_cell_with_its_seeds():
    for name, cfg in kx.PROFILES.items():
        specs = kx.model_specs(cfg)
        cells = {(s.vendor, s.kind, s.k) for s in specs}
        assert len(specs) == len(cells) * cfg.n_seeds, name
        for vendor in kx.TRAIN_VENDORS:
            assert (vendor, "full", cfg.size) in cells
            assert all((vendor, "learned", cfg.k(r)) in cells for r in cfg.rates)
            assert all((vendor, kind, cfg.k(r)) in cells for kind in ("centre", "random") for r in cfg.baseline_rates)
    assert kx.PROFILES["quick"].n_seeds >= 3 and kx.PROFILES["paper"].n_seeds > kx.PROFILES["quick"].n_seeds
    assert len(kx.PROFILES["paper"].rates) == 9  # Lu's ten rates with full sampling
    assert kx.PROFILES["quick"].claim_k / kx.PROFILES["quick"].size == pytest.approx(0.234, abs=1e-3)


def test_paper_table_is_stored_as_printed_and_read_both_ways():
    t = kx.PAPER_TABLE1
    assert t["A"]["own"][1] == 0.878 and t["B"]["own"][1] == 0.868
    assert t["A"]["other"][0] == 0.689 and t["B"]["other"][0] == 0.726
    assert all(len(col) == 10 for table in t.values() for col in table.values())
    table = kx.paper_table()
    assert len(table) == 20 and table["1 - rate (reading 2)"].isna().sum() == 2  # the rate-1 rows sample nothing
    rows = tables._paper_rows("A", 0.234)
    assert rows["paper rate (reading 1)"] == 0.242 and rows["paper 1-rate (reading 2)"] == pytest.approx(0.196)
    assert rows["paper own (2)"] == 0.902  # GE row 0.804, read as 1 - 0.804


# ---------------------------------------------------------------- claims follow the scores (no training)


def _fake_result(other_gain: float, own_full: float = 3.0, line_gain: float = 0.0, seed: int = 0,
                 learned_chance_on_a: bool = False) -> kx.KSpaceResult:
    """A result with synthetic scores (no training): ``score = strength * label + noise`` per slice.

    Every model separates its own vendor with strength ``own_full``; on the other vendor full sampling and the
    fixed masks have strength 0.8 and the learned mask ``0.8 + other_gain``; on the A+line scan the model
    trained on A has strength 1.0 at full sampling and ``1.0 + line_gain`` with the learned mask. With
    ``learned_chance_on_a`` the learned models trained on A score noise on A and every scan of A's patients."""
    cfg = dataclasses.replace(SMOKE, n_seeds=3, n_boot=300)
    rng = np.random.default_rng(seed)
    n_pat = 30
    labels, patients = np.tile([1, 1, 0, 0], n_pat), np.repeat(np.arange(n_pat), 4)
    blank = np.zeros((4 * n_pat, 2, 2), np.float32)
    test = {name: MRIDataset(blank, labels, patients, blank.astype(bool), name)
            for name in ("A", "B", *kx.ABLATIONS)}
    data = kx.ExperimentData(train={}, test=test)

    def strength(spec: kx.ModelSpec, name: str) -> float:
        learned = spec.kind == "learned"
        if learned_chance_on_a and learned and spec.vendor == "A" and name != "B":
            return 0.0
        if name == spec.vendor or (spec.vendor == "A" and name not in ("B", "A+line")):
            return own_full
        if name == "A+line":
            return 1.0 + (line_gain if learned else 0.0)
        return 0.8 + (other_gain if learned else 0.0)

    models = []
    for spec in kx.model_specs(cfg):
        scores = {name: strength(spec, name) * labels + rng.normal(size=labels.size) for name in test}
        sampled = ({name: scores[name] + 0.1 * rng.normal(size=(cfg.eval_draws, labels.size)) for name in ("A", "B")}
                   if spec.kind == "learned" else {})
        models.append({"spec": dataclasses.asdict(spec), "scores": scores, "sampled_scores": sampled,
                       "eval_units": np.r_[np.ones(spec.k), np.zeros(cfg.size - spec.k)],
                       "draw_count_range": [spec.k, spec.k], "final_count_range": [spec.k, spec.k],
                       "seen_in_training": True, "seen_before_freeze": False, "n_train_masks": 10})
    return kx.make_result(cfg, seed, data, models)


def _verdicts(result: kx.KSpaceResult) -> dict[str, str]:
    return {c.id: c.verdict for c in kx.claims(result)}


def test_claims_follow_the_scores_both_ways():
    better = _verdicts(_fake_result(other_gain=2.0, line_gain=2.0))
    assert better["generalizability_A_topk"] == better["generalizability_B_topk"] == "supported"
    assert better["generalizability_A_sampled"] == "supported"
    assert better["learned_vs_random_A"] == better["learned_vs_centre_B"] == "supported"
    assert better["robustness_A_topk"] == better["robustness_B_sampled"] == "supported"  # own AUC flat in rate
    assert better["protocols_agree"] == "supported"
    assert better["ablation_line"] == "supported"      # the learned model keeps its AUC on A+line
    assert better["table1_values"] == "not testable here"
    worse = _verdicts(_fake_result(other_gain=-0.8, line_gain=-0.8))
    assert worse["generalizability_A_topk"] == worse["learned_vs_random_B"] == "contradicted"
    assert worse["ablation_line"] == "contradicted"


def test_a_mask_that_only_makes_the_model_weaker_does_not_shrink_the_share_it_loses():
    # the learned model is at chance on A and on A+line, so its AUC gap is ~0 (smaller than full sampling's):
    # a gap would "shrink"; the share of above-chance AUC lost is undefined, and the claim cannot be supported
    result = _fake_result(other_gain=0.0, learned_chance_on_a=True)
    low, full = SMOKE.lowest_k, SMOKE.size
    assert (kx.gap(result, "learned", low, "A+line") - kx.gap(result, "full", full, "A+line")).high < 0.1
    checks = {c.id: c for c in kx.checks(result)}
    assert not checks["learns_masked_A"].passed
    assert _verdicts(result)["ablation_line"] == "inconclusive"


def test_every_claim_names_its_paper_and_a_section_the_chapter_has():
    result = _fake_result(other_gain=0.5)
    notebook = json.loads((Path(__file__).resolve().parents[1] / "book" / "kspace.ipynb").read_text())
    labels = set(re.findall(r"^\(([\w-]+)\)=$", "\n".join("".join(c["source"]) for c in notebook["cells"]
                                                           if c["cell_type"] == "markdown"), flags=re.M))
    bib = (Path(__file__).resolve().parents[1] / "book" / "references.bib").read_text()
    for claim in kx.claims(result):
        assert claim.section in labels, (claim.id, claim.section)
        assert claim.reference in ("", kx.REFERENCE) and f"{{{kx.REFERENCE}," in bib
        own = claim.source.startswith("this chapter")
        assert (claim.reference == "") == own, claim.id
    assert {"kspace-findings", "kspace-table1", "kspace-baselines", "kspace-ablation"} <= labels


def test_claims_that_use_b_changed_factors_say_so_and_the_others_do_not():
    result = _fake_result(other_gain=0.5)
    assert result.config.vendor_b == "first"  # the default: B's values chosen before any verdict, no note
    assert not [c.id for c in kx.claims(result) if kx.CALIBRATION_NOTE in c.note]
    result.config = dataclasses.replace(result.config, vendor_b="calibrated")
    flagged = {c.id for c in kx.claims(result) if kx.CALIBRATION_NOTE in c.note}
    assert {"robustness_B_topk", "generalizability_A_topk", "learned_vs_centre_A", "ablation_image"} <= flagged
    assert not flagged & {"robustness_A_topk", "robustness_A_sampled", "protocols_agree", "ablation_line"}


def test_deviations_are_computed_from_the_config():
    devs = {d.aspect: d for d in kx.deviations(SMOKE)}
    assert {"data", "vendors", "network", "rates", "training", "seeds and intervals"} <= set(devs)
    assert all(d.reference == kx.REFERENCE and d.chapter == "kspace" for d in devs.values())
    assert len({d.id for d in devs.values()}) == len(devs)
    other = {d.aspect: d for d in kx.deviations(dataclasses.replace(SMOKE, n_seeds=4, n_train=9))}
    assert "2 training seeds" in devs["seeds and intervals"].ours and "4 training seeds" in other["seeds and intervals"].ours
    assert "9 training" in other["data"].ours
    assert "chosen before" in devs["vendors"].ours and "is not used" in devs["vendors"].ours
    calibrated = {d.aspect: d for d in kx.deviations(dataclasses.replace(SMOKE, vendor_b="calibrated"))}
    assert "picked after the chapter's first verdicts" in calibrated["vendors"].ours
    assert "gamma 1.5" in calibrated["vendors"].ours and "gamma 1.3" in devs["vendors"].ours
    with pytest.raises(ValueError, match="vendor_b"):
        kx.KSpaceConfig(vendor_b="other")
    assert set(kx.VENDOR_B_TEXT) == set(kx.VENDOR_B_CHOICES)


def test_claims_are_inconclusive_when_the_models_do_not_learn():
    result = _fake_result(other_gain=2.0, own_full=0.0)
    checks = {c.id: c for c in kx.checks(result)}
    assert not checks["learns_A"].passed and not checks["learns_B"].passed
    verdicts = _verdicts(result)
    assert verdicts["generalizability_A_topk"] == verdicts["learned_vs_random_A"] == "inconclusive"


def test_intervals_resample_seeds_and_patients_and_differences_are_paired():
    result = _fake_result(other_gain=0.5)
    e = result.auc("A", "learned", SMOKE.lowest_k, "B")
    assert len(e.per_seed) == 3 and e.value == pytest.approx(np.mean(e.per_seed))
    assert e.low < e.value < e.high and e.replicates.shape == (300,)
    zero = e - e
    assert zero.value == 0 and zero.low == zero.high == 0   # the same resamples on both sides
    # one seed only: the interval is the patient bootstrap alone, and narrower than with seed variation
    assert result.seed_index.shape == (300, 3) and set(np.unique(result.seed_index)) == {0, 1, 2}


def test_a_broken_invariant_stops_the_chapter():
    result = _fake_result(other_gain=0.0)
    learned = next(m for m in result.models if m["spec"]["kind"] == "learned")
    learned["draw_count_range"] = [learned["spec"]["k"] - 1, learned["spec"]["k"]]
    with pytest.raises(InvariantError, match="exact_k"):
        kx.checks(result)
    learned["draw_count_range"] = [learned["spec"]["k"]] * 2
    learned["seen_in_training"] = False
    with pytest.raises(InvariantError, match="eval_mask_trained"):
        kx.checks(result)


# ---------------------------------------------------------------- real (tiny) training


@pytest.fixture(scope="module")
def smoke_data():
    return kx.simulate_data(SMOKE, seed=0)


def test_vendor_b_choice_changes_b_and_the_scans_with_its_changed_factors_only(smoke_data):
    assert SMOKE.vendor_b == "first"
    calibrated = kx.simulate_data(dataclasses.replace(SMOKE, vendor_b="calibrated"), seed=0)
    same = ["A", "A+bias", "A+noise", "A+readout", "A+phase_res", "A+ghosts", "A+line"]
    assert all(np.array_equal(calibrated.test[n].images, smoke_data.test[n].images) for n in same)
    assert all(not np.array_equal(calibrated.test[n].images, smoke_data.test[n].images)
               for n in ("B", "A+contrast", "A+coil", "A+image", "A+all"))
    assert cohorts._data_key(SMOKE, 0) != cohorts._data_key(dataclasses.replace(SMOKE, vendor_b="calibrated"), 0)


def test_a_dry_run_scores_one_batch_and_copies_the_ablation_scans(smoke_data):
    with dryrun.dry_run() as log:
        data = kx.simulate_data(SMOKE, seed=0)
        assert all(data.test[n].images.shape == smoke_data.test["A"].images.shape for n in kx.ABLATIONS)
        model = kx.build_model(SMOKE, kx.ModelSpec("A", "full", SMOKE.size, 0), kx.model_seeds(0, kx.ModelSpec(
            "A", "full", SMOKE.size, 0)))
        images = np.concatenate([data.test["A"].images] * 3)
        scores = kx.predict(model, images, batch_size=8)
    assert scores.shape == (len(images),) and np.array_equal(scores[8:16], scores[:8])
    assert log.cut["kspace ablation scans"] == len(kx.ABLATIONS) and log.cut["kspace predict"] == 1


def test_a_dry_run_trains_one_model_per_shape_and_copies_it_for_another_vendor_or_seed(smoke_data, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "store"))
    monkeypatch.setattr(models, "_DRY_RUN_MODELS", {})
    first, other = kx.ModelSpec("A", "full", SMOKE.size, 0), kx.ModelSpec("B", "full", SMOKE.size, 1)
    centre, fewer = kx.ModelSpec("A", "centre", SMOKE.k(0.25), 0), kx.ModelSpec("B", "centre", 3, 1)
    with dryrun.dry_run() as log:
        a, b, c, d = (kx.load_or_train(SMOKE, spec, 0, data=smoke_data) for spec in (first, other, centre, fewer))
    assert log.cut["kspace models copied (same shapes: other vendor, seed or k)"] == 2
    assert b["spec"] == dataclasses.asdict(other) and b["seeds"] == kx.model_seeds(0, other) != a["seeds"]
    assert all(torch.equal(b["state_dict"][n], t) for n, t in a["state_dict"].items())  # a copy of a
    assert c["eval_units"].sum() == centre.k != a["eval_units"].sum()  # another kind: trained, not copied
    assert d["spec"] == dataclasses.asdict(fewer) and np.array_equal(d["eval_units"], c["eval_units"])  # a copy
    assert len(models._DRY_RUN_MODELS) == 2
    first_set = next(iter(a["scores"]))
    assert all(np.array_equal(s, a["scores"][first_set]) for s in a["scores"].values())
    assert log.cut["kspace test sets scored as copies"] == 2 * (len(smoke_data.test) - 1)
    # outside a dry run (and with a store that holds no dry-run entries) every model trains and scores every test set
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "real"))
    real = kx.load_or_train(SMOKE, other, 0, data=smoke_data)
    assert len(models._DRY_RUN_MODELS) == 2 and not np.array_equal(real["scores"]["A"], real["scores"]["B"])


def test_evaluation_mask_is_the_mask_the_final_classifier_was_trained_on(smoke_data):
    spec = kx.ModelSpec("A", "learned", SMOKE.k(0.25), 0)
    entry = kx.train_model(SMOKE, smoke_data, spec, seed=0)
    assert entry["seen_in_training"] and entry["draw_count_range"] == [spec.k, spec.k]
    assert entry["final_count_range"] == [spec.k, spec.k]
    assert entry["sampled_scores"]["A"].shape == (SMOKE.eval_draws, len(smoke_data.test["A"]))
    model = kx.load_model(SMOKE, entry)
    assert bool(model.sampler.is_frozen)
    units = model.sampler.eval_units().numpy()
    assert np.array_equal(units, entry["eval_units"]) and units.sum() == spec.k
    # the stored scores are the reloaded model's through that mask
    assert np.allclose(kx.predict(model, smoke_data.test["B"].images), entry["scores"]["B"], atol=1e-5)
    # and the random baseline trains and tests on its own exact-k mask
    random = kx.train_model(SMOKE, smoke_data, kx.ModelSpec("A", "random", spec.k, 1), seed=0)
    assert random["eval_units"].sum() == spec.k and random["seen_in_training"]


def test_after_the_plan_the_study_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "store"))
    tasks = kx.plan(SMOKE, seed=3, device="cpu")
    assert tasks[0].entry == "kspace_data" and len({t.key for t in tasks}) == len(tasks)
    assert all(t.deps == (tasks[0].key,) and t.entry == "kspace_model" for t in tasks[1:])
    assert len(tasks) == 1 + len(kx.model_specs(SMOKE))
    for task in tasks:
        task.run()
    stored = sorted(p.name for p in (tmp_path / "store").rglob("*.pt"))

    def forbidden(*args, **kwargs):
        raise AssertionError("the chapter computed something the plan should have stored")

    monkeypatch.setattr(models, "train_model", forbidden)
    monkeypatch.setattr(cohorts, "simulate_data", forbidden)
    result = kx.run_study(SMOKE, seed=3, device=torch.device("cpu"), progress=False)
    assert len(result.models) == len(tasks) - 1
    assert sorted(p.name for p in (tmp_path / "store").rglob("*.pt")) == stored
    with pytest.raises(ValueError, match="simulated data only"):
        kx.plan(SMOKE, seed=3, device="cpu", data_dir="/data")
