"""glassbox.data.shapes: geometry, sizes, noise, reproducibility and configuration errors."""
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from glassbox.data import shapes
from glassbox.data.shapes import LARGE, SMALL, ShapesConfig


@pytest.mark.parametrize("radius", [2.0, 3.0, 5.0])
def test_small_structure_area_follows_its_radius(radius):
    config = ShapesConfig(large_radius=(14.0, 14.0), small_radius=(2.0, 6.0))
    areas = [(shapes.make_scene(config, seed, small_radius=radius)[1] == SMALL).sum() for seed in range(5)]
    assert np.mean(areas) == pytest.approx(math.pi * radius**2, rel=0.25)   # pixelised disk


def test_structures_are_separated_by_the_gap_and_inside_the_image():
    config = ShapesConfig(gap=3.0)
    data = shapes.make_dataset(12, config, seed=1)
    for labels in data.labels.numpy():
        small, large = labels == SMALL, labels == LARGE
        assert small.any() and large.any()
        grown = ndimage.binary_dilation(small, iterations=2)                  # 2 < gap: must not reach the large one
        assert not (grown & large).any()
        assert not small[0].any() and not small[-1].any() and not small[:, 0].any() and not small[:, -1].any()


def test_dataset_shapes_dtypes_and_class_balance():
    data = shapes.make_dataset(8, seed=0)
    assert data.images.shape == (8, 1, 64, 64) and data.images.dtype == torch.float32
    assert data.labels.shape == (8, 64, 64) and data.labels.dtype == torch.int64
    fractions = data.class_fractions()
    assert fractions.sum() == pytest.approx(1.0)
    assert fractions[SMALL] < 0.02 < 0.1 < fractions[LARGE]                  # a small structure beside a large one
    image, labels = data.tensor_dataset()[3]
    assert image.shape == (1, 64, 64) and labels.shape == (64, 64)


def test_scenes_depend_only_on_seed_and_index():
    small, large = shapes.make_dataset(3, seed=7), shapes.make_dataset(5, seed=7)
    assert torch.equal(small.images, large.images[:3]) and torch.equal(small.labels, large.labels[:3])
    assert not torch.equal(shapes.make_dataset(3, seed=8).labels, small.labels)


def test_rendering_without_noise_and_blur_is_the_intensity_map():
    config = ShapesConfig(noise=0.0, blur=0.0, large_intensity=1.0, small_intensity=0.5)
    image, labels = shapes.make_scene(config, 3)
    expected = np.select([labels == LARGE, labels == SMALL], [1.0, 0.5], 0.0)
    np.testing.assert_array_equal(image, expected.astype(np.float32))


def test_noise_has_the_configured_standard_deviation():
    config = ShapesConfig(noise=0.3, blur=0.0, size=128, large_radius=(20, 30), small_radius=(3, 5))
    image, labels = shapes.make_scene(config, 4)
    residual = image[labels == 0]                                            # background intensity is 0
    assert residual.std() == pytest.approx(0.3, rel=0.03)
    assert abs(residual.mean()) < 0.01


@pytest.mark.parametrize("kwargs", [
    {"size": 8}, {"size": 64.0}, {"small_radius": (3.0, 2.0)}, {"large_radius": (0.0, 5.0)},
    {"small_radius": (2.0, 14.0)}, {"gap": 0.5}, {"noise": -0.1}, {"size": 32, "large_radius": (12.0, 18.0)},
])
def test_bad_configurations_raise(kwargs):
    with pytest.raises(ValueError):
        ShapesConfig(**kwargs)


def test_bad_dataset_arguments_raise():
    with pytest.raises(ValueError, match="n must be a positive integer"):
        shapes.make_dataset(0)
    with pytest.raises(ValueError, match="seed"):
        shapes.make_dataset(2, seed=-1)
    with pytest.raises(ValueError, match="small_radius < large_radius"):
        shapes.make_scene(ShapesConfig(), 0, small_radius=10, large_radius=8)


def test_volumes_are_stacks_of_correlated_slices_with_ids():
    config = ShapesConfig(size=48, large_radius=(9.0, 13.0), small_radius=(1.5, 2.6))
    pool = shapes.make_volumes(4, 6, config, seed=3)
    assert pool.images.shape == (24, 1, 48, 48) and pool.volumes.tolist() == [v for v in range(4) for _ in range(6)]
    labels = pool.labels.numpy()
    assert all((lab == SMALL).any() and (lab == LARGE).any() for lab in labels)
    same = np.mean([(labels[i] == labels[i + 1]).mean() for i in range(5)])          # neighbours in volume 0
    other = np.mean([(labels[i] == labels[i + 6]).mean() for i in range(5)])         # same slice, next volume
    assert same > other
    # volume v depends only on (seed, v): a bigger pool starts with the smaller one
    bigger = shapes.make_volumes(5, 6, config, seed=3)
    assert torch.equal(bigger.images[:24], pool.images)
    later = shapes.make_volumes(1, 6, config, seed=3, first=2)
    assert torch.equal(later.images, pool.images[12:18]) and later.volumes.tolist() == [2] * 6
    chosen = pool.select_volumes([1, 3])
    assert chosen.volumes.tolist() == [1] * 6 + [3] * 6
    with pytest.raises(shapes.ShapesConfigError, match="unknown"):
        pool.select_volumes([7])


def test_raters_agree_inside_and_disagree_at_boundaries():
    config = ShapesConfig()
    labels = shapes.scene_labels(config, np.random.default_rng(0))
    raters = shapes.rater_labels(labels, 7, np.random.default_rng(1))
    soft = shapes.soft_labels(raters)
    assert soft.shape == (3, *labels.shape)
    torch.testing.assert_close(soft.sum(0), torch.ones(labels.shape))
    agreement = soft.max(0).values.numpy()
    deep_inside = ndimage.binary_erosion(labels == LARGE, iterations=4)
    assert agreement[deep_inside].min() == 1.0
    edge = ndimage.binary_dilation(labels == LARGE, iterations=1) & ~ndimage.binary_erosion(labels == LARGE, iterations=1)
    assert agreement[edge].mean() < 0.95
    # identical raters: the soft label is one-hot and the majority is their label
    same = np.stack([labels] * 3)
    assert torch.equal(shapes.majority_vote(same), torch.from_numpy(labels))
    with pytest.raises(shapes.ShapesConfigError, match="threshold"):
        shapes.rater_labels(labels, 3, np.random.default_rng(0), threshold=(0.0, 0.5))


def test_rated_set_and_clean_image():
    config = ShapesConfig(size=32, large_radius=(6.0, 8.0), small_radius=(1.5, 2.0))
    rated = shapes.make_rated_set(3, 4, config, seed=2)
    assert rated.raters.shape == (3, 4, 32, 32) and rated.soft.shape == (3, 3, 32, 32) and len(rated) == 3
    assert torch.equal(rated.truth, shapes.make_dataset(3, config, seed=2).labels)
    clean = shapes.clean_image(rated.truth[0].numpy(), config)
    noisy = rated.images[0, 0].numpy()
    assert abs(np.std(noisy - clean) - config.noise) < 0.05


def test_volume_appearance_differs_between_volumes_but_not_within_one():
    config = ShapesConfig(size=48, large_radius=(9.0, 13.0), small_radius=(1.5, 2.6), noise=0.0, blur=0.0)
    varied = shapes.make_volumes(3, 4, config, seed=1, intensity_spread=0.4)
    plain = shapes.make_volumes(3, 4, config, seed=1)
    assert torch.equal(varied.labels, plain.labels)                  # same anatomy
    large = [float(varied.images[i, 0][varied.labels[i] == LARGE].mean()) for i in range(12)]
    assert np.ptp(large[:4]) < 1e-6 and np.ptp(large) > 0.01          # one profile per volume
    assert all(0.6 <= value <= 1.4 for value in large)
    with pytest.raises(shapes.ShapesConfigError, match="spread"):
        shapes.volume_appearance(config, np.random.default_rng(0), 1.0)


def test_in_a_dry_run_data_sets_are_copies_of_their_first_item_with_the_full_shapes():
    from glassbox.core import dryrun

    config = ShapesConfig(size=32, large_radius=(6.0, 8.0), small_radius=(1.5, 2.0))
    full, volumes = shapes.make_dataset(3, config, seed=1), shapes.make_volumes(3, 2, config, seed=1, first=2)
    with dryrun.dry_run() as log:
        dry = shapes.make_dataset(3, config, seed=1)
        dry_volumes = shapes.make_volumes(3, 2, config, seed=1, first=2)
        rated = shapes.make_rated_set(3, 2, config, seed=1)
    assert dry.images.shape == full.images.shape and dry.labels.dtype == full.labels.dtype
    assert torch.equal(dry.images[2], full.images[0]) and torch.equal(dry.labels[2], full.labels[0])
    assert torch.equal(dry_volumes.volumes, volumes.volumes) and torch.equal(dry_volumes.images[4], volumes.images[0])
    assert rated.raters.shape == (3, 2, 32, 32) and torch.equal(rated.soft[2], rated.soft[0])
    assert {"shapes.make_dataset", "shapes.make_volumes", "shapes.make_rated_set"} <= set(log.cut)
