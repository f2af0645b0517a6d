"""The randomness experiment: the 1-ulp perturbation, the condition table, the training probe, and the
statistics, checked against torch / scipy and against exact properties (tiny sizes, a few seconds)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from glassbox.data import lowdose_ct
from glassbox.measure.stats import interval, spearman_bootstrap
from glassbox.models.unet import UNet
from glassbox.studies import randomness
from glassbox.training import unet_denoiser

TINY_DATA = lowdose_ct.CTDataConfig(n=32, n_patients=3, slices_per_patient=2, i0=3e3)
TINY = randomness.RandomnessConfig(
    data=TINY_DATA,
    denoiser=unet_denoiser.DenoiserConfig(depth=5, width=0.0625, residual=True, lr=1e-3, patch_size=16, n_patches=16,
                                      epochs=2),
    n_pairs=1, feature_patch_size=16, n_feature_images=12, curve_feature_images=8, chance_draws=3, bootstrap=20)


@pytest.fixture(scope="module")
def tiny_pairs():
    d = TINY_DATA
    return lowdose_ct.simulate_patients(d.n, d.n_patients, d.slices_per_patient, d.dose, 0, i0=d.i0)


@pytest.fixture(scope="module")
def tiny_eval(tiny_pairs):
    return randomness.evaluation_set(TINY, tiny_pairs, 0)


# --- the 1-ulp perturbation --------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), ulps=st.sampled_from([1, -1, 3]))
def test_ulp_perturbation_moves_exactly_one_weight_by_nextafter(seed, ulps):
    model = unet_denoiser.build_model(TINY.denoiser, 7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    chosen = randomness.pick_ulp_weight(TINY.denoiser, seed)
    perturbation = dataclasses.replace(chosen, ulps=ulps)
    perturbation.apply(model)
    after = model.state_dict()
    changed = {k: int((after[k] != before[k]).sum()) for k in before}
    assert sum(changed.values()) == 1 and changed[perturbation.parameter] == 1
    old = np.float32(before[perturbation.parameter].view(-1)[perturbation.index].item())
    expected = old
    for _ in range(abs(ulps)):  # numpy's nextafter is the reference
        expected = np.nextafter(expected, np.float32(math.copysign(math.inf, ulps)))
    got = after[perturbation.parameter].view(-1)[perturbation.index].numpy()
    assert got == expected and got.dtype == np.float32


def test_pick_ulp_weight_is_seeded_and_picks_a_convolution_weight():
    params = dict(UNet(TINY.denoiser.depth, TINY.denoiser.width, residual=True).named_parameters())
    picks = [randomness.pick_ulp_weight(TINY.denoiser, s) for s in range(30)]
    assert picks[3] == randomness.pick_ulp_weight(TINY.denoiser, 3)
    assert all(params[p.parameter].ndim >= 2 and 0 <= p.index < params[p.parameter].numel() for p in picks)
    assert len({(p.parameter, p.index) for p in picks}) > 20


def test_ulp_perturbation_rejects_bad_targets():
    model = UNet(5, 0.0625)
    with pytest.raises(ValueError, match="no parameter"):
        randomness.UlpPerturbation("Down9.weight", 0).apply(model)
    with pytest.raises(ValueError, match="out of range"):
        randomness.UlpPerturbation("Down1.0.weight", 10**9).apply(model)
    with pytest.raises(ValueError, match="non-zero"):
        randomness.UlpPerturbation("Down1.0.weight", 0, ulps=0)


# --- conditions ----------------------------------------------------------------------------------------------

def test_qus_modes_are_conditions_and_noise_is_an_extra():
    assert randomness.SOURCE_FIELDS["data_order"] == {"data_seed"}                 # Qu's fixed: same initial weights
    assert randomness.SOURCE_FIELDS["init_and_order"] == {"init_seed", "data_seed"}  # Qu's random
    assert "Qu's fixed" in randomness.CONDITIONS["data_order"] and "not Qu's" in randomness.CONDITIONS["noise"]
    assert set(randomness.SEED_LEVEL) | set(randomness.ROUNDING_LEVEL) | {"identical"} == set(randomness.CONDITIONS)


@pytest.mark.parametrize("condition", list(randomness.CONDITIONS))
def test_each_condition_changes_only_what_it_says(condition):
    for pair in range(3):
        a, b = randomness.trial_pair(condition, pair, seed=11, config=TINY)
        assert randomness.differing_fields(a, b) == randomness.SOURCE_FIELDS[condition]
        if condition != "gpu_nondeterministic":  # trial A is shared by every CPU condition of a pair
            assert a == randomness.trial_pair("identical", pair, 11, TINY)[0]
    assert randomness.trial_pair(condition, 0, 11, TINY)[0] != randomness.trial_pair(condition, 1, 11, TINY)[0]


def test_conditions_follow_the_device_and_bad_configs_fail():
    assert "threads" in randomness.conditions_for(TINY, "cpu") and "gpu_nondeterministic" not in randomness.conditions_for(TINY, "cpu")
    assert "threads" not in randomness.conditions_for(TINY, "cuda") and "gpu_nondeterministic" in randomness.conditions_for(TINY, "cuda")
    with pytest.raises(ValueError, match="conditions"):
        dataclasses.replace(TINY, conditions=("init", "seed"))
    with pytest.raises(ValueError, match="feature_patch_size"):
        dataclasses.replace(TINY, feature_patch_size=10)
    with pytest.raises(ValueError, match="curve_feature_images"):
        dataclasses.replace(TINY, curve_feature_images=13)
    with pytest.raises(ValueError, match="alt_threads"):
        randomness.trial_pair("threads", 0, 0, dataclasses.replace(TINY, torch_threads=2, alt_threads=2))
    with pytest.raises(ValueError, match="unknown condition"):
        randomness.trial_pair("cosmic_rays", 0, 0, TINY)


# --- snapshots and the probe ----------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(spe=st.integers(1, 50), epochs=st.integers(1, 12), every=st.integers(1, 5))
def test_snapshot_steps_hold_zero_powers_of_two_epoch_ends_and_the_end(spe, epochs, every):
    steps = randomness.snapshot_steps(spe, epochs, every)
    total = spe * epochs
    assert list(steps) == sorted(set(steps)) and steps[0] == 0 and steps[-1] == total
    assert {2**k for k in range(20) if 2**k <= total} <= set(steps)
    assert {e * spe for e in range(every, epochs + 1, every)} <= set(steps)
    assert all(s == 0 or s == total or s & (s - 1) == 0 or s % (spe * every) == 0 for s in steps)


def test_training_probe_counts_training_forwards_only():
    model = UNet(5, 0.0625)
    probe = randomness.TrainingProbe(None, (0, 2))
    probe.apply(model)
    x = torch.zeros(2, 1, 8, 8)
    model.train()
    model(x)
    with torch.no_grad():
        model.Down1[0].weight.add_(1.0)
    model(x)
    model.eval()
    model(x)  # validation-style forward: not a step
    model.train()
    model(x)
    probe.close()
    model(x)  # after close: not counted
    assert probe.steps_seen == 3 and sorted(probe.snapshots) == [0, 2]
    assert torch.equal(probe.snapshots[2]["Down1.0.weight"], probe.snapshots[0]["Down1.0.weight"] + 1.0)


# --- trials ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_trials(tiny_pairs, tiny_eval):
    out = {}
    for condition in ("identical", "ulp"):
        a, b = randomness.trial_pair(condition, 0, 0, TINY)
        out[condition] = [randomness.run_trial(TINY, spec, seed=0, pairs=tiny_pairs, evaluation=tiny_eval, progress=False)
                          for spec in (a, b)]
    return out


def test_identical_trials_give_identical_weights_features_and_outputs(tiny_trials, tiny_eval):
    tiny_crops = tiny_eval.curve_crops
    a, b = tiny_trials["identical"]
    assert np.array_equal(a["weights"], b["weights"]) and np.array_equal(a["test_outputs"], b["test_outputs"])
    assert all(np.array_equal(a["features"][k], b["features"][k]) for k in a["features"])
    assert all(np.array_equal(a["final_features"][k], b["final_features"][k]) for k in a["final_features"])
    # the last snapshot's features are the final model's (on the first curve crops)
    assert all(np.array_equal(a["features"][k][-1], a["final_features"][k][:tiny_crops]) for k in a["features"])
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_ulp_trial_starts_one_ulp_away_and_snapshots_are_the_weights(tiny_trials, tiny_pairs):
    a, b = tiny_trials["ulp"]
    data = unet_denoiser.prepare_data(TINY.denoiser_for(0), tiny_pairs)
    spe = -(-data.n_train // TINY.denoiser.batch_size)
    assert a["steps"] == list(randomness.snapshot_steps(spe, TINY.denoiser.epochs))
    start = np.flatnonzero(a["weights"][0] != b["weights"][0])
    assert start.size == 1
    assert b["weights"][0][start[0]] == np.nextafter(a["weights"][0][start[0]], np.float32(np.inf))
    # step 0 is the initial model of train_denoiser; the last snapshot is the trained model
    init = unet_denoiser.build_model(TINY.denoiser_for(0), a["spec"]["init_seed"])
    assert np.array_equal(a["weights"][0], torch.cat([p.detach().reshape(-1) for p in init.parameters()]).numpy())
    final = torch.cat([a["state_dict"][name].reshape(-1) for name, _ in init.named_parameters()]).numpy()
    assert np.array_equal(a["weights"][-1], final)


def test_kernel_noise_rounds_every_gradient_by_at_most_one_ulp_and_is_seeded():
    model = UNet(5, 0.0625)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))

    def grads(noise):
        model.zero_grad(set_to_none=True)
        handles = noise.attach(model) if noise is not None else []
        model(x).square().mean().backward()
        for h in handles:
            h.remove()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    clean, a, b, other = grads(None), grads(randomness.KernelNoise(3)), grads(randomness.KernelNoise(3)), \
        grads(randomness.KernelNoise(4))
    moved = 0
    for name, g in clean.items():
        up, down = torch.nextafter(g, torch.full_like(g, math.inf)), torch.nextafter(g, torch.full_like(g, -math.inf))
        assert bool(((a[name] == g) | (a[name] == up) | (a[name] == down)).all()), name    # at most one ulp
        assert torch.equal(a[name], b[name])                                             # seeded
        moved += int((a[name] != g).sum())
    total = sum(g.numel() for g in clean.values())
    assert 0.5 * total < moved < 0.8 * total                        # two thirds of the elements move
    assert any(not torch.equal(a[n], other[n]) for n in clean)      # another seed, other roundings


def test_patch_positions_do_not_move_with_the_noise_draw(tiny_pairs):
    """The noise condition trains on the same patches as trial A: acceptance on the noise-free phantoms."""
    den = TINY.denoiser_for(0)
    clean = lowdose_ct.noise_free_volumes(TINY_DATA, 0)
    redrawn = unet_denoiser.resimulated_pairs(TINY_DATA, 0, 12345)
    assert not np.array_equal(redrawn["S000"][1], tiny_pairs["S000"][1])       # the noise did change
    first = unet_denoiser.prepare_data(den, tiny_pairs, foreground=clean).patch_positions
    second = unet_denoiser.prepare_data(den, redrawn, foreground=clean).patch_positions
    np.testing.assert_array_equal(first, second)


def test_every_parameter_and_buffer_counts_for_identity():
    a = UNet(5, 0.0625).state_dict()
    b = {k: v.clone() for k, v in a.items()}
    assert unet_denoiser.states_identical(a, b)
    b["Down1.1.running_var"][0] += 1e-6                             # a BatchNorm buffer, not a parameter
    assert not unet_denoiser.states_identical(a, b)
    assert unet_denoiser.max_state_difference(a, b) == pytest.approx(1e-6, rel=0.1)   # float32 rounding of 1 + 1e-6


def test_non_deterministic_trials_are_refused_on_cpu(tiny_pairs, tiny_eval):
    a, _ = randomness.trial_pair("gpu_nondeterministic", 0, 0, TINY)
    with pytest.raises(ValueError, match="CUDA"):
        randomness.run_trial(TINY, a, seed=0, pairs=tiny_pairs, evaluation=tiny_eval, progress=False)


# --- statistics ------------------------------------------------------------------------------------------------

def test_relative_distance_and_interval_match_closed_forms():
    a = np.array([3.0, 4.0])
    assert randomness.relative_distance(a, a) == 0.0 and randomness.relative_distance(a, np.zeros(2)) == 1.0
    values = [0.2, 0.5, 0.9, 0.4]
    mean, lo, hi = interval(values)
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert mean == pytest.approx(np.mean(values)) and (lo, hi) == pytest.approx(ref)
    assert math.isnan(interval([1.0])[1])


def test_spearman_bootstrap_matches_scipy_and_is_exact_for_monotone_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(30)
    y = x + rng.standard_normal(30)
    r = spearman_bootstrap(x, y, n_boot=300, seed=1)
    assert r["rho"] == pytest.approx(stats.spearmanr(x, y)[0]) and r["lo"] <= r["rho"] <= r["hi"]
    mono = spearman_bootstrap(x, np.exp(x), n_boot=100)
    assert mono["rho"] == pytest.approx(1.0) and mono["lo"] == pytest.approx(1.0) and mono["hi"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3"):
        spearman_bootstrap([1.0, 2.0], [1.0, 3.0])
