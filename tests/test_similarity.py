"""Similarity metrics and chance levels: reference values, invariances, degeneracies, routes, backends."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.measure import chance as C
from glassbox.measure import similarity as S

SEEDS = st.integers(0, 2**31 - 1)


def related(rng: np.random.Generator, n: int = 200, p: int = 8, q: int = 6, noise: float = 1.0):
    """Two feature sets sharing a linear signal."""
    x = rng.standard_normal((n, p)) @ rng.standard_normal((p, p))
    y = x @ rng.standard_normal((p, q)) + noise * rng.standard_normal((n, q))
    return x, y


def orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diagonal(r))


def derangement(rng: np.random.Generator, d: int) -> np.ndarray:
    while True:
        perm = rng.permutation(d)
        if not (perm == np.arange(d)).any():
            return perm


# --- reference values (research note similarity.md, T2 and T4/T5) ------------------------------

@pytest.fixture(scope="module")
def kornblith_demo():
    rs = np.random.RandomState(1337)  # the demo's legacy generator, stable across numpy versions
    x = rs.randn(100, 10)
    y = rs.randn(100, 10) + x
    return x, y


def test_kornblith_demo_values(kornblith_demo):
    x, y = kornblith_demo
    assert S.linear_cka(x, y).value == pytest.approx(0.55761, abs=5e-5)
    assert S.linear_cka(x, y, debiased=True).value == pytest.approx(0.51346, abs=5e-5)
    r = S.cca(x, y)
    assert r.value == pytest.approx(0.73101, abs=5e-5)           # mean rho, centred
    assert r.extra["r2"] == pytest.approx(0.54540, abs=5e-5)     # R^2_CCA, centred
    assert S.procrustes(x, y).value == pytest.approx(0.73626, abs=5e-5)
    assert S.procrustes(x, y).extra["angle"] == pytest.approx(0.74327, abs=5e-5)


def test_one_dimensional_closed_form():
    x, y = np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])  # Pearson r = 0.8
    assert S.linear_cka(x, y).value == pytest.approx(0.64, abs=1e-12)
    assert S.cca(x, y).value == pytest.approx(0.8, abs=1e-12)
    assert S.cosine(x[None], y[None]).value == pytest.approx(29 / 30, abs=1e-12)  # one sample, 4 features


def test_subspace_weighting_closed_forms():
    a, b = np.array([1.0, -1, 1, -1]), np.array([1.0, 1, -1, -1])
    assert S.linear_cka(np.c_[a, b], a).value == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert S.linear_cka(np.c_[a, 2 * b], a).value == pytest.approx(1 / math.sqrt(17), abs=1e-12)
    assert S.linear_cka(np.c_[a, 2 * b], b).value == pytest.approx(4 / math.sqrt(17), abs=1e-12)
    assert S.cca(np.c_[a, b], a).value == pytest.approx(1.0, abs=1e-12)


def test_feature_space_debiased_cka_matches_u_centred_gram(kornblith_demo):
    x, y = kornblith_demo
    feature = S.linear_cka(x, y, debiased=True, route="features").value
    gram = S.linear_cka(x, y, debiased=True, route="gram").value
    # Gram of *uncentred* features, U-centred (Kornblith's center_gram(unbiased=True) route)
    raw = S.cka_from_grams(x @ x.T, y @ y.T, debiased=True).value
    assert feature == pytest.approx(gram, abs=1e-12)
    assert feature == pytest.approx(raw, abs=1e-12)


# --- identity and invariances --------------------------------------------------------------------

def test_identical_inputs_give_one():
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((300, 12)), 0) + 0.01
    for fn in (S.cosine, S.matched_cosine, S.cca, S.svcca, S.pwcca, S.linear_cka, S.procrustes):
        assert fn(x, x).value == pytest.approx(1.0, abs=1e-9), fn.__name__
    assert S.linear_cka(x, x, debiased=True).value == pytest.approx(1.0, abs=1e-9)
    assert S.minibatch_cka(x, x, batch_size=32, seed=1).value == pytest.approx(1.0, abs=1e-9)
    assert np.allclose(S.cca(x, x).coefficients, 1.0, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, scale=st.floats(0.01, 100.0))
def test_invariances_of_cka_cca_procrustes(seed, scale):
    rng = np.random.default_rng(seed)
    x, y = related(rng)
    shift = rng.normal(0, 10, x.shape[1])
    transforms = {
        "rotation": x @ orthogonal(rng, x.shape[1]),
        "permutation": x[:, rng.permutation(x.shape[1])],
        "isotropic scale": scale * x,
        "shift": x + shift,
    }
    base = {"cka": S.linear_cka(x, y).value, "dcka": S.linear_cka(x, y, debiased=True).value,
            "cca": S.cca(x, y).coefficients, "proc": S.procrustes(x, y).value}
    for name, xt in transforms.items():
        assert S.linear_cka(xt, y).value == pytest.approx(base["cka"], abs=1e-9), name
        assert S.linear_cka(xt, y, debiased=True).value == pytest.approx(base["dcka"], abs=1e-9), name
        assert np.allclose(S.cca(xt, y).coefficients, base["cca"], atol=1e-9), name
        assert S.procrustes(xt, y).value == pytest.approx(base["proc"], abs=1e-9), name


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS)
def test_cca_invariant_to_invertible_maps_cka_is_not(seed):
    rng = np.random.default_rng(seed)
    x, y = related(rng)
    a = rng.standard_normal((x.shape[1], x.shape[1])) + 3 * np.eye(x.shape[1])  # invertible, not orthogonal
    assert np.allclose(S.cca(x @ a, y).coefficients, S.cca(x, y).coefficients, atol=1e-8)
    assert S.svcca(x @ a, y, keep=1.0).value == pytest.approx(S.svcca(x, y, keep=1.0).value, abs=1e-8)
    assert abs(S.linear_cka(x @ a, y).value - S.linear_cka(x, y).value) > 1e-4


def test_symmetry():
    x, y = related(np.random.default_rng(3))
    for fn in (S.linear_cka, S.cca, S.procrustes):
        assert fn(x, y).value == pytest.approx(fn(y, x).value, abs=1e-12)
    forward, backward = S.pwcca(x, y), S.pwcca(y, x)
    assert forward.value != pytest.approx(backward.value, abs=1e-6)  # PWCCA is asymmetric...
    assert forward.extra["value_y_weighted"] == pytest.approx(backward.value, abs=1e-12)  # ...and reports both


def test_cosine_changes_under_channel_permutation():
    rng = np.random.default_rng(4)
    x = np.maximum(rng.standard_normal((200, 16)) + rng.normal(0, 1, 16), 0)
    y = x + 0.1 * rng.standard_normal(x.shape)
    perm = derangement(rng, 16)
    assert abs(S.cosine(x[:, perm], y).value - S.cosine(x, y).value) > 0.05
    assert S.cosine(3.0 * x, y).value == pytest.approx(S.cosine(x, y).value, abs=1e-12)


# --- the permuted-copy control ---------------------------------------------------------------------

def test_permuted_copy_control():
    """Trial 2 = trial 1 with shuffled channels: CKA = CCA = matched cosine = 1, plain cosine at chance."""
    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((2000, 64)), 0)  # ReLU(N(0,1)): cosine chance 1/pi
    y = x[:, derangement(rng, 64)]
    assert S.linear_cka(x, y).value == pytest.approx(1.0, abs=1e-9)
    assert S.cca(x, y).value == pytest.approx(1.0, abs=1e-9)
    assert S.matched_cosine(x, y).value == pytest.approx(1.0, abs=1e-9)
    plain = S.cosine(x, y)
    chance = C.chance_for(plain)
    baseline = C.permutation_chance("cosine", x, y, n_draws=20, seed=0)
    assert plain.value == pytest.approx(1 / math.pi, abs=0.01)
    assert plain.value == pytest.approx(chance.mean, abs=4 * baseline.std)
    assert chance.mean == pytest.approx(baseline.mean, abs=3 * baseline.std)


def test_match_channels_recovers_permutation():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((500, 32))
    perm = rng.permutation(32)
    match = S.match_channels(x, x[:, perm])
    assert np.array_equal(perm[match.y_for_x], np.arange(32))
    assert match.mean_correlation == pytest.approx(1.0, abs=1e-12)
    assert np.array_equal(match.reorder_y(x[:, perm]), x)


# --- CCA family against independent computations -------------------------------------------------

def _qr_cca(x, y):
    """Canonical correlations and x's unit-norm canonical variates from QR of the centred data."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    qx, _ = np.linalg.qr(xc)
    qy, _ = np.linalg.qr(yc)
    u, s, _ = np.linalg.svd(qx.T @ qy, full_matrices=False)
    return s, qx @ u, xc


def test_cca_matches_qr_route():
    x, y = related(np.random.default_rng(7), n=300, p=10, q=7)
    rho, _, _ = _qr_cca(x, y)
    result = S.cca(x, y)
    assert np.allclose(result.coefficients, rho, atol=1e-10)
    assert result.kept_x == 10 and result.kept_y == 7 and len(result.coefficients) == 7


def test_pwcca_matches_data_space_definition():
    x, y = related(np.random.default_rng(8), n=300, p=6, q=9)
    rho, h, xc = _qr_cca(x, y)
    alpha = np.abs(h.T @ xc).sum(1)  # alpha_i = sum_j |<h_i, x_j>|
    assert S.pwcca(x, y).value == pytest.approx(float((alpha * rho).sum() / alpha.sum()), abs=1e-10)


def test_svcca_rule_matches_svd_of_the_data():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((400, 20)) * np.geomspace(1, 0.01, 20)
    y = x @ rng.standard_normal((20, 15)) + 0.3 * rng.standard_normal((400, 15))

    def reduce(a, keep, use_s2=True):
        ac = a - a.mean(0)
        u, s, _ = np.linalg.svd(ac, full_matrices=False)
        spec = s**2 if use_s2 else s
        k = int(np.searchsorted(np.cumsum(spec) / spec.sum(), keep)) + 1
        return u[:, :k] * s[:k], k

    for use_s2, spectrum in ((True, "variance"), (False, "singular_values")):
        rx, kx = reduce(x, 0.99, use_s2)
        ry, ky = reduce(y, 0.99, use_s2)
        result = S.svcca(x, y, keep=0.99, spectrum=spectrum)
        assert (result.kept_x, result.kept_y) == (kx, ky)
        assert result.value == pytest.approx(S.cca(rx, ry).value, abs=1e-9)
    assert S.svcca(x, y, spectrum="singular_values").kept_x >= S.svcca(x, y).kept_x
    assert S.svcca(x, y, dims=5).kept_x == 5


# --- degeneracies and clear errors ---------------------------------------------------------------

def test_dead_and_duplicated_channels_are_dropped_not_counted():
    x, y = related(np.random.default_rng(10), n=300, p=8, q=6)
    base = S.cca(x, y)
    dead = S.cca(np.c_[x, np.zeros((300, 3))], y)
    dup = S.cca(np.c_[x, x[:, :2], 2 * x[:, 3:4]], y)
    for r in (dead, dup):
        assert r.kept_x == 8
        assert np.allclose(r.coefficients, base.coefficients, atol=1e-8)
    assert dup.extra["whitening"][0] == "eigh"
    # PWCCA's weights sum over neurons, so duplicates reweight it (by definition), but never give NaN
    assert np.isfinite(S.pwcca(np.c_[x, x[:, :2]], y).value)


def test_too_few_samples_says_how_many():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((50, 30)), rng.standard_normal((50, 30))
    with pytest.raises(S.TooFewSamplesError, match="at least 61"):
        S.cca(x, y)
    with pytest.raises(S.TooFewSamplesError, match="at least 4"):
        S.linear_cka(x[:3], y[:3], debiased=True)
    with pytest.raises(S.TooFewSamplesError, match="at least 4"):
        S.MinibatchCKA().update(x[:3], y[:3])


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 5))
    with pytest.raises(S.SimilarityInputError, match="N=40.*N=39"):
        S.linear_cka(x, y[:39])
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(S.SimilarityInputError, match="1 NaN"):
        S.cca(bad, y)
    with pytest.raises(S.DegenerateFeaturesError, match="constant"):
        S.linear_cka(np.ones((40, 5)), y)
    with pytest.raises(S.DegenerateFeaturesError):
        S.cca(np.full((40, 5), 3.0), y)
    with pytest.raises(S.SimilarityInputError, match="N x D"):
        S.cca(rng.standard_normal((4, 3, 2)), y)
    with pytest.raises(S.SimilarityInputError, match="same D"):
        S.cosine(x, y[:, :4])
    zero = x.copy()
    zero[0] = 0
    with pytest.raises(S.DegenerateFeaturesError, match="1 sample"):
        S.cosine(zero, y)
    with pytest.raises(S.SimilarityInputError, match="keep"):
        S.svcca(x, y, keep=1.5)


# --- routes, precision, streaming, backends ---------------------------------------------------------

def test_gram_route_for_wide_features_matches_feature_route():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((30, 200)).astype(np.float32)
    y = x[:, :150] @ rng.standard_normal((150, 120)).astype(np.float32) + rng.standard_normal((30, 120)).astype(np.float32)
    for debiased in (False, True):
        gram = S.linear_cka(x, y, debiased=debiased, chunk_columns=17)
        feat = S.linear_cka(x, y, debiased=debiased, route="features")
        assert gram.extra["route"] == "gram" and (gram.dims_x, gram.dims_y) == (200, 120)
        assert gram.value == pytest.approx(feat.value, abs=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    nuclear = np.linalg.svd(xc.T.astype(np.float64) @ yc, compute_uv=False).sum()
    expected = nuclear / (np.linalg.norm(xc.astype(np.float64)) * np.linalg.norm(yc.astype(np.float64)))
    assert S.procrustes(x, y).value == pytest.approx(expected, abs=1e-9)


def test_float32_inputs_match_float64_and_streaming_is_exact_for_large_means():
    rng = np.random.default_rng(14)
    x, y = related(rng, n=4000, p=16, q=16, noise=2.0)
    x32, y32 = (1000 + x).astype(np.float32), (1000 + y).astype(np.float32)
    direct = S.linear_cka(x32.astype(np.float64), y32.astype(np.float64)).value
    assert S.linear_cka(x32, y32).value == pytest.approx(direct, abs=1e-6)
    moments = S.CrossMoments(16, 16)
    for start in range(0, 4000, 128):
        moments.update(x32[start:start + 128], y32[start:start + 128])
    assert moments.linear_cka().value == pytest.approx(direct, abs=1e-6)
    assert moments.linear_cka(True).value == pytest.approx(
        S.linear_cka(x32.astype(np.float64), y32.astype(np.float64), debiased=True).value, abs=1e-6)
    assert moments.cca().value == pytest.approx(S.cca(x32, y32).value, abs=1e-6)
    # regression guard: raw sums in float32 (the naive streaming) are visibly wrong here
    sx, sy = np.zeros(16, np.float32), np.zeros(16, np.float32)
    sxx, syy, sxy = (np.zeros((16, 16), np.float32) for _ in range(3))
    for start in range(0, 4000, 128):
        a, b = x32[start:start + 128], y32[start:start + 128]
        sx += a.sum(0); sy += b.sum(0); sxx += a.T @ a; syy += b.T @ b; sxy += a.T @ b  # noqa: E702
    n = 4000
    cxx, cyy, cxy = sxx - np.outer(sx, sx) / n, syy - np.outer(sy, sy) / n, sxy - np.outer(sx, sy) / n
    naive = (cxy**2).sum() / np.sqrt((cxx**2).sum() * (cyy**2).sum())
    assert abs(naive - direct) > 1e-3


def test_torch_backend_matches_numpy_backend(monkeypatch):
    x, y = related(np.random.default_rng(15), n=150, p=7, q=9)
    ours = {name: fn(x, y) for name, fn in C.METRICS.items() if name not in ("cosine", "matched_cosine")}
    monkeypatch.setattr(S, "CPU_BACKEND", "torch")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for name, fn in C.METRICS.items():
        if name in ours:
            assert float(fn(xt, yt)) == pytest.approx(ours[name].value, abs=1e-9), name
    assert float(S.cosine(xt, xt[:, :7] * 2)) == pytest.approx(1.0, abs=1e-12)
    assert S.linear_cka(xt, yt, route="gram").value == pytest.approx(ours["linear_cka"].value, abs=1e-9)
    g = torch.Generator().manual_seed(0)
    wide_x, wide_y = torch.randn(10, 40, generator=g), torch.randn(10, 30, generator=g)
    monkeypatch.setattr(S, "CPU_BACKEND", "numpy")
    expected = S.procrustes(wide_x.numpy(), wide_y.numpy()).value
    monkeypatch.setattr(S, "CPU_BACKEND", "torch")
    wide = S.procrustes(wide_x, wide_y)
    assert wide.extra["route"] == "gram" and wide.value == pytest.approx(expected, abs=1e-9)


def test_minibatch_cka_matches_full_debiased_cka():
    x, y = related(np.random.default_rng(16), n=1024, p=32, q=32, noise=3.0)
    full = S.linear_cka(x, y, debiased=True).value
    assert S.minibatch_cka(x, y, batch_size=1024).value == pytest.approx(full, abs=1e-12)
    for bs in (64, 256):
        assert S.minibatch_cka(x, y, batch_size=bs, seed=0).value == pytest.approx(full, abs=0.01)
    assert S.minibatch_cka(x, y, batch_size=64).extra["batches"] == 16


def test_similarity_result_records_what_it_was_computed_on():
    x, y = related(np.random.default_rng(17))
    r = S.svcca(x, y, reduction="mean")
    assert float(r) == r.value and f"{r:.3f}" == f"{r.value:.3f}"
    assert (r.n, r.dims_x, r.dims_y, r.reduction) == (200, 8, 6, "mean")
    assert "N=200" in r.describe() and "kept" in r.describe() and "reduction=mean" in r.describe()


# --- chance levels ---------------------------------------------------------------------------------

def test_exact_permutation_means_by_enumeration():
    rng = np.random.default_rng(18)
    x, y = rng.standard_normal((6, 3)) ** 2, rng.standard_normal((6, 4))
    perms = [list(p) for p in itertools.permutations(range(6))]
    cka = np.mean([S.linear_cka(x, y[p]).value for p in perms])
    dcka = np.mean([S.linear_cka(x, y[p], debiased=True).value for p in perms])
    cos = np.mean([S.cosine(x, y[:, :3][p] ** 2).value for p in perms])
    assert C.chance_for(S.linear_cka(x, y)).mean == pytest.approx(cka, abs=1e-12)
    assert C.chance_for(S.linear_cka(x, y, debiased=True)).mean == pytest.approx(dcka, abs=1e-12)
    assert C.chance_for(S.cosine(x, y[:, :3] ** 2)).mean == pytest.approx(cos, abs=1e-12)


def test_shape_only_chance_levels_match_simulation():
    n, p = 500, 24
    cka = C.simulate_gaussian("linear_cka", n, p, p, n_draws=30, seed=0)
    assert C.chance_level("linear_cka", n, p).mean == pytest.approx(cka.mean, rel=0.05)
    rho = C.simulate_gaussian("cca", n, p, 2 * p, n_draws=30, seed=1)
    assert C.chance_level("cca", n, p, 2 * p).mean == pytest.approx(rho.mean, rel=0.03)
    r2 = [S.cca(*np.split(np.random.default_rng(k).standard_normal((n, 3 * p)), [p], axis=1)).extra["r2"]
          for k in range(30)]
    assert C.chance_level("cca_r2", n, p, 2 * p).mean == pytest.approx(np.mean(r2), abs=3 * np.std(r2) / math.sqrt(30))
    proc = C.simulate_gaussian("procrustes", 2000, 32, 64, n_draws=20, seed=2)
    assert C.chance_level("procrustes", 2000, 32, 64).mean == pytest.approx(proc.mean, rel=0.04)
    assert C.chance_level("linear_cka_debiased", n, p).mean == 0.0
    small = C.chance_level("cca", 100, 5, n_draws=20, seed=3)
    assert small.n_draws == 200 and "exact law" in small.method
    assert C.chance_level("cca", 2604, 512).mean == pytest.approx(0.3847, abs=0.003)  # note's measured value


@pytest.mark.parametrize("k, draws, width", [(3, 400, 8), (10, 150, 24), (40, 40, 64)])
def test_svcca_chance_at_the_kept_dimension_matches_simulation(k, draws, width):
    """SVCCA's chance at N = 2604 depends on the kept dimension k, not on the layer's width: the exact law
    (and chance_level, which the chapter uses) agree with SVCCA of independent Gaussian data keeping exactly
    k of ``width`` directions, within 3 standard errors of the simulation."""
    n = 2604
    rng = np.random.default_rng(k)
    sims = np.array([float(S.svcca(rng.standard_normal((n, width)), rng.standard_normal((n, width)), dims=k))
                     for _ in range(draws)])
    se = sims.std(ddof=1) / math.sqrt(draws)
    exact = C.cca_chance_exact(n, k, k, seed=1)
    assert abs(exact.mean - sims.mean()) < 3 * math.hypot(se, exact.std / math.sqrt(exact.n_draws))
    assert abs(C.chance_level("svcca", n, k, k).mean - sims.mean()) < 3 * se + 0.005 * sims.mean()
    assert C.chance_level("cca", n, 2 * width).mean > exact.mean + 0.02  # CCA over all channels: a higher floor


def test_fast_cka_permutation_test_equals_the_generic_permutation_baseline():
    rng = np.random.default_rng(21)
    x = np.maximum(rng.standard_normal((120, 10)), 0)
    y = np.maximum(x @ rng.standard_normal((10, 14)) + rng.standard_normal((120, 14)), 0)
    value, null, p = C.linear_cka_permutation_test(x, y, n_draws=50, seed=4)
    generic = C.permutation_chance("linear_cka", x, y, n_draws=50, seed=4)
    assert value == pytest.approx(S.linear_cka(x, y).value, abs=1e-10)
    np.testing.assert_allclose(null.draws, generic.draws, atol=1e-10)
    assert p == pytest.approx(1 / 51)                      # related features: no re-pairing reaches them
    unrelated = C.linear_cka_permutation_test(x, rng.standard_normal((120, 14)), n_draws=199, seed=0)[2]
    assert unrelated > 0.01
    value, null, p = C.linear_cka_permutation_test(x, y, n_draws=30, seed=2, debiased=True)
    generic = C.permutation_chance("linear_cka_debiased", x, y, n_draws=30, seed=2)
    assert value == pytest.approx(S.linear_cka(x, y, debiased=True).value, abs=1e-10)
    np.testing.assert_allclose(null.draws, generic.draws, atol=1e-10)


def test_fast_cosine_permutation_test_equals_the_generic_permutation_baseline():
    rng = np.random.default_rng(22)
    x = np.maximum(rng.standard_normal((90, 12)), 0) + 0.1
    y = x + 0.3 * np.abs(rng.standard_normal((90, 12)))
    value, null, p = C.cosine_permutation_test(x, y, n_draws=40, seed=5)
    generic = C.permutation_chance("cosine", x, y, n_draws=40, seed=5)
    assert value == pytest.approx(S.cosine(x, y).value, abs=1e-12)
    np.testing.assert_allclose(null.draws, generic.draws, atol=1e-12)
    assert null.mean == pytest.approx(S.cosine(x, y).extra["permutation_mean"], abs=0.01)
    assert p == pytest.approx(1 / 41)


def test_k_at_chance_inverts_the_chance_curve():
    curve = C.cca_chance_curve(2604, 60)
    assert np.all(np.diff(curve) > 0)                        # chance rises with the kept dimension
    assert curve[2] == pytest.approx(0.028, abs=0.002) and curve[39] == pytest.approx(0.105, abs=0.002)  # issue 15
    assert C.k_at_chance(curve[9], 2604, curve=curve) == 10
    assert C.k_at_chance(curve[9] + 1e-9, 2604, curve=curve) == 11
    assert C.k_at_chance(0.9, 2604, curve=curve) is None
    assert C.k_at_chance(0.0, 2604, curve=curve) == 1


def test_chance_for_cca_matches_permutation_baseline_on_relu_features():
    rng = np.random.default_rng(19)
    x = np.maximum(rng.standard_normal((800, 24)) @ rng.standard_normal((24, 24)), 0)
    y = np.maximum(rng.standard_normal((800, 30)), 0)
    closed = C.chance_for(S.cca(x, y))
    perm = C.permutation_chance("cca", x, y, n_draws=20, seed=0)
    assert closed.mean == pytest.approx(perm.mean, abs=max(3 * perm.std, 0.005))


def test_permutation_chance_is_seeded_and_keeps_blocks():
    rng = np.random.default_rng(20)
    x, y = related(rng, n=60)
    a = C.permutation_chance("linear_cka", x, y, n_draws=5, seed=3)
    b = C.permutation_chance("linear_cka", x, y, n_draws=5, seed=3)
    assert np.array_equal(a.draws, b.draws) and a.n_draws == 5 and "5 random" in a.method
    seen = []
    C.permutation_chance(lambda xx, yy: seen.append(yy[:, 0].copy()) or 0.0, x, np.repeat(np.arange(20), 3)[:, None]
                         * np.ones((1, 2)), n_draws=3, seed=0, rows_per_sample=3)
    for col in seen:
        assert (col.reshape(20, 3) == col.reshape(20, 3)[:, :1]).all()  # samples of 3 rows stay together
    with pytest.raises(S.SimilarityInputError, match="divide"):
        C.permutation_chance("cosine", x, y[:, :8], n_draws=3, rows_per_sample=7)


def test_chance_without_closed_form_needs_data():
    x, y = related(np.random.default_rng(21))
    with pytest.raises(C.NoClosedFormError):
        C.chance_level("cosine", 100, 8)
    with pytest.raises(C.NoClosedFormError, match="pass the data"):
        C.chance_for(S.procrustes(x, y))
    proc = C.chance_for(S.procrustes(x, y), x, y, n_draws=5, seed=0)
    assert proc.n_draws == 5 and proc.std is not None
    sv = S.svcca(x, y, keep=0.9)
    assert "permutation" in C.chance_for(sv, x, y, method="permutation", n_draws=3).method
