"""Tests of glassbox.training.unet_grid: the paper's tables as data, profiles, statistics of the verdicts, a tiny grid."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from glassbox import chapters
from glassbox.data import lowdose_ct
from glassbox.measure.chance import chance_level
from glassbox.studies import feature_space
from glassbox.training import unet_denoiser, unet_grid
from glassbox.training.loop import ALL_SEEDINGS
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
    paper_config = unet_grid.PROFILES["paper"]
    assert paper_config.feature_patch_size is None and paper_config.n_feature_images is None  # whole test slices
    for name in ("smoke", "quick"):                                    # disjoint crops elsewhere
        assert unet_grid.PROFILES[name].feature_patch_size is not None
    assert set(unet_grid.PROFILES["quick"].seedings) == set(ALL_SEEDINGS)
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
    assert unet_grid.model_label(9, "fully_fixed") == "U9-FF"
    with pytest.raises(ValueError, match="seedings"):     # the paper's two modes are always part of the grid
        unet_grid.QuConfig(data=base.data, denoiser=base.denoiser, seedings=("random", "fully_fixed"))


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


def _paper(table):
    return {label: {k: v for k, v in column.items() if k != "Average"} for label, column in table.items()}


def test_claim2_rule_on_both_tables_of_the_paper():
    """The single-table tests reproduce issue 15's numbers (Table II +0.015, p 0.13; Table III +0.045, p 0.013);
    the joint test's statistic is the sum of the tables' differences over their SDs, and it is decided by both."""
    t2, t3 = _paper(unet_grid.PAPER_TABLE2_SVCCA), _paper(unet_grid.PAPER_TABLE3_COSINE)
    single2, single3 = feature_space.updown_test(t2), feature_space.updown_test(t3)
    assert single2["difference"] == pytest.approx(0.0146, abs=1e-4) and single2["p_value"] == pytest.approx(0.13, abs=0.02)
    assert single3["difference"] == pytest.approx(0.0455, abs=1e-4) and single3["p_value"] == pytest.approx(0.013, abs=0.006)
    joint = feature_space.updown_joint_test([t2, t3])
    sd2 = np.std([v for c in t2.values() for v in c.values()], ddof=1)
    sd3 = np.std([v for c in t3.values() for v in c.values()], ddof=1)
    assert joint["statistic"] == pytest.approx(single2["difference"] / sd2 + single3["difference"] / sd3)
    assert joint["differences"] == pytest.approx([single2["difference"], single3["difference"]])
    assert joint["p_value"] < 0.05 and joint["p_value_down"] > 0.95
    swapped = [{m: {("Up" + k[4:] if k.startswith("Down") else "Down" + k[2:]): v for k, v in c.items()}
                for m, c in t.items()} for t in (t2, t3)]
    mirrored = feature_space.updown_joint_test(swapped)
    assert mirrored["statistic"] == pytest.approx(-joint["statistic"])
    assert mirrored["p_value_down"] == pytest.approx(joint["p_value"], abs=0.01)
    with pytest.raises(ValueError, match="at least two"):
        feature_space.updown_joint_test([t2])


def test_joint_test_uses_one_relabelling_for_both_tables():
    """Two copies of one table: the joint p equals the single-table p (the same relabelling applies to both)."""
    rng = np.random.default_rng(4)
    table = {f"m{k}": {**{f"Down{i}": rng.normal() for i in range(1, 4)},
                       **{f"Up{i}": rng.normal() + 0.8 for i in range(1, 4)}} for k in range(3)}
    single = feature_space.updown_test(table, n_permutations=10**5)
    joint = feature_space.updown_joint_test([table, table], n_permutations=10**5)
    assert single["method"].startswith("exact") and joint["p_value"] == pytest.approx(single["p_value"])


def test_holm_rejects_step_down():
    from glassbox.measure.stats import holm

    assert holm([0.01, 0.04, 0.03], 0.05).tolist() == [True, False, False]   # 0.01 < .05/3; 0.03 > .05/2
    assert holm([0.001, 0.02, 0.04], 0.05).tolist() == [True, True, True]
    assert holm([0.001, math.nan], 0.05).tolist() == [True, False]           # NaN: not tested, not counted


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
    for metric in ("linear_cka", "linear_cka_debiased", "svcca", "pwcca", "matched_cosine"):
        assert results[metric]["value"] == pytest.approx(1.0, abs=1e-6), metric
        assert results[metric]["p_value"] == pytest.approx(1 / 10)
        assert results[metric]["chance"] < 0.9
    assert results["cosine"]["value"] < 0.99
    assert results["svcca"]["kept_x"] == results["svcca"]["kept_y"] <= 16     # a copy keeps as many on each side
    assert results["svcca"]["chance_kept"] == pytest.approx(
        chance_level("cca", 200, int(results["svcca"]["kept_x"]), int(results["svcca"]["kept_y"]), seed=0).mean)


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
    data=lowdose_ct.CTDataConfig(n=64, n_patients=3, slices_per_patient=4),
    denoiser=DenoiserConfig(width=0.0625, residual=True, patch_size=16, n_patches=16, epochs=1, lr=1e-3),
    depths=(5,), feature_patch_size=16, chance_draws=4, cka_test_draws=199, cluster_samples=12,
    cluster_permutations=99, test_permutations=99, bootstrap=50)


def test_tiny_grid_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path))
    pairs = lowdose_ct.simulate_patients(64, 3, 4, seed=0)
    models = unet_grid.train_grid(TINY, pairs, seed=0, progress=False)
    assert set(models) == {(5, s, t) for s in ALL_SEEDINGS for t in (0, 1)}
    assert len(list((tmp_path / "denoiser").glob("*.pt"))) == 4      # trial 1 trained once for the three modes
    split = unet_denoiser.prepare_data(unet_grid.denoiser_config(TINY, 5, 0), pairs).split
    t1 = unet_grid.table1(models, pairs, split["test"], n_boot=50).set_index("seeding")
    assert t1.loc["fully_fixed", "identical_weights"] and t1.loc["fully_fixed", "difference"] == 0.0
    assert not t1.loc["fixed", "identical_weights"] and not t1.loc["random", "identical_weights"]
    assert t1.loc["random", "psnr_trial1"] == t1.loc["fixed", "psnr_trial1"]   # the same trial 1
    assert t1.loc["random", "difference_lo"] <= t1.loc["random", "difference_signed"] <= t1.loc["random", "difference_hi"]
    assert t1.loc["random", "stability_margin"] > 0 and t1.loc["random", "paper_mean_psnr"] == 38.68

    inputs = feature_space.feature_inputs(TINY, pairs, split["test"], seed=0)
    tiles = lowdose_ct.grid_tiles(pairs[split["test"][0]][1], 16, min_foreground=0.25)
    assert tuple(inputs.shape) == (len(tiles), 1, 16, 16)            # every disjoint tile with body, no more
    feats = feature_space.grid_features(models, inputs)
    assert list(feats[(5, "random", 0)]) == ["Down1", "Down2", "Bottleneck", "Up1", "Up2"]
    long = feature_space.similarity_long(feats, TINY, seed=0, metrics=("linear_cka", "cosine", "svcca"))
    assert set(long["seeding"]) == {"random", "fixed"}                # the floor is not part of the tables
    floors = feature_space.floor_table(feats)
    assert floors.loc["U5-FF", "max feature difference"] == 0.0
    tests = feature_space.layer_tests(feats, TINY, seed=0)
    assert len(tests) == 2 * 4 and tests["p_value"].between(1 / 200, 1).all()
    clusters = feature_space.clustering_table({"U5-R": (feats[(5, "random", 0)], feats[(5, "random", 1)])}, TINY)
    assert len(clusters) == 5 and clusters["ari"].between(-1, 1).all() and clusters["twin_nn_p_value"].between(0, 1).all()


# --- dry runs and deviations ----------------------------------------------------------------------------------

def test_a_dry_run_steps_each_training_shape_once_and_says_so(tmp_path, monkeypatch, tiny_pairs):
    from glassbox.core import dryrun
    from glassbox.training.loop import trial_seeds

    pairs = tiny_pairs
    recipe = DenoiserConfig(depth=5, width=0.0625, patch_size=16, n_patches=8, epochs=3, batch_size=4)
    assert dryrun.first_time("anything") and dryrun.first_time("anything")  # outside a dry run: always
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "one"))
    with dryrun.dry_run() as log:
        _, first = unet_denoiser.train_denoiser(recipe, pairs, trial_seeds("random", 0, 0), progress=False)
        _, second = unet_denoiser.train_denoiser(recipe, pairs, trial_seeds("random", 1, 0), progress=False,
                                                 desc="again")
        _, deeper = unet_denoiser.train_denoiser(recipe.__class__(**(recipe.__dict__ | {"depth": 7})), pairs,
                                                 trial_seeds("random", 0, 0), progress=False, desc="deeper")
    assert len(first.epochs) == 1 and math.isfinite(first.epochs[0]["train_loss"])  # one epoch, really stepped
    assert math.isnan(second.epochs[0]["train_loss"])  # same shapes, other seeds: skipped
    assert math.isfinite(deeper.epochs[0]["train_loss"])  # other shapes: stepped
    assert any(k.startswith("again:") for k in log.cut) and not any(k.startswith("deeper:") for k in log.cut)
    with dryrun.dry_run():  # the grid's next task: its own dry_run(), the same scratch store
        _, later = unet_denoiser.train_denoiser(recipe, pairs, trial_seeds("random", 2, 0), progress=False)
    assert math.isnan(later.epochs[0]["train_loss"])
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "two"))
    with dryrun.dry_run():
        _, fresh = unet_denoiser.train_denoiser(recipe, pairs, trial_seeds("random", 1, 0), progress=False)
    assert math.isfinite(fresh.epochs[0]["train_loss"])  # another dry run (another store) tries it again


@pytest.mark.parametrize("chapter", ["unet_training", "feature_space", "randomness"])
def test_deviations_follow_the_profile(chapter):
    study = chapters.CHAPTERS[chapter]
    quick = {d.aspect: d for d in study.deviations(study.PROFILES["quick"])}
    paper = {d.aspect: d for d in study.deviations(study.PROFILES["paper"], device="cuda")}
    assert all(d.reference == "qu2023beware" and d.chapter == chapter for d in {**quick, **paper}.values())
    if chapter != "feature_space":
        recipe = study.PROFILES["quick"].denoiser
        assert f"{recipe.epochs} epochs" == quick["training length"].ours
        assert "model size" not in paper and "device" not in paper  # paper: full width on a GPU
        assert ("training length" in paper) == (study.PROFILES["paper"].denoiser.epochs != 200)
        assert "device" in quick
