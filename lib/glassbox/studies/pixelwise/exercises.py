"""Exercise answer checks: each tests a student's function on fresh inputs and says what is wrong."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from glassbox.data import degrade
from glassbox.measure import image_metrics
from glassbox.models import feature_nets
from glassbox.studies.pixelwise.config import PixelwiseConfig
from glassbox.studies.pixelwise.metrics import ct_examples, window
from glassbox.training import losses
from glassbox.training.tissue_features import feature_net_from_state

# ------------------------------------------------------------------------------------------------
# Exercise answer checks: each tests a student's function on fresh inputs and says what is wrong

def _attempt(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except NotImplementedError as exc:
        raise AssertionError(f"not done yet: {function.__name__} raises NotImplementedError ({exc})") from None


def check_weighted_cross_entropy(function: Callable[[Tensor, Tensor, Tensor], Tensor], seed: int = 12345) -> str:
    """Exercise 1: ``function(logits, labels, class_weights)`` against torch's weighted cross-entropy."""
    g = torch.Generator().manual_seed(seed)
    for shape in ((2, 3, 5, 7), (1, 4, 6, 6)):
        logits = torch.randn(shape, generator=g, dtype=torch.float64)
        labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        weights = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.1
        expected = F.cross_entropy(logits, labels, weight=weights, reduction="none").mean()
        got = _attempt(function, logits, labels, weights)
        assert isinstance(got, Tensor) and got.ndim == 0, f"return one number (a 0-d tensor), got {got!r:.80}"
        assert torch.allclose(got.double(), expected, rtol=1e-6), (
            f"for logits of shape {shape} the weighted loss should be {float(expected):.6f}, got {float(got):.6f}; "
            "weight each pixel's loss by the weight of its true class, then average over all pixels")
        unweighted = _attempt(function, logits, labels, torch.ones(shape[1], dtype=torch.float64))
        assert torch.allclose(unweighted.double(), F.cross_entropy(logits, labels)), \
            "with all weights 1 the result must be the ordinary cross-entropy"
    return "Exercise 1: correct."


def check_transposed_upsample(function: Callable[[Tensor, Tensor], Tensor], seed: int = 12345) -> str:
    """Exercise 2: ``function(x (H, W), kernel (2, 2))`` against ``conv_transpose2d`` with stride 2."""
    g = torch.Generator().manual_seed(seed)
    for h, w in ((3, 4), (5, 5)):
        x = torch.randn(h, w, generator=g, dtype=torch.float64)
        kernel = torch.randn(2, 2, generator=g, dtype=torch.float64)
        expected = F.conv_transpose2d(x[None, None], kernel[None, None], stride=2)[0, 0]
        got = _attempt(function, x, kernel)
        assert isinstance(got, Tensor) and got.shape == expected.shape, \
            f"a {h}x{w} input must give a {2 * h}x{2 * w} output, got {getattr(got, 'shape', type(got).__name__)}"
        assert torch.allclose(got.double(), expected), \
            "output block (2i, 2j)..(2i+1, 2j+1) must be x[i, j] times the kernel"
    return "Exercise 2: correct."


def check_ssim_friendly_degradation(function: Callable[[np.ndarray], degrade.Degradation], config: PixelwiseConfig,
                                    seed: int = 54321) -> str:
    """Exercise 3: on fresh CT slices, the degradation keeps SSIM > 0.8 and costs more PSNR than noise σ 0.04."""
    fresh = ct_examples(dataclasses.replace(config, n_ct_test=2), seed)
    for i, full_hu in enumerate(fresh["full"]):
        reference = window(full_hu)
        chosen = _attempt(function, reference)
        assert isinstance(chosen, degrade.Degradation), f"return a degrade.Degradation, got {type(chosen).__name__}"
        noise = image_metrics.restoration_metrics(degrade.degrade(reference, degrade.Degradation(noise=0.04), seed),
                                                  reference, 1.0)
        mine = image_metrics.restoration_metrics(degrade.degrade(reference, chosen, seed), reference, 1.0)
        assert mine["SSIM"] > 0.8, f"slice {i}: SSIM {mine['SSIM']:.3f} must stay above 0.8"
        assert mine["PSNR [dB]"] < noise["PSNR [dB]"], \
            f"slice {i}: PSNR {mine['PSNR [dB]']:.1f} dB must be below noise σ 0.04's {noise['PSNR [dB]']:.1f} dB"
    return "Exercise 3: correct."


def check_per_layer_perceptual(function: Callable[[Tensor, Tensor, Mapping[str, Any]], Mapping[str, float]],
                               feature_record: Mapping[str, Any], seed: int = 12345) -> str:
    """Exercise 4: one distance per layer, each >= 0, zero for equal inputs, summing to the all-layer loss."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, 32, 32, generator=g)
    y = x + 0.3 * torch.randn(3, 1, 32, 32, generator=g)
    got = _attempt(function, x, y, feature_record)
    assert isinstance(got, Mapping) and list(got) == list(feature_nets.FEATURE_LAYERS), \
        f"return a dict with one entry per layer in {feature_nets.FEATURE_LAYERS}, got {got!r:.120}"
    values = np.array([float(v) for v in got.values()])
    assert (values >= 0).all(), "distances cannot be negative"
    total = float(losses.perceptual_loss(x, y, feature_net_from_state(feature_record)))
    assert math.isclose(values.sum(), total, rel_tol=1e-4), \
        f"the per-layer distances must add up to the all-layer perceptual loss {total:.5g}, got {values.sum():.5g}"
    same = _attempt(function, x, x.clone(), feature_record)
    assert all(abs(float(v)) < 1e-10 for v in same.values()), "identical images must be at distance 0 in every layer"
    return "Exercise 4: correct."
