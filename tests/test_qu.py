"""Tests of glassbox.training.unet_grid: the paper's tables as data, profiles, statistics of the verdicts, a tiny grid."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from glassbox import chapters
from glassbox.data import lowdose_ct
from glassbox.studies import feature_space
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.unet_denoiser import DenoiserConfig

LABELS = ("U5-R", "U5-NR", "U7-R", "U7-NR", "U9-R", "U9-NR")


# --- the paper's numbers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("table", [unet_grid.PAPER_TABLE2_SVCCA, unet_grid.PAPER_TABLE3_COSINE])
def test_paper_tables_have_the_layers_of_each_architecture(table):
    assert tuple(table) == LABELS
    for label, column in table.items():
        levels = (int(label[1]) - 1) // 2
        expected = {f"Down{i}" for i in range(1, levels + 1)} | {f"Up{i}" for i in range(1, levels + 1)} | {"Average"}
        assert set(column) == expected


def test_paper_average_rows_as_printed_with_the_known_inconsistency():
    """similarity.md recomputed the column means: U9-R SVCCA 0.1120 (printed 0.1794), U5-NR 0.0976."""
    def column_mean(table, label):
        return np.mean([v for k, v in table[label].items() if k != "Average"])
    assert column_mean(unet_grid.PAPER_TABLE2_SVCCA, "U9-R") == pytest.approx(0.1120, abs=1e-4)
    assert unet_grid.PAPER_TABLE2_SVCCA["U9-R"]["Average"] == 0.1794
    assert column_mean(unet_grid.PAPER_TABLE2_SVCCA, "U5-NR") == pytest.approx(0.0976, abs=1e-4)
    assert column_mean(unet_grid.PAPER_TABLE3_COSINE, "U5-R") == pytest.approx(0.6506, abs=1e-4)
    assert unet_grid.PAPER_TABLE1["U-Net-9"]["random"] == {"mean_psnr": 41.26, "difference": 1.16}


# --- profiles ----------------------------------------------------------------------------------------------

def test_profiles_registered_for_both_chapters_and_paper_is_the_papers_recipe():
    for chapter in ("unet_training", "feature_space"):
        assert chapters.chapter_config(chapter, "paper") is unet_grid.PROFILES["paper"]
    paper = unet_grid.PROFILES["paper"].denoiser
    assert (paper.width, paper.residual, paper.patch_size, paper.epochs, paper.batch_size, paper.lr) == \
        (1.0, False, None, 200, 8, 0.01)
    assert (paper.l1_weight, paper.l2_weight) == (1.0, 1.0)
    assert unet_grid.PROFILES["paper"].n_feature_images == 2604          # the paper's N test images
    for name in ("smoke", "quick"):
        control = unet_grid.PROFILES[name].control
        assert control is not None and (control.residual, control.lr, control.batch_size) == (False, 0.01, 8)


def test_config_rejects_bad_values():
    base = unet_grid.PROFILES["smoke"]
    with pytest.raises(ValueError, match="n_trials"):
        unet_grid.QuConfig(data=base.data, denoiser=base.denoiser, n_trials=1)
    with pytest.raises(ValueError, match="seedings"):
        unet_grid.QuConfig(data=base.data, denoiser=base.denoiser, seedings=("sometimes",))
    with pytest.raises(ValueError, match="divisible by 16"):
        unet_grid.QuConfig(data=base.data, denoiser=base.denoiser, feature_patch_size=24, n_feature_images=10)
    assert unet_grid.model_label(7, "fixed") == "U7-NR" and unet_grid.model_label(5, "random") == "U5-R"


# --- statistics -----------------------------------------------------------------------------------------------

def test_updown_test_exact_enumeration_matches_brute_force():
    values = {"a": {"Down1": 0.0, "Down2": 1.0, "Up1": 2.0, "Up2": 3.0},
              "b": {"Down1": 0.5, "Down2": 0.1, "Down3": 0.4, "Up1": 0.2, "Up2": 0.9, "Up3": 0.3}}
    result = feature_space.updown_test(values)
    stats = []
    for da in itertools.combinations(range(4), 2):
        for db in itertools.combinations(range(6), 3):
            parts = []
            for vals, down in ((list(values["a"].values()), da), (list(values["b"].values()), db)):
                v = np.array(vals)
                mask = np.zeros(len(v), bool)
                mask[list(down)] = True
                parts.append(v[~mask].mean() - v[mask].mean())
            stats.append(np.mean(parts))
    observed = np.mean([2.5 - 0.5, (0.2 + 0.9 + 0.3) / 3 - (0.5 + 0.1 + 0.4) / 3])
    assert result["difference"] == pytest.approx(observed)
    assert result["p_value"] == pytest.approx(np.mean(np.array(stats) >= observed - 1e-12))
    assert result["method"].startswith("exact")


def test_updown_test_monte_carlo_agrees_with_exact():
    rng = np.random.default_rng(0)
    values = {f"m{k}": {**{f"Down{i}": rng.normal() for i in range(1, 5)},
                        **{f"Up{i}": rng.normal() + 0.5 for i in range(1, 5)}} for k in range(2)}
    exact = feature_space.updown_test(values, n_permutations=10**6)
    sampled = feature_space.updown_test(values, n_permutations=2000, seed=1)
    assert exact["method"].startswith("exact") and not sampled["method"].startswith("exact")
    assert sampled["p_value"] == pytest.approx(exact["p_value"], abs=0.03)


def test_signflip_test_closed_forms():
    assert feature_space.signflip_test([1.0, 2.0, 3.0])["p_value"] == pytest.approx(1 / 8)
    assert feature_space.signflip_test([-1.0, -2.0])["p_value"] == pytest.approx(1.0)
    assert feature_space.signflip_test([1.0, -1.0])["p_value"] == pytest.approx(3 / 4)   # mean 0: 3 of 4 patterns >= 0
    with pytest.raises(ValueError):
        feature_space.signflip_test([math.nan])


# --- features and similarity --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def relu_features():
    rng = np.random.default_rng(3)
    return np.maximum(rng.standard_normal((200, 12)) @ rng.standard_normal((12, 16)), 0) + 1e-3


def test_permuted_copy_is_invisible_to_cka_and_svcca_but_not_to_cosine(relu_features):
    x = relu_features
    y = feature_space.permuted_copy({"L": x}, seed=0)["L"]
    assert sorted(map(tuple, y.T)) == sorted(map(tuple, x.T))        # the same columns, reordered
    results = {m: feature_space.compare_features(x, y, m, chance_draws=9, seed=0) for m in feature_space.METRICS}
    for metric in ("linear_cka", "linear_cka_debiased", "svcca", "matched_cosine"):
        assert results[metric]["value"] == pytest.approx(1.0, abs=1e-6), metric
        assert results[metric]["p_value"] == pytest.approx(1 / 10)
        assert results[metric]["chance"] < 0.9
    assert results["cosine"]["value"] < 0.99


def test_compare_features_reports_too_few_samples_as_nan():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 8)), rng.standard_normal((10, 8))
    result = feature_space.compare_features(x, y, "svcca", chance_draws=3)
    assert math.isnan(result["value"]) and "TooFewSamples" in result["note"]


def test_paper_table_layout_and_average():
    rows = [{"model": "U5-R", "depth": 5, "seeding": "random", "layer": layer, "metric": "svcca", "value": v,
             "chance": 0.1} for layer, v in (("Down1", 0.2), ("Down2", 0.4), ("Bottleneck", 0.9), ("Up1", 0.6),
                                             ("Up2", 0.8))]
    table = feature_space.paper_table(pd.DataFrame(rows), "svcca", unet_grid.PAPER_TABLE2_SVCCA)
    assert list(table.index) == ["Down1", "Down2", "Bottleneck", "Up1", "Up2", "Average"]
    assert table.loc["Average", ("U5-R", "ours")] == pytest.approx(0.5)      # bottleneck excluded
    assert table.loc["Down1", ("U5-R", "paper")] == 0.0706
    assert math.isnan(table.loc["Bottleneck", ("U5-R", "paper")])
    flat = feature_space.tidy(table)
    assert list(flat.columns) == ["layer", "model", "ours", "chance", "paper"] and len(flat) == 6
    assert flat.set_index("layer").loc["Up2", "ours"] == 0.8
    with pytest.raises(ValueError, match="no rows"):
        feature_space.paper_table(pd.DataFrame(rows), "cosine")


# --- a tiny grid, end to end -------------------------------------------------------------------------------

TINY = unet_grid.QuConfig(
    data=lowdose_ct.CTDataConfig(n=32, n_patients=3, slices_per_patient=2),
    denoiser=DenoiserConfig(width=0.0625, residual=True, patch_size=16, n_patches=16, epochs=1, lr=1e-3),
    depths=(5,), feature_patch_size=16, n_feature_images=80, chance_draws=4, cluster_samples=12,
    cluster_permutations=9, test_permutations=99)


def test_tiny_grid_end_to_end():
    pairs = lowdose_ct.simulate_patients(32, 3, 2, seed=0)
    models = unet_grid.train_grid(TINY, pairs, seed=0, progress=False)
    assert set(models) == {(5, s, t) for s in ("random", "fixed") for t in (0, 1)}
    split = unet_denoiser.prepare_data(unet_grid.denoiser_config(TINY, 5, 0), pairs).split
    t1 = unet_grid.table1(models, pairs, split["test"]).set_index("seeding")
    assert t1.loc["fixed", "identical_weights"] and t1.loc["fixed", "difference"] == 0.0
    assert not t1.loc["random", "identical_weights"]
    assert t1.loc["random", "paper_mean_psnr"] == 38.68

    inputs = feature_space.feature_inputs(TINY, pairs, split["test"], seed=0)
    assert tuple(inputs.shape) == (80, 1, 16, 16)
    feats = feature_space.grid_features(models, inputs)
    assert list(feats[(5, "random", 0)]) == ["Down1", "Down2", "Bottleneck", "Up1", "Up2"]
    long = feature_space.similarity_long(feats, TINY, seed=0, metrics=("linear_cka", "cosine", "svcca"))
    fixed = long[long["seeding"] == "fixed"]
    assert np.allclose(fixed["value"], 1.0)                            # bit-identical trials
    clusters = feature_space.clustering_table({"U5-R": (feats[(5, "random", 0)], feats[(5, "random", 1)])}, TINY)
    assert len(clusters) == 5 and clusters["ari"].between(-1, 1).all()
    verdicts = feature_space.verdicts(t1.reset_index(), long, clusters, n_permutations=99)
    assert len(verdicts) == 3
    assert verdicts.loc[2, "verdict"].startswith("refuted on deterministic hardware")
