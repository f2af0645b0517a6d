"""The data chapter's study: the noise-law claims on both sides of their margins, its invariants, deviations
and plan."""
from __future__ import annotations

import math

import numpy as np
import pytest

from glassbox.core import store
from glassbox.data import lowdose_ct
from glassbox.measure.claims import InvariantError
from glassbox.studies import data

DOSES = np.array(data.DOSES)


def _law(slopes, ratios) -> data.NoiseLaw:
    sd = 11.5 * DOSES[:, None] ** np.asarray(slopes, dtype=float)[None, :]
    return data.NoiseLaw(doses=DOSES, sd=sd, slopes=np.asarray(slopes, float), paired_dose=0.25,
                         paired_ratios=np.asarray(ratios, float))


def test_margins_allow_the_stated_error_of_the_quarter_dose_noise():
    slope_margin, ratio_margin = data.margins(0.10)
    assert 4 ** slope_margin == pytest.approx(1.10) and ratio_margin == pytest.approx(0.2)
    slope_margin, ratio_margin = data.margins(0.10, dose=0.5)
    assert 2 ** slope_margin == pytest.approx(1.10) and ratio_margin == pytest.approx(0.1 * 2 ** 0.5)
    with pytest.raises(ValueError, match="tolerance"):
        data.margins(0.0)
    with pytest.raises(ValueError, match="dose"):
        data.margins(0.1, dose=1.0)


@pytest.mark.parametrize("slopes, ratios, expected", [
    ([-0.50, -0.51, -0.49, -0.50], [2.0, 2.02, 1.98, 2.0], ("supported", "supported")),
    ([-0.30, -0.31, -0.29, -0.30], [1.5, 1.52, 1.48, 1.5], ("contradicted", "contradicted")),
    ([-0.45, -0.60, -0.35, -0.50], [1.6, 2.4, 2.1, 1.9], ("inconclusive", "inconclusive")),  # straddles a margin
])
def test_noise_claims_on_both_sides_of_the_margin(slopes, ratios, expected):
    claims = data.claims(_law(slopes, ratios), tolerance=0.10)
    assert tuple(c.verdict for c in claims) == expected
    slope = claims[0]
    assert slope.paper == -0.5 and slope.interval[0] < slope.ours < slope.interval[1]
    assert slope.section == "data-noise-law" and "4 seeds" in slope.interval_kind
    assert all(c.chapter == "data" and c.reference == "" for c in claims)


def test_the_real_noise_experiment_follows_the_law():
    config = data.DataChapterConfig(lowdose_ct.DATA_PROFILES["smoke"], noise_seeds=3, doses=(1.0, 0.25))
    law = data.noise_law(config, seed=0)
    assert law.sd.shape == (2, 3) and law.slope[0] == pytest.approx(-0.5, abs=0.05)
    assert law.paired_ratios.shape == (3,) and law.ratio[0] == pytest.approx(2.0, abs=0.2)
    claims = data.claims(law, tolerance=0.10)
    assert claims[1].paper == pytest.approx(2.0) and "same simulated scan" in claims[1].test


def _checks(**kw):
    law = _law([-0.5] * 3, [2.0] * 3)
    base = dict(water_centre=0.1, real_hu=np.zeros(3, np.float32), pydicom_hu=np.zeros(3),
                splits={"train": ["a"], "val": ["b"], "test": ["c"]}, patients=["a", "b", "c"], dicom_error=0.5)
    return data.checks(law, **(base | kw))


def test_checks_raise_on_a_broken_invariant_and_report_the_quality_check():
    checks = {c.id: c for c in _checks()}
    assert all(c.passed for c in checks.values()) and checks["full-dose-noise"].kind == "quality"
    with pytest.raises(InvariantError, match="water-centre"):
        _checks(water_centre=6.0)
    with pytest.raises(InvariantError, match="dicom-hu"):
        _checks(pydicom_hu=np.ones(3))
    with pytest.raises(InvariantError, match="splits-partition"):
        _checks(splits={"train": ["a", "b"], "val": ["b"], "test": ["c"]})
    with pytest.raises(InvariantError, match="dicom-round-trip"):
        _checks(dicom_error=0.7)
    assert "dicom-round-trip" not in {c.id for c in _checks(dicom_error=None)}


def test_deviations_state_this_profiles_data():
    config = data.PROFILES["smoke"]
    deviations = data.deviations(config)
    assert {d.reference for d in deviations} == {"qu2023beware", "eulig2022invariances"}
    sizes = [d.ours for d in deviations if d.aspect == "image size"]
    assert sizes and all(s.startswith(f"{config.data.n} x {config.data.n}") for s in sizes)
    assert data.deviations(config, simulated=False) == []


def test_plan_makes_the_chapters_store_call(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path))
    config = data.PROFILES["smoke"]
    (task,) = data.plan(config, seed=0)
    store.access_log(clear=True)
    task.run()
    lowdose_ct.get_pairs(config.data, seed=0, progress=False)
    assert store.access_log() == [("ct-dataset", task.key, False), ("ct-dataset", task.key, True)]
    assert data.plan(config, seed=0, data_dir=tmp_path) == []


def test_reconstruction_error_puts_edge_blur_near_edges():
    phantom = np.full((32, 32), -1000.0)
    phantom[8:24, 8:24] = 0.0
    blurred = phantom.copy()
    blurred[7:9, 7:25] = blurred[23:25, 7:25] = blurred[7:25, 7:9] = blurred[7:25, 23:25] = -500.0
    error = data.reconstruction_error(phantom, blurred)
    assert error["edge_error_share"] == pytest.approx(1.0) and 0 < error["edge_pixel_share"] < 0.5
    assert error["rmse_hu"] == pytest.approx(math.sqrt(((blurred - phantom) ** 2).mean()))
