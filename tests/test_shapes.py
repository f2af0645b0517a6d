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
