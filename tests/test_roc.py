"""Tests of AUC, its confidence intervals and the paired DeLong test (glassbox.measure.roc)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score

from glassbox.measure.roc import (
    ROCInputError,
    auc,
    bootstrap_ci,
    cluster_bootstrap_ci,
    cluster_weights,
    delong_ci,
    delong_paired_test,
    pair_matrix,
    weighted_auc,
)


def _binormal(rng: np.random.Generator, n: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    s = np.r_[rng.normal(shift, 1, n), rng.normal(0, 1, n)]
    return y, s


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_auc_equals_sklearn_with_ties(data):
    n = data.draw(st.integers(4, 40))
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    if y.all() or not y.any():
        y[0] = 1 - y[0]
    s = np.array(data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=float)  # many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert delong_ci(y, s).auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_is_invariant_to_monotone_maps_and_flips_with_the_sign():
    rng = np.random.default_rng(0)
    y, s = _binormal(rng, 50, 1.0)
    assert auc(y, np.exp(s)) == pytest.approx(auc(y, s))
    assert auc(y, -s) == pytest.approx(1 - auc(y, s))


def test_delong_se_matches_the_hanley_mcneil_formula_roughly_and_ci_contains_the_auc():
    rng = np.random.default_rng(1)
    y, s = _binormal(rng, 200, 1.0)
    res = delong_ci(y, s)
    a = res.auc
    q1, q2 = a / (2 - a), 2 * a ** 2 / (1 + a)
    hanley = np.sqrt((a * (1 - a) + 199 * (q1 - a ** 2) + 199 * (q2 - a ** 2)) / (200 * 200))
    assert res.se == pytest.approx(hanley, rel=0.15)
    assert res.low < a < res.high and 0 <= res.low and res.high <= 1
    assert res.n_pos == res.n_neg == 200


def test_delong_coverage_is_near_nominal():
    rng = np.random.default_rng(2)
    true_auc = stats.norm.cdf(1.0 / np.sqrt(2))  # binormal, unit variances, shift 1
    hits = 0
    trials = 300
    for _ in range(trials):
        y, s = _binormal(rng, 60, 1.0)
        res = delong_ci(y, s)
        hits += res.low <= true_auc <= res.high
    assert 0.90 <= hits / trials <= 0.98


def test_bootstrap_and_delong_intervals_agree():
    rng = np.random.default_rng(3)
    y, s = _binormal(rng, 80, 1.0)
    d, b = delong_ci(y, s), bootstrap_ci(y, s, seed=0, n_boot=1000)
    assert b.auc == pytest.approx(d.auc)
    assert abs(b.low - d.low) < 0.03 and abs(b.high - d.high) < 0.03
    assert b.se == pytest.approx(d.se, rel=0.2)
    assert bootstrap_ci(y, s, seed=5, n_boot=200) == bootstrap_ci(y, s, seed=5, n_boot=200)


def test_paired_test_of_identical_scores_is_zero_and_of_a_better_score_is_significant():
    rng = np.random.default_rng(4)
    y, s = _binormal(rng, 150, 1.0)
    same = delong_paired_test(y, s, s)
    assert same.difference == 0 and same.p_value == 1.0
    better = s + y * 1.5
    res = delong_paired_test(y, better, s)
    assert res.difference > 0 and res.low > 0 and res.p_value < 0.01
    assert res.auc_1 == pytest.approx(auc(y, better)) and res.auc_2 == pytest.approx(auc(y, s))
    # the variance of a difference of positively correlated AUCs is below the independent sum
    noisy = s + rng.normal(0, 0.3, len(s))
    paired = delong_paired_test(y, noisy, s)
    assert paired.se < np.hypot(delong_ci(y, noisy).se, delong_ci(y, s).se)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ROCInputError, match="both classes"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ROCInputError, match="same length"):
        auc([0, 1], [0.1])
    with pytest.raises(ROCInputError, match="NaN"):
        delong_ci([0, 1], [0.1, np.nan])
    with pytest.raises(ROCInputError, match="binary"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="alpha"):
        delong_ci([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], alpha=1.5)


# ---------------------------------------------------------------- patients as clusters


def test_weighted_auc_with_unit_weights_is_the_auc_and_counts_weigh_like_copies():
    rng = np.random.default_rng(3)
    y = np.tile([1, 1, 0, 0], 10)
    s = rng.normal(size=40) + y
    pairs = pair_matrix(y, s[None])
    assert weighted_auc(y, pairs, np.ones((1, 40)))[0, 0] == pytest.approx(auc(y, s))
    w = rng.integers(0, 3, size=40).astype(float)
    w[:2], w[2:4] = 1.0, 1.0  # at least one case of each class
    copies = np.repeat(np.arange(40), w.astype(int))
    assert weighted_auc(y, pairs, w[None])[0, 0] == pytest.approx(auc(y[copies], s[copies]))


def test_cluster_weights_resample_whole_patients():
    patients = np.repeat([5, 9, 2], [2, 3, 1])
    w = cluster_weights(patients, 200, np.random.default_rng(0))
    assert w.shape == (200, 6)
    assert np.all(w[:, 0] == w[:, 1]) and np.all(w[:, 2] == w[:, 3]) and np.all(w[:, 3] == w[:, 4])
    assert np.all(w[:, [0, 2, 5]].sum(axis=1) == 3)  # three patients drawn per resample


def test_patient_bootstrap_covers_the_expected_auc_of_a_clustered_design():
    """Four slices per patient (two with tumour); the patient shifts all its scores (u) and its tumour's
    conspicuity (d_p) is shared by its two tumour slices. E[AUC] has a closed form: pairs from two patients
    differ by N(d, tau^2 + 2 su^2 + 2 se^2), pairs from one patient (a fraction 1/P) by N(d, tau^2 + 2 se^2).
    The patient bootstrap must cover it at close to 95%; slice-level DeLong does not (it treats the 160
    slices as independent)."""
    n_patients, d, su, se, tau = 40, 1.0, 0.5, 0.5, 1.0
    truth = ((1 - 1 / n_patients) * stats.norm.cdf(d / np.sqrt(tau**2 + 2 * su**2 + 2 * se**2))
             + stats.norm.cdf(d / np.sqrt(tau**2 + 2 * se**2)) / n_patients)
    rng = np.random.default_rng(2024)
    patients, y = np.repeat(np.arange(n_patients), 4), np.tile([1, 1, 0, 0], n_patients)
    hits, delong_hits, reps = 0, 0, 300
    for r in range(reps):
        s = (rng.normal(d, tau, n_patients)[patients] * y + rng.normal(0, su, n_patients)[patients]
             + rng.normal(0, se, 4 * n_patients))
        ci = cluster_bootstrap_ci(y, s, patients, seed=r, n_boot=400)
        hits += ci.low <= truth <= ci.high
        ci = delong_ci(y, s)
        delong_hits += ci.low <= truth <= ci.high
    assert 0.90 <= hits / reps <= 0.98
    assert delong_hits < hits
