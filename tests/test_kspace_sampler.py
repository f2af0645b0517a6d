"""Tests of the learnable k-space sampling layer and the fixed masks (glassbox.models.kspace_sampler)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from glassbox.models.kspace_sampler import (
    SAMPLE_COLUMN,
    FixedMaskSampler,
    KSpaceClassifier,
    KSpaceSampler,
    apply_mask,
    centre_mask,
    centre_order,
    check_rate,
    fastmri_center_fraction,
    fft2c,
    ifft2c,
    init_logit,
    random_k_mask,
    random_mask,
    relaxed_top_k,
    unit_count,
)


def _image(seed: int = 0, shape=(2, 1, 16, 16), dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------- FFT and the mask pipeline


def test_centred_fft_matches_numpy_and_round_trips():
    x = _image(1, dtype=torch.float64)
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    assert np.allclose(fft2c(x).numpy(), ref, atol=1e-12)
    assert torch.allclose(ifft2c(fft2c(x)).real, x, atol=1e-12)
    # DC sits at (H//2, W//2) and equals sum / sqrt(HW) (orthonormal)
    assert torch.allclose(fft2c(x)[..., 8, 8].real, x.sum(dim=(-2, -1)) / 16, atol=1e-12)
    # Parseval
    assert torch.allclose((fft2c(x).abs() ** 2).sum(), (x ** 2).sum())


def test_all_ones_mask_is_identity():
    x = _image(2, (3, 1, 32, 32))
    assert torch.allclose(apply_mask(x, torch.ones(32, 1)), x, atol=1e-6)
    sampler = FixedMaskSampler(32, torch.ones(32))
    assert torch.allclose(sampler(x), x, atol=1e-6)
    full = KSpaceSampler(32, 1.0)
    full.train()
    assert torch.allclose(full(x), x, atol=1e-6)
    full.eval()
    assert torch.allclose(full(x), x, atol=1e-6)
    assert full.rates()["expected"] == 1.0 and full.rates()["eval"] == 1.0


def test_symmetric_line_mask_gives_real_output_and_dropping_dc_zeroes_the_mean():
    x = _image(3, (1, 1, 16, 16), dtype=torch.float64)
    m = torch.zeros(16)
    m[[8, 5, 11]] = 1.0  # DC and a pair k, -k (centred rows 8 +- 3)
    y = ifft2c(fft2c(x) * m[:, None])
    assert y.imag.abs().max() < 1e-12
    no_dc = torch.ones(16)
    no_dc[8] = 0.0
    assert abs(float(ifft2c(fft2c(x) * no_dc[:, None]).real.mean())) < 1e-12


# ---------------------------------------------------------------- initialisation and rates


def test_column_zero_has_probability_rate_and_the_papers_second_column_has_one_minus_rate():
    for rate in (0.1, 0.24, 0.5, 0.8):
        logits = torch.tensor([init_logit(rate), 0.0])
        p = torch.softmax(logits, dim=0)
        assert math.isclose(float(p[SAMPLE_COLUMN]), rate, abs_tol=1e-6)
        assert math.isclose(float(p[1 - SAMPLE_COLUMN]), 1 - rate, abs_tol=1e-6)


@settings(max_examples=25, deadline=None)
@given(rate=st.floats(0.02, 0.98), n_center=st.integers(0, 4))
def test_expected_rate_at_init_equals_rate(rate, n_center):
    if n_center >= rate * 64:
        with pytest.raises(ValueError, match="n_center"):
            KSpaceSampler(64, rate, n_center=n_center)
        return
    sampler = KSpaceSampler(64, rate, n_center=n_center)
    assert math.isclose(sampler.expected_rate(), rate, abs_tol=1e-6)


@pytest.mark.parametrize("rate", [0.1, 0.24, 0.7])
@pytest.mark.parametrize("temperature", [0.1, 1.0, 10.0])
def test_mean_hard_draw_equals_rate_at_any_temperature(rate, temperature):
    sampler = KSpaceSampler(64, rate, temperature=temperature, seed=1)
    draws = sampler.sample_units(1000)
    assert set(torch.unique(draws.detach()).tolist()) <= {0.0, 1.0}
    tolerance = 4 * math.sqrt(rate * (1 - rate) / draws.numel())
    assert abs(float(draws.detach().mean()) - rate) < tolerance


def test_always_on_centre_lines_are_always_sampled_and_keep_the_rate():
    sampler = KSpaceSampler(32, 0.3, n_center=4, seed=2)
    draws = sampler.sample_units(2000).detach()
    centre = centre_order(32, "line")[:4]
    assert torch.all(draws[:, centre] == 1)
    assert sampler.fixed.sum() == 4 and set(centre.tolist()) == {14, 15, 16, 17}
    assert abs(float(draws.mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / draws.numel())
    sampler.eval()
    assert torch.all(sampler.eval_units()[centre] == 1)


def test_point_mode_has_one_logit_per_kspace_point():
    sampler = KSpaceSampler((16, 8), 0.25, unit="point", seed=0)
    assert sampler.logits.shape == (128, 2)
    x = _image(4, (2, 1, 16, 8))
    sampler.eval()
    mask = sampler.mask()
    assert mask.shape == (16, 8) and int(mask.sum()) == 32
    assert torch.allclose(sampler(x), apply_mask(x, mask))


# ---------------------------------------------------------------- gradients and evaluation


def test_straight_through_gradients_reach_the_logits():
    sampler = KSpaceSampler(32, 0.3, seed=0)
    sampler.train()
    x = _image(5, (4, 1, 32, 32))
    out = sampler(x)
    assert out.shape == x.shape and torch.all(out >= 0)
    weights = torch.rand(32, 32, generator=torch.Generator().manual_seed(9))
    (out * weights).sum().backward()
    grad = sampler.logits.grad
    assert grad is not None and torch.isfinite(grad).all()
    assert (grad.abs() > 0).sum() >= 28  # every line gets signal from some image of the batch
    # softmax is shift invariant: the two columns' gradients cancel per line
    assert grad.sum(dim=1).abs().max() < 1e-5


def test_forward_mask_is_exactly_binary_and_soft_samples_sharpen_as_temperature_falls():
    sampler = KSpaceSampler(64, 0.3, seed=3)
    mean_max = []
    for tau in (10.0, 1.0, 0.1, 0.01):
        sampler.temperature = tau
        gumbel = -torch.log(-torch.log(torch.rand(2000, 64, 2, generator=torch.Generator().manual_seed(1))))
        soft = torch.softmax((sampler.logits.detach() + gumbel) / tau, dim=-1)
        mean_max.append(float(soft.max(dim=-1).values.mean()))
    assert all(a < b for a, b in zip(mean_max, mean_max[1:]))
    assert mean_max[-1] > 0.99


def test_evaluation_mode_is_deterministic_top_k():
    sampler = KSpaceSampler(32, 0.25, seed=0)
    with torch.no_grad():
        sampler.logits[:, SAMPLE_COLUMN] = torch.linspace(-2, 2, 32)
    sampler.eval()
    x = _image(6, (3, 1, 32, 32))
    first, second = sampler(x), sampler(x)
    assert torch.equal(first, second)
    k = round(sampler.expected_rate() * 32)
    assert int(sampler.eval_units().sum()) == k
    assert torch.equal(sampler.eval_units().nonzero().squeeze(1), torch.arange(32 - k, 32))
    # the evaluation mask does not depend on the noise generator
    sampler.reseed(123)
    assert torch.equal(sampler(x), first)


def test_evaluation_mask_at_initialisation_is_the_centre_not_all_or_nothing():
    sampler = KSpaceSampler(64, 0.24).eval()
    assert torch.equal(sampler.eval_units(), centre_mask(64, 0.24))
    assert int(sampler.eval_units().sum()) == round(0.24 * 64)


def test_training_draws_are_reproducible_from_the_seed_and_ignore_global_rng():
    a, b = KSpaceSampler(32, 0.4, seed=7), KSpaceSampler(32, 0.4, seed=7)
    torch.manual_seed(0)
    da = a.sample_units(5)
    torch.manual_seed(1)
    db = b.sample_units(5)
    assert torch.equal(da, db)
    assert not torch.equal(KSpaceSampler(32, 0.4, seed=8).sample_units(5), da)


def test_rates_are_reported_and_the_penalty_pulls_the_rate_back():
    sampler = KSpaceSampler(32, 0.3, seed=0).train()
    sampler(_image(0, (2, 1, 32, 32)))
    rates = sampler.rates()
    assert set(rates) == {"nominal", "expected", "last_draw", "eval"}
    assert rates["nominal"] == 0.3 and 0 <= rates["last_draw"] <= 1
    with torch.no_grad():
        sampler.logits[:, SAMPLE_COLUMN] += 1.0  # drift upwards
    assert sampler.expected_rate() > 0.3
    for _ in range(200):  # plain gradient descent on the penalty alone
        sampler.logits.grad = None
        sampler.rate_penalty().backward()
        with torch.no_grad():
            sampler.logits -= 20.0 * sampler.logits.grad
    assert abs(sampler.expected_rate() - 0.3) < 0.01


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.01, float("nan"), "0.5", True])
def test_bad_rates_are_rejected(rate):
    with pytest.raises(ValueError, match="rate"):
        KSpaceSampler(16, rate)
    with pytest.raises(ValueError, match="rate"):
        check_rate(rate)


def test_mismatched_inputs_are_rejected_clearly():
    sampler = KSpaceSampler(16, 0.5)
    with pytest.raises(ValueError, match=r"size \(16, 16\)"):
        sampler(torch.rand(1, 1, 16, 32))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        sampler(torch.rand(16, 16))
    with pytest.raises(ValueError, match="complex"):
        sampler(torch.rand(1, 1, 16, 16, dtype=torch.complex64))
    with pytest.raises(ValueError, match="FixedMaskSampler"):
        FixedMaskSampler(16, torch.ones(16))(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="temperature"):
        KSpaceSampler(16, 0.5, temperature=0)
    with pytest.raises(ValueError, match="unit"):
        KSpaceSampler(16, 0.5, unit="column")
    with pytest.raises(ValueError, match="0 and 1"):
        FixedMaskSampler(16, torch.full((16,), 0.5))
    with pytest.raises(ValueError, match="infinite logit"):
        init_logit(1.0)


# ---------------------------------------------------------------- fixed baselines


def test_centre_mask_is_contiguous_around_dc():
    m = centre_mask(64, 0.2)
    on = m.nonzero().squeeze(1)
    assert int(m.sum()) == round(0.2 * 64) and 32 in on.tolist()
    assert int(on.max() - on.min()) + 1 == len(on)
    # low-pass: keeps a blurred version whose energy is at most the input's
    x = _image(7, (1, 1, 64, 64))
    assert float((apply_mask(x, m[:, None]) ** 2).sum()) <= float((x ** 2).sum()) + 1e-4


def test_random_mask_matches_fastmri_expected_rate_and_has_a_full_centre():
    rate, size = 0.25, 64
    masks = torch.stack([random_mask(size, rate, seed=s) for s in range(400)])
    n_low = round(fastmri_center_fraction(rate) * size)
    assert n_low == round(0.08 * size)  # fastMRI's 4x / 0.08 pairing
    assert torch.all(masks[:, centre_order(size)[:n_low]] == 1)
    per_mask = masks.mean(dim=1)
    assert abs(float(per_mask.mean()) - rate) < 4 * float(per_mask.std()) / math.sqrt(len(per_mask))
    assert torch.equal(random_mask(size, rate, seed=3), random_mask(size, rate, seed=3))
    with pytest.raises(ValueError, match="center_fraction"):
        random_mask(size, 0.1, seed=0, center_fraction=0.5)


# ---------------------------------------------------------------- exactly k lines (mode="topk")


@settings(max_examples=20, deadline=None)
@given(size=st.integers(8, 48), rate=st.floats(0.05, 0.95), temperature=st.sampled_from([0.1, 1.0, 5.0]),
       seed=st.integers(0, 10_000))
def test_every_top_k_draw_keeps_exactly_k_lines_and_gradients_reach_the_logits(size, rate, temperature, seed):
    sampler = KSpaceSampler(size, rate, mode="topk", temperature=temperature, seed=seed).train()
    k = unit_count(rate, size)
    with torch.no_grad():  # learned preferences, not the uniform start
        sampler.logits[:, SAMPLE_COLUMN] += torch.randn(size, generator=torch.Generator().manual_seed(seed))
    draws = sampler.sample_units(200)
    assert set(torch.unique(draws.detach()).tolist()) <= {0.0, 1.0}
    assert torch.all(draws.detach().sum(dim=1) == k)
    x = _image(seed, (6, 1, size, size))
    out = sampler(x)
    if k < size:
        (out * torch.rand(size, size, generator=torch.Generator().manual_seed(seed + 1))).sum().backward()
        grad = sampler.logits.grad
        assert grad is not None and torch.isfinite(grad).all()
        assert (grad[:, SAMPLE_COLUMN].abs() > 0).sum() >= min(size, 2 * k) // 2
    else:  # every line kept (e.g. size 8 at rate 0.9375): the mask is constant, so no gradient can reach the logits
        assert not out.requires_grad
    assert sampler.draw_count_range == (k, k)
    assert sampler.expected_rate() == k / size


def test_top_k_draws_follow_the_plackett_luce_distribution():
    # k = 1: Gumbel top-1 picks unit i with probability softmax(log-odds)_i
    sampler = KSpaceSampler(4, 0.25, mode="topk", seed=0)
    odds = torch.tensor([0.0, 1.0, -1.0, 2.0])
    with torch.no_grad():
        sampler.logits[:, SAMPLE_COLUMN] = odds
        sampler.logits[:, 1 - SAMPLE_COLUMN] = 0.0
    freq = sampler.sample_units(20_000).detach().mean(dim=0)
    assert torch.allclose(freq, torch.softmax(odds, 0), atol=0.015)


def test_relaxed_top_k_sums_to_k_and_sharpens_to_the_hard_top_k():
    generator = torch.Generator().manual_seed(0)
    scores = torch.stack([torch.linspace(0, 3, 12)[torch.randperm(12, generator=generator)] for _ in range(5)])
    hard = torch.zeros_like(scores).scatter_(-1, scores.topk(4, dim=-1).indices, 1.0)
    errors = []
    for tau in (3.0, 1.0, 0.1, 0.01):
        soft = relaxed_top_k(scores, 4, tau)
        assert torch.all(soft >= 0) and torch.allclose(soft.sum(-1), torch.full((5,), 4.0))
        errors.append(float((soft - hard).abs().max()))
    assert all(a > b for a, b in zip(errors, errors[1:])) and errors[-1] < 1e-3
    assert torch.allclose(relaxed_top_k(scores, 9, 0.01), torch.zeros_like(scores).scatter_(
        -1, scores.topk(9, dim=-1).indices, 1.0), atol=1e-3)  # k > U/2 relaxes the complement


def test_top_k_rate_never_drifts_under_training():
    sampler = KSpaceSampler(32, 0.25, mode="topk", seed=1).train()
    opt = torch.optim.Adam(sampler.parameters(), lr=0.5)
    x = _image(2, (8, 1, 32, 32))
    for _ in range(30):  # push every logit up: the Bernoulli layer would drift to rate 1
        opt.zero_grad()
        (-sampler(x).sum()).backward()
        opt.step()
    assert sampler.draw_count_range == (8, 8) and int(sampler.eval_units().sum()) == 8
    assert sampler.rates()["eval"] == sampler.rates()["expected"] == 0.25


def test_freeze_trains_on_the_evaluation_mask_and_records_it():
    sampler = KSpaceSampler(64, 0.14, mode="topk", seed=3).train()
    x = _image(4, (16, 1, 64, 64))
    sampler(x)
    assert not sampler.seen_in_training()  # 16 random 9-of-64 subsets almost never hit the top-k
    evaluation = sampler.eval_units()
    sampler.freeze()
    assert not sampler.logits.requires_grad
    assert torch.allclose(sampler(x), sampler.eval()(x)) and torch.equal(sampler.eval_units(), evaluation)
    sampler.train()(x)
    assert sampler.seen_in_training() and sampler.seen_in_training(evaluation)
    # the frozen state survives a state_dict round trip
    copy = KSpaceSampler(64, 0.14, mode="topk", seed=99)
    copy.load_state_dict(sampler.state_dict())
    assert torch.equal(copy.eval_units(), evaluation)


def test_sampled_protocol_uses_its_own_generator_and_records_nothing():
    sampler = KSpaceSampler(32, 0.25, mode="topk", seed=5).eval()
    x = _image(5, (4, 1, 32, 32))
    first = sampler.sampled(x, torch.Generator().manual_seed(1))
    assert torch.equal(first, sampler.sampled(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(first, sampler.sampled(x, torch.Generator().manual_seed(2)))
    assert sampler.training_masks == set() and sampler.draw_count_range is None
    model = KSpaceClassifier(sampler, torch.nn.Flatten())
    assert torch.equal(model.forward_sampled(x, torch.Generator().manual_seed(1)), first.flatten(1))


def test_random_k_mask_keeps_exactly_k_lines_with_a_full_centre():
    for k in (1, 5, 9, 32, 64):
        masks = torch.stack([random_k_mask(64, k, seed=s) for s in range(50)])
        assert torch.all(masks.sum(dim=1) == k)
        n_low = round(fastmri_center_fraction(k / 64) * 64)
        assert torch.all(masks[:, centre_order(64)[:n_low]] == 1)
    assert torch.equal(random_k_mask(64, 9, seed=3), random_k_mask(64, 9, seed=3))
    assert not torch.equal(random_k_mask(64, 9, seed=3), random_k_mask(64, 9, seed=4))
    with pytest.raises(ValueError, match="k must be"):
        random_k_mask(64, 0, seed=0)
    with pytest.raises(ValueError, match="mode"):
        KSpaceSampler(16, 0.5, mode="exact")


