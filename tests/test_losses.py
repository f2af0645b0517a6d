"""glassbox.training.losses against torch.nn.functional, the notes' closed forms, and clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.training import losses as gl


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["mean", "sum", "none"]))
def test_bce_matches_torch(seed, reduction):
    g = _gen(seed)
    logits = 4 * torch.randn(2, 1, 5, 6, generator=g, dtype=torch.float64)
    target = (torch.rand(2, 1, 5, 6, generator=g) < 0.3).double()
    ours = gl.bce_loss(logits, target, reduction)
    torch.testing.assert_close(ours, F.binary_cross_entropy_with_logits(logits, target, reduction=reduction))
    torch.testing.assert_close(ours, F.binary_cross_entropy(torch.sigmoid(logits), target, reduction=reduction))


def test_bce_sum_is_the_notes_formula_and_stays_finite():
    logits = torch.tensor([[2.0, -1.0], [0.5, 4.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    f = torch.sigmoid(logits)
    notes = sum(-math.log(f[i, j]) if target[i, j] == 1 else -math.log(1 - f[i, j]) for i in range(2) for j in range(2))
    assert gl.bce_loss(logits, target, "sum").item() == pytest.approx(notes)
    huge = gl.bce_loss(torch.tensor([200.0]), torch.tensor([0.0]), "sum")   # log(1 - sigmoid(200)) = log(0) naively
    assert torch.isfinite(huge) and huge.item() == pytest.approx(200.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["mean", "sum", "none"]))
def test_cross_entropy_matches_torch_for_labels_and_probabilities(seed, reduction):
    g = _gen(seed)
    logits = 3 * torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    torch.testing.assert_close(gl.cross_entropy_loss(logits, labels, reduction),
                               F.cross_entropy(logits, labels, reduction=reduction))
    soft = torch.softmax(torch.randn(2, 4, 5, 6, generator=g, dtype=torch.float64), dim=1)
    torch.testing.assert_close(gl.cross_entropy_loss(logits, soft, reduction),
                               F.cross_entropy(logits, soft, reduction=reduction))


def test_one_vs_rest_bce_is_bce_on_each_one_hot_channel():
    g = _gen(1)
    logits = torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (3, 4, 4), generator=g)
    target = F.one_hot(labels, 3).permute(0, 3, 1, 2).double()
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
    torch.testing.assert_close(gl.one_vs_rest_bce_loss(logits, labels, "sum"), expected)
    assert gl.one_vs_rest_bce_loss(logits, labels, "none").shape == (3, 4, 4)


def test_soft_dice_closed_forms():
    target = torch.zeros(1, 1, 10, 10, dtype=torch.float64)
    target[..., :2, :5] = 1                                      # area A = 10 of D = 100
    assert gl.soft_dice(target, target, smooth=0).item() == pytest.approx(1.0)        # perfect
    assert gl.soft_dice(1 - target, target, smooth=0).item() == pytest.approx(0.0)    # disjoint
    c = 0.3                                                      # constant prediction: 2cA / (A + D c^2)
    constant = torch.full_like(target, c)
    assert gl.soft_dice(constant, target, smooth=0).item() == pytest.approx(2 * c * 10 / (10 + 100 * c**2))
    assert gl.soft_dice(constant, target, smooth=1.0).item() == pytest.approx((2 * c * 10 + 1) / (10 + 100 * c**2 + 1))
    empty = torch.zeros_like(target)
    assert gl.soft_dice(empty, empty, smooth=1.0).item() == 1.0                       # documented smoothing
    assert math.isnan(gl.soft_dice(empty, empty, smooth=0).item())                    # the bare formula: 0 / 0


def test_dice_loss_is_one_minus_mean_class_dice_and_zero_for_perfect_logits():
    g = _gen(2)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    perfect = 50.0 * F.one_hot(labels, 3).permute(0, 3, 1, 2).double()
    assert gl.dice_loss(perfect, labels).item() == pytest.approx(0.0, abs=1e-12)
    logits = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    dice = gl.soft_dice(torch.softmax(logits, 1), F.one_hot(labels, 3).permute(0, 3, 1, 2).double())
    assert gl.dice_loss(logits, labels).item() == pytest.approx(1 - dice.mean().item())
    assert gl.dice_loss(logits, labels, classes=[2]).item() == pytest.approx(1 - dice[:, 2].mean().item())


def test_binary_dice_loss_uses_the_sigmoid():
    logits = torch.tensor([[[0.0, 10.0], [-10.0, 2.0]]], dtype=torch.float64)
    target = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]], dtype=torch.float64)
    f = torch.sigmoid(logits)
    expected = 1 - (2 * (f * target).sum() + 1) / ((f**2).sum() + (target**2).sum() + 1)
    assert gl.binary_dice_loss(logits, target).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("small_side", [2, 4, 8])
def test_missing_a_small_class_costs_dice_one_third_but_cross_entropy_only_its_area(small_side):
    """The notes' claim: each class's Dice term has equal weight; CE's share is the class's pixel share."""
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, :16] = 1
    labels[:, 20:20 + small_side, 20:20 + small_side] = 2
    confident = 0.99
    good = torch.full((1, 3, 32, 32), (1 - confident) / 2, dtype=torch.float64)
    good.scatter_(1, labels[:, None], confident)
    missed = good.clone()
    region = labels[0] == 2
    missed[0, 2][region], missed[0, 0][region] = (1 - confident) / 2, confident        # small structure -> background
    ce_increase = (gl.cross_entropy_loss(missed.log(), labels, "sum") - gl.cross_entropy_loss(good.log(), labels, "sum"))
    per_pixel = math.log(confident / ((1 - confident) / 2))
    assert ce_increase.item() == pytest.approx(small_side**2 * per_pixel)              # proportional to the area
    small_term = [gl.dice_loss(p.log(), labels, smooth=0, classes=[2]).item() for p in (good, missed)]
    assert small_term[0] < 0.02 and small_term[1] > 0.97                               # whatever the area
    dice_increase = gl.dice_loss(missed.log(), labels, smooth=0) - gl.dice_loss(good.log(), labels, smooth=0)
    assert dice_increase.item() > 0.3                                                  # >= ~ one class of three
    shares = gl.small_structure_share(good.log(), labels, small_class=2)
    assert shares["CE"] == pytest.approx(small_side**2 / 32**2)                        # uniform per-pixel loss


def test_gradients_flow_and_are_correct():
    g = _gen(3)
    labels = torch.randint(0, 3, (1, 4, 4), generator=g)
    logits = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: gl.dice_loss(x, labels), (logits,))
    assert torch.autograd.gradcheck(lambda x: gl.cross_entropy_loss(x, labels), (logits,))
    assert torch.autograd.gradcheck(lambda x: gl.combined_loss(x, labels), (logits,))


def test_segmentation_loss_registry():
    g = _gen(4)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    for name in ("bce", "ce", "dice", "ce+dice"):
        value = gl.segmentation_loss(name)(logits, labels)
        assert value.ndim == 0 and value.item() > 0
    torch.testing.assert_close(gl.segmentation_loss("ce+dice")(logits, labels),
                               gl.cross_entropy_loss(logits, labels) + gl.dice_loss(logits, labels))
    with pytest.raises(ValueError, match="unknown segmentation loss 'focal'"):
        gl.segmentation_loss("focal")


def test_perceptual_loss():
    g = _gen(5)
    x = torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)
    y = torch.randn(2, 1, 8, 8, generator=g)
    torch.testing.assert_close(gl.perceptual_loss(x, y, lambda t: [t]), F.mse_loss(x, y))
    pooled = lambda t: [t, F.avg_pool2d(t, 2)]                                           # noqa: E731
    expected = F.mse_loss(x, y) + 0.5 * F.mse_loss(F.avg_pool2d(x, 2), F.avg_pool2d(y, 2))
    value = gl.perceptual_loss(x, y, pooled, weights=[1.0, 0.5])
    torch.testing.assert_close(value, expected)
    value.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert gl.perceptual_loss(y, y, pooled).item() == 0.0
    with pytest.raises(ValueError, match="2 feature maps"):
        gl.perceptual_loss(x, y, pooled, weights=[1.0])


def test_gradient_penalty_of_a_linear_critic_is_closed_form():
    w = torch.tensor([[0.6, 0.0], [0.8, 2.0]])           # ||w|| = sqrt(0.36 + 0.64 + 4) = sqrt(5)

    def critic(image):
        return (image * w).sum(dim=(1, 2))

    real, fake = torch.randn(4, 2, 2, generator=_gen(6)), torch.randn(4, 2, 2, generator=_gen(7))
    gp = gl.gradient_penalty(critic, real, fake, _gen(8))
    assert gp.item() == pytest.approx((math.sqrt(5) - 1) ** 2, rel=1e-6)
    no_gp = gl.wgan_critic_loss(critic, real, fake, _gen(8), gp_weight=0.0)
    assert no_gp.item() == pytest.approx((critic(fake).mean() - critic(real).mean()).item(), rel=1e-6)
    with_gp = gl.wgan_critic_loss(critic, real, fake, _gen(8), gp_weight=10.0)
    assert with_gp.item() == pytest.approx(no_gp.item() + 10 * gp.item(), rel=1e-6)
    assert gl.wgan_generator_loss(critic, fake).item() == pytest.approx(-critic(fake).mean().item())


def test_gradient_penalty_is_reproducible_with_a_generator():
    critic = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    real, fake = torch.randn(3, 1, 4, 4, generator=_gen(9)), torch.randn(3, 1, 4, 4, generator=_gen(10))
    assert gl.gradient_penalty(critic, real, fake, _gen(11)) == gl.gradient_penalty(critic, real, fake, _gen(11))


@pytest.mark.parametrize("call", [
    lambda: gl.bce_loss(torch.zeros(2, 3), torch.zeros(2, 4)),
    lambda: gl.bce_loss(torch.zeros(2, 3), torch.full((2, 3), 2.0)),
    lambda: gl.bce_loss([0.0], torch.zeros(1)),
    lambda: gl.cross_entropy_loss(torch.zeros(1, 3, 4, 4), torch.full((1, 4, 4), 3)),
    lambda: gl.cross_entropy_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4)),
    lambda: gl.cross_entropy_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 5, 5, dtype=torch.long)),
    lambda: gl.cross_entropy_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), "avg"),
    lambda: gl.dice_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), classes=[3]),
    lambda: gl.soft_dice(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), smooth=-1),
    lambda: gl.soft_dice(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4)),
    lambda: gl.small_structure_share(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), 5),
])
def test_bad_inputs_raise_value_errors(call):
    with pytest.raises(ValueError):
        call()
