"""glassbox.studies.pixelwise: the chapter's experiments on tiny sizes, its plan, claims and exercise checks."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from glassbox.core import store
from glassbox.core.store import key_of
from glassbox.data import degrade, shapes
from glassbox.models import feature_nets
from glassbox.studies import pixelwise as pw
from glassbox.studies.pixelwise import jobs as pw_jobs
from glassbox.training import losses
from glassbox.training import restoration as rst
from glassbox.training import segmentation as seg
from glassbox.training.tissue_features import FeatureNetConfig, train_feature_net

SMOKE = pw.PROFILES["smoke"]


def test_every_profile_is_a_valid_configuration():
    assert set(pw.PROFILES) == {"smoke", "quick", "paper"}
    for config in pw.PROFILES.values():
        config.shapes_config()                                    # raises for sizes that cannot hold the scene
        assert set(config.loss_names) <= {"bce", "ce", "dice", "ce+dice"}
        assert config.architecture_loss in {"bce", "ce", "dice", "ce+dice"}
        assert min(config.arch_seeds, config.curve_seeds, config.soft_seeds, config.binary_seeds,
                   config.pixel_seeds, config.impute_seeds) >= 2, "intervals over seeds need two seeds at least"
    assert pw.PROFILES["quick"].arch_seeds >= 3
    with pytest.raises(pw.PixelwiseError, match="notes_volumes"):
        dataclasses.replace(SMOKE, notes_volumes=7)


def test_blurred_prediction_is_a_distribution_that_is_right_inside_structures():
    labels = torch.from_numpy(shapes.scene_labels(SMOKE.shapes_config(), np.random.default_rng(0)))[None]
    logits = pw.blurred_prediction_logits(labels, 3, sigma=1.0)
    probs = logits.exp()
    torch.testing.assert_close(probs.sum(1), torch.ones(labels.shape, dtype=torch.float64))
    assert (probs.argmax(1) == labels).float().mean() > 0.95
    with pytest.raises(ValueError):
        pw.blurred_prediction_logits(labels, 3, sigma=0)


def test_cross_entropy_share_grows_with_size_while_dice_share_stays_large():
    config = dataclasses.replace(pw.PROFILES["quick"], share_radii=(1.5, 3.0, 6.0), share_scenes=2)
    table = pw.share_vs_size(config, seed=0)
    ce = table[table.loss == "CE"].sort_values("radius")
    dice = table[table.loss == "Dice"].sort_values("radius")
    assert ce.share.is_monotonic_increasing
    assert (dice.share.to_numpy() > ce.share.to_numpy()).all()
    assert ce.share.iloc[0] < 0.1 < dice.share.iloc[0]             # the small structure drowns only in CE
    shares = pw.loss_shares(config, seed=0)
    assert len(shares.at_task_size("CE")) == 2 and (shares.at_task_size("Dice") > shares.at_task_size("CE")).all()


def test_exercise_prediction_is_the_missed_structure_scene():
    labels, logits = pw.exercise_prediction(SMOKE, 3)
    table_scene = shapes.scene_labels(SMOKE.shapes_config(), np.random.default_rng(3))
    assert np.array_equal(labels[0].numpy(), table_scene)
    assert logits.shape == (1, shapes.N_CLASSES, *table_scene.shape)


def test_missing_the_small_structure_barely_moves_cross_entropy_but_dice_a_lot():
    table = pw.missed_structure_table(pw.PROFILES["quick"], seed=0).set_index("loss")
    assert (table["missed"] > table["correct"]).all()
    assert table.loc["dice", "relative increase"] > 5 * table.loc["ce", "relative increase"]
    with pytest.raises(ValueError):
        pw.missed_structure_table(SMOKE, 0, confidence=1.0)


def test_train_segmenter_returns_scores_that_its_weights_reproduce():
    train, test = pw.segmentation_data(SMOKE, seed=0)
    result = seg.train_segmenter("fcn", "dice", train.images, train.labels, width=0.125, training=SMOKE.seg_training,
                                 seed=0, test_images=test.images, test_labels=test.labels, progress=False,
                                 validate_every_epoch=True)
    assert set(result["scores"]) == {"dice_background", "dice_large", "dice_small", "boundary_accuracy"}
    assert all(0 <= v <= 1 for v in result["scores"].values())
    assert len(result["history"]) == SMOKE.seg_training.epochs and "dice_small" in result["history"][0]
    model = seg.segmenter_from_result(result)
    assert seg.evaluate_segmenter(model, test.images, test.labels) == result["scores"]
    table = pw.results_table([result], seed=[0])
    assert list(table.columns[:4]) == ["seed", "architecture", "loss", "parameters"]


def test_train_segmenter_takes_soft_and_binary_targets_and_rejects_mismatches():
    rated, _ = shapes.make_rated_set(4, 3, SMOKE.shapes_config(), seed=0), None
    kwargs = dict(width=0.125, training=seg.SegTraining(1, 4), seed=0, progress=False)
    soft = seg.train_segmenter("unet-bilinear", "ce", rated.images, rated.soft, **kwargs)
    assert soft["out_channels"] == 3
    binary_target = (rated.truth == shapes.LARGE).float()[:, None]
    binary = seg.train_segmenter("naive", seg.BINARY_LOSS, rated.images, binary_target,
                                 test_images=rated.images, test_labels=rated.truth.eq(shapes.LARGE).long(),
                                 class_names=("background", "large"), **{k: v for k, v in kwargs.items()})
    assert binary["out_channels"] == 1 and set(binary["scores"]) == {"dice_background", "dice_large",
                                                                      "boundary_accuracy"}
    probs = seg.predicted_probabilities(seg.segmenter_from_result(binary), rated.images)
    torch.testing.assert_close(probs.sum(1), torch.ones(probs.shape[0], *probs.shape[2:]))
    with pytest.raises(seg.SegmentationTrainingError, match="probability targets"):
        seg.train_segmenter("fcn", "bce", rated.images, rated.soft, **kwargs)
    with pytest.raises(seg.SegmentationTrainingError, match="0/1 targets"):
        seg.train_segmenter("fcn", seg.BINARY_LOSS, rated.images, rated.truth, **kwargs)
    with pytest.raises(seg.SegmentationTrainingError, match="unknown loss"):
        seg.train_segmenter("fcn", "focal", rated.images, rated.truth, **kwargs)


def test_equal_steps_training_gives_small_sets_more_epochs():
    training = seg.SegTraining(epochs=15, batch_size=16)
    assert training.epochs_for(128, 120).epochs == 15
    assert training.epochs_for(16, 120).epochs == 120
    assert training.epochs_for(24, 48).epochs == 24


def test_sigmoid_is_the_two_class_softmax():
    assert pw.sigmoid_softmax_gap() < 1e-12


def test_window_maps_the_window_to_the_unit_interval():
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    np.testing.assert_allclose(pw.window(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    with pytest.raises(ValueError):
        pw.window(hu, width=0)


def test_equal_mse_gallery_has_equal_psnr_and_different_ssim():
    from skimage import data as skdata
    from skimage.transform import resize
    reference = resize(skdata.camera() / 255.0, (48, 48), anti_aliasing=True)
    table, images = pw.equal_mse_gallery(reference, 4e-3, seed=0)
    assert set(images) == set(table.degradation) and len(table) == 5
    assert table["PSNR [dB]"].max() - table["PSNR [dB]"].min() < 0.2
    assert table["SSIM"].max() - table["SSIM"].min() > 0.1


def test_rank_disagreements_finds_pairs_ordered_differently():
    table = pd.DataFrame({"degradation": ["a", "b", "c"], "PSNR [dB]": [30.0, 25.0, 20.0], "SSIM": [0.7, 0.9, 0.5]})
    pairs = pw.rank_disagreements(table)
    assert pairs[["better PSNR", "better SSIM"]].values.tolist() == [["a", "b"]]
    assert pairs["PSNR gap [dB]"].iloc[0] == pytest.approx(5.0)


def test_high_frequency_ratio():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((32, 32))
    assert pw.high_frequency_ratio(ref, ref) == pytest.approx(1.0)
    assert pw.high_frequency_ratio(2 * ref, ref) == pytest.approx(2.0)
    from scipy import ndimage
    assert pw.high_frequency_ratio(ndimage.gaussian_filter(ref, 1.0), ref) < 0.5
    with pytest.raises(ValueError):
        pw.high_frequency_ratio(ref[:4], ref)


def test_bias_slope_is_q_for_the_mean_and_zero_for_the_median():
    clean = np.random.default_rng(0).uniform(0, 1.5, (4, 16, 16))
    mean = clean + 0.3 * (2.0 - clean)
    assert pw.bias_slope(mean, clean, 2.0) == pytest.approx(0.3)
    assert pw.bias_slope(clean + 0.1, clean, 2.0) == pytest.approx(0.0, abs=1e-12)


def test_intensity_map_recovers_a_monotone_mapping():
    source = np.random.default_rng(1).uniform(0, 1, 5000)
    edges, means = pw.fit_intensity_map(source, 3 * source ** 2, bins=50)
    mapped = pw.apply_intensity_map(source, edges, means)
    assert np.abs(mapped - 3 * source ** 2).max() < 0.1
    assert np.all(np.diff(means) >= 0)


def test_restorers_train_and_denoise_on_tiny_data():
    data = pw.restoration_crops(SMOKE, seed=0)
    crop = SMOKE.restore_crop
    assert data["low"].shape == data["full"].shape == (SMOKE.n_restore_patients * SMOKE.restore_crops_per_image, 1,
                                                       crop, crop)
    net = feature_nets.FeatureNet(base=2)
    examples = pw.ct_examples(SMOKE, seed=0)
    for loss_name in pw.RESTORATION_LOSSES:
        result = rst.train_restorer(loss_name, data["low"], data["full"], SMOKE.restore_training, seed=0,
                                    feature_net=net, progress=False)
        assert len(result["history"]) == SMOKE.restore_training.epochs
        estimate = pw.denoise(result, examples["low"])
        assert estimate.shape == examples["low"].shape and np.isfinite(estimate).all()
    scores = pw.restoration_scores(estimate, examples["full"], examples["labels"])
    assert set(scores) == {"PSNR [dB]", "SSIM", "MAE [HU]", "detail ratio"}
    with pytest.raises(ValueError, match="feature_net"):
        rst.train_restorer("mse+perceptual", data["low"], data["full"], SMOKE.restore_training, seed=0, progress=False)
    with pytest.raises(ValueError, match="loss_name"):
        rst.train_restorer("l1", data["low"], data["full"], SMOKE.restore_training, seed=0, progress=False)


def test_untrained_regressor_is_the_identity():
    low = pw.ct_examples(SMOKE, seed=0)["low"]
    model = rst.build_regressor(SMOKE.restore_training, 0)
    result = {"state_dict": model.state_dict(), "training": SMOKE.restore_training}
    np.testing.assert_allclose(pw.denoise(result, low), low, atol=1e-3)


def test_critic_scores_each_image():
    assert rst.Critic(base=4)(torch.zeros(3, 1, 32, 32)).shape == (3,)


def test_learning_curve_draws_nested_sizes_per_replicate():
    data = pw.volumes_data(pw.PROFILES["quick"], 0)
    for r in range(3):
        assert len(data.chosen(5, r)) == 5 and set(data.chosen(3, r)) <= set(range(data.pool))
    assert data.chosen(3, 0) != data.chosen(3, 1)
    jobs = pw.curve_jobs(pw.PROFILES["quick"], 0)
    steps = {n: job.training.epochs * -(-n * data.n_slices // job.training.batch_size) for n, _, job in jobs}
    assert max(steps.values()) <= 1.3 * min(steps.values())           # equal optimiser steps, up to rounding


def test_matched_widths_give_matched_sizes():
    matched = pw.matched_widths(pw.PROFILES["quick"])
    counts = [count for _, count in matched.values()]
    assert max(counts) / min(counts) - 1 < 0.05
    assert matched["naive"][0] == pw.PROFILES["quick"].width


def test_plan_lists_each_stored_network_once_with_the_chapter_keys():
    tasks = pw.plan(SMOKE, seed=0)
    keys = [t.key for t in tasks]
    assert len(keys) == len(set(keys))
    for task in tasks:
        assert task.key == key_of(task.entry, task.config)
    restorers = [t for t in tasks if t.entry == "pixelwise-restorer"]
    featurenet = [t for t in tasks if t.entry == "featurenet"]
    assert len(restorers) == 3 and len(featurenet) == 1
    assert [t.deps for t in restorers if t.config.loss == "mse+perceptual"] == [(featurenet[0].key,)]
    expected = (len(SMOKE.loss_names) * SMOKE.loss_seeds + 2 * SMOKE.soft_seeds + 2 * SMOKE.binary_seeds
                + (2 * len(SMOKE.architectures) - 1) * SMOKE.arch_seeds + len(SMOKE.curve_volumes) * SMOKE.curve_seeds
                + 2 * SMOKE.pixel_seeds + SMOKE.impute_seeds + 1 + 3)
    assert len(tasks) == expected
    with pytest.raises(pw.PixelwiseError, match="simulated data only"):
        pw.plan(SMOKE, seed=0, data_dir="/data")


@pytest.mark.slow
def test_after_the_plan_the_chapter_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path / "store"))
    for task in pw.plan(SMOKE, seed=1):
        task.run()
    misses = []
    real_write = store.Store._write  # where save() and get_or_compute() both write an entry
    monkeypatch.setattr(store.Store, "_write", lambda self, name, key, value, record: (misses.append(name),
                                                                                        real_write(self, name, key,
                                                                                                   value, record)))
    result = pw.run(SMOKE, 1, progress=False)
    assert misses == [], f"the chapter trained {misses} after the plan had run"
    checks = pw.checks(result, SMOKE)
    claims = pw.claims(result, SMOKE, checks)
    assert {c.chapter for c in claims} == {"pixelwise"} and len({c.id for c in claims}) == len(claims)
    assert {c.kind for c in checks} == {"invariant", "quality"}


# --- exercise answer checks: a reference answer passes, a stub or a wrong answer fails ----------------------

def test_check_weighted_cross_entropy():
    def right(logits, labels, weights):
        return (weights[labels] * losses.cross_entropy_loss(logits, labels, reduction="none")).mean()

    def torch_mean(logits, labels, weights):          # torch's 'mean' divides by the summed weights: wrong here
        return F.cross_entropy(logits, labels, weight=weights)

    def stub(logits, labels, weights):
        raise NotImplementedError("your turn")

    assert "correct" in pw.check_weighted_cross_entropy(right)
    for wrong in (torch_mean, stub):
        with pytest.raises(AssertionError):
            pw.check_weighted_cross_entropy(wrong)


def test_check_transposed_upsample():
    def right(x, kernel):
        return torch.kron(x, kernel)

    def nearest(x, kernel):
        return x.repeat_interleave(2, 0).repeat_interleave(2, 1) * kernel.mean()

    assert "correct" in pw.check_transposed_upsample(right)
    with pytest.raises(AssertionError):
        pw.check_transposed_upsample(nearest)


def test_check_ssim_friendly_degradation():
    assert "correct" in pw.check_ssim_friendly_degradation(lambda ref: degrade.Degradation(shift=1.0), SMOKE)
    with pytest.raises(AssertionError, match="SSIM"):
        pw.check_ssim_friendly_degradation(lambda ref: degrade.Degradation(noise=0.2), SMOKE)
    with pytest.raises(AssertionError, match="PSNR"):
        pw.check_ssim_friendly_degradation(lambda ref: degrade.Degradation(), SMOKE)


def test_check_per_layer_perceptual():
    from glassbox.training.tissue_features import feature_net_from_state

    config = FeatureNetConfig(size=32, crop=16, crops_per_image=1, n_patients=2, base=2, epochs=1, batch_size=4)
    record = train_feature_net(config, seed=0, progress=False)

    def right(low, full, rec):
        return {name: float(losses.perceptual_loss(low, full, feature_net_from_state(rec, layers=[name])))
                for name in feature_nets.FEATURE_LAYERS}

    def first_layer_only(low, full, rec):
        values = right(low, full, rec)
        return {name: values[name] if name == feature_nets.FEATURE_LAYERS[0] else 0.0 for name in values}

    assert "correct" in pw.check_per_layer_perceptual(right, record)
    with pytest.raises(AssertionError, match="add up"):
        pw.check_per_layer_perceptual(first_layer_only, record)


def test_first_epoch_reaching_a_level():
    history = [{"epoch": 1, "dice_small": 0.1}, {"epoch": 2, "dice_small": 0.6}, {"epoch": 3, "dice_small": 0.4}]
    assert seg.first_epoch_reaching(history, "dice_small", 0.5) == 2
    assert seg.first_epoch_reaching(history, "dice_small", 0.9) is None


def test_a_dry_run_tries_each_configuration_once_on_token_data():
    from glassbox.core import dryrun

    assert dryrun.head([1, 2, 3], 2, "list") == [1, 2, 3]                 # outside a dry run: untouched
    jobs = pw.loss_jobs(dataclasses.replace(SMOKE, loss_seeds=2), 0)   # [ce, dice] x 2 seeds
    with dryrun.dry_run() as log:
        assert dryrun.head([1, 2, 3], 2, "list") == [1, 2]
        results = [pw_jobs._compute(job, "cpu", False) for job in jobs]
        dry_train, _ = jobs[0].data.build()
    assert results[0] is results[2] and results[1] is results[3] and results[0] is not results[1]
    assert sum(n for where, n in log.cut.items() if "replicate" in where) == 2
    assert any(f"{seg.DRY_RUN_IMAGES} images" in where for where in log.cut)
    assert len(results[0]["history"]) == 1                              # one epoch of one step
    train, _ = jobs[0].data.build()                                      # the real data, not the dry run's copies
    assert torch.equal(dry_train.images[1], dry_train.images[0]) and not torch.equal(train.images[1], train.images[0])
    assert len(train) == len(dry_train) == SMOKE.n_train
