"""glassbox.studies.pixelwise: the chapter's experiments on tiny sizes; the claims they are built to show."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from glassbox.data import shapes
from glassbox.models import feature_nets
from glassbox.studies import pixelwise as pw

SMOKE = pw.PROFILES["smoke"]


def test_every_profile_is_a_valid_configuration():
    assert set(pw.PROFILES) == {"smoke", "quick", "paper"}
    for config in pw.PROFILES.values():
        config.shapes_config()                                    # raises for sizes that cannot hold the scene
        assert set(config.loss_names) <= {"bce", "ce", "dice", "ce+dice"}
        assert config.architecture_loss in {"bce", "ce", "dice", "ce+dice"}


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


def test_missing_the_small_structure_barely_moves_cross_entropy_but_dice_a_lot():
    table = pw.missed_structure_table(pw.PROFILES["quick"], seed=0).set_index("loss")
    assert (table["missed"] > table["correct"]).all()
    assert table.loc["dice", "relative increase"] > 5 * table.loc["ce", "relative increase"]
    with pytest.raises(ValueError):
        pw.missed_structure_table(SMOKE, 0, confidence=1.0)


def test_train_segmenter_returns_scores_that_its_weights_reproduce():
    data = pw.segmentation_data(SMOKE, seed=0)
    result = pw.train_segmenter("fcn", "dice", SMOKE, seed=0, progress=False, data=data)
    assert set(result["scores"]) == {"dice_background", "dice_large", "dice_small", "boundary_accuracy"}
    assert all(0 <= v <= 1 for v in result["scores"].values())
    assert len(result["history"]) == SMOKE.epochs and "dice_small" in result["history"][0]
    model = pw.segmenter_from_result(result)
    assert pw.evaluate_segmenter(model, data[1]) == result["scores"]
    table = pw.results_table([result])
    assert list(table.columns[:3]) == ["architecture", "loss", "parameters"]


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


def test_restorers_train_and_denoise_on_tiny_data():
    data = pw.restoration_data(SMOKE, seed=0)
    crop = SMOKE.restore_crop
    assert data["low"].shape == data["full"].shape == (SMOKE.n_restore_patients * SMOKE.restore_crops_per_image, 1, crop, crop)
    net = feature_nets.FeatureNet(base=2)
    examples = pw.ct_examples(SMOKE, seed=0)
    for loss_name in pw.RESTORATION_LOSSES:
        result = pw.train_restorer(loss_name, SMOKE, seed=0, feature_net=net, progress=False, data=data)
        assert len(result["history"]) == SMOKE.restore_epochs
        estimate = pw.denoise(result, SMOKE, examples["low"])
        assert estimate.shape == examples["low"].shape and np.isfinite(estimate).all()
    scores = pw.restoration_scores(estimate, examples["full"], examples["labels"])
    assert set(scores) == {"PSNR [dB]", "SSIM", "MAE [HU]", "detail ratio"}
    with pytest.raises(ValueError, match="feature_net"):
        pw.train_restorer("mse+perceptual", SMOKE, 0, progress=False, data=data)
    with pytest.raises(ValueError, match="loss_name"):
        pw.train_restorer("l1", SMOKE, 0, progress=False, data=data)


def test_untrained_denoiser_is_the_identity():
    low = pw.ct_examples(SMOKE, seed=0)["low"]
    model = pw.build_denoiser(SMOKE, 0)
    result = {"state_dict": model.state_dict()}
    np.testing.assert_allclose(pw.denoise(result, SMOKE, low), low, atol=1e-3)


def test_critic_scores_each_image():
    assert pw.Critic(base=4)(torch.zeros(3, 1, 32, 32)).shape == (3,)
