"""Two-trial clustering: the numbers behind the paper's heatmap, and the permuted-copy control."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy.cluster.hierarchy import fcluster, linkage  # noqa: E402
from sklearn.metrics import adjusted_rand_score  # noqa: E402

from glassbox.measure import clustering as CL
from glassbox.measure import similarity as S


def relu_features(rng: np.random.Generator, n: int = 200, m: int = 48) -> np.ndarray:
    """ReLU features with channel-specific offsets and scales (as a trained layer has)."""
    return np.maximum(rng.standard_normal((n, m)) * rng.uniform(0.5, 2.0, m) + rng.normal(0, 1, m), 0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k_true=st.integers(1, 4), k_pred=st.integers(1, 4))
def test_adjusted_rand_index_equals_scikit_learn(seed, k_true, k_pred):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, k_true, 40), rng.integers(0, k_pred, 40)
    assert CL.adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)


def test_sample_correlation_is_pearson_between_samples():
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((15, 40)), rng.standard_normal((15, 40)).astype(np.float32)
    expected = np.corrcoef(np.vstack([x1, x2.astype(np.float64)]))
    assert np.allclose(CL.sample_correlation(x1, x2), expected, atol=1e-12)
    assert np.allclose(CL.sample_correlation(x1, x2, chunk_columns=7), expected, atol=1e-12)


def test_rows_euclidean_is_seaborns_default_clustering():
    rng = np.random.default_rng(2)
    corr = CL.sample_correlation(relu_features(rng, 30), relu_features(rng, 30))
    ours = CL.correlation_linkage(corr, distance="rows_euclidean")
    seaborn_default = linkage(corr, method="average", metric="euclidean")  # what sns.clustermap(corr) runs
    assert np.allclose(ours[:, 2], seaborn_default[:, 2], atol=1e-9)
    for k in (2, 3, 5):
        assert CL.adjusted_rand_index(fcluster(ours, k, "maxclust"), fcluster(seaborn_default, k, "maxclust")) == 1


def test_permuted_copy_splits_by_trial_although_it_is_the_same_representation():
    rng = np.random.default_rng(3)
    x1 = relu_features(rng)
    x2 = x1[:, rng.permutation(x1.shape[1])]
    assert S.linear_cka(x1, x2).value == pytest.approx(1.0, abs=1e-9)
    assert S.matched_cosine(x1, x2).value == pytest.approx(1.0, abs=1e-9)
    for distance in CL.DISTANCES:
        result = CL.cluster_trials(x1, x2, distance=distance, n_permutations=199, seed=0)
        assert result.ari > 0.9, distance
        assert result.p_value == pytest.approx(1 / 200)
        assert result.twin_nn_fraction < 0.05
        assert result.twin_nn_chance == pytest.approx(1 / 399)
        assert result.twin_nn_p_value > 0.05              # no more twins than re-paired rows would give


def test_twin_rate_p_value_is_rarely_small_for_unrelated_trials():
    rng = np.random.default_rng(8)
    ps = np.array([CL.cluster_trials(relu_features(rng, n=40), relu_features(rng, n=40), n_permutations=99,
                                     seed=k).twin_nn_p_value for k in range(20)])
    assert np.mean(ps < 0.05) <= 0.15 and ps.min() >= 0.01   # a valid test: no excess of small p-values


def test_identical_trials_pair_twins_and_do_not_split_by_trial():
    rng = np.random.default_rng(4)
    x1 = relu_features(rng)
    x2 = x1 + 0.01 * rng.standard_normal(x1.shape)
    result = CL.cluster_trials(x1, x2, n_permutations=199, seed=0)
    assert result.twin_nn_fraction == 1.0 and result.twin_nn_p_value == pytest.approx(1 / 200)
    assert abs(result.ari) < 0.05 and result.p_value > 0.2
    counts = result.trial_counts
    assert counts.sum() == 400 and np.array_equal(counts[:, 0], counts[:, 1])  # twins share clusters


def test_permutation_p_value_is_seeded_and_not_small_under_the_null():
    rng = np.random.default_rng(5)
    x = relu_features(rng, n=60)
    a = CL.cluster_trials(x, x + 0.5 * rng.standard_normal(x.shape), n_permutations=99, seed=7)
    b = CL.cluster_trials(x, x + 0.5 * rng.standard_normal(x.shape), n_permutations=99, seed=7)
    assert a.p_value > 0.01 and b.p_value > 0.01
    noisy = x + 0.5 * rng.standard_normal(x.shape)
    assert CL.cluster_trials(x, noisy, n_permutations=50, seed=1) == CL.cluster_trials(x, noisy, n_permutations=50,
                                                                                       seed=1)


def test_clustermap_draws_both_trials_with_colour_bars():
    rng = np.random.default_rng(6)
    x1 = relu_features(rng, n=80, m=16)
    grid = CL.clustermap(x1, x1[:, ::-1], max_per_trial=25, seed=0)
    assert grid.data2d.shape == (50, 50)
    assert len(grid.ax_row_colors.collections) >= 1 and len(grid.ax_col_colors.collections) >= 1
    legend = grid.ax_col_dendrogram.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["trial 1", "trial 2"]
    import matplotlib.pyplot as plt
    plt.close(grid.figure)


def test_clear_errors():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20, 8))
    with pytest.raises(S.SimilarityInputError, match="same samples"):
        CL.cluster_trials(x, x[:10])
    const = x.copy()
    const[3] = 1.0
    with pytest.raises(S.DegenerateFeaturesError, match="1 sample"):
        CL.sample_correlation(const, x)
    with pytest.raises(S.SimilarityInputError, match="distance"):
        CL.cluster_trials(x, x, distance="cosine")
    with pytest.raises(S.TooFewSamplesError):
        CL.cluster_trials(x[:1], x[:1])
