"""The invariance machinery: cINN invertibility and log-determinant, ActNorm initialisation, maximum-likelihood
training (v ~ N(0, I) on held-out data), the VAE's posterior and KL, sampling and the trust checks."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio

from glassbox.models import chen_cnn, common
from glassbox.models import cinn as cinn_net
from glassbox.models import vae as vae_net
from glassbox.models.common import init_model
from glassbox.studies import invariances
from glassbox.training import vae_cinn


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.2) -> None:
    """Non-trivial coupling weights (zero-initialised couplings are the identity: every test would pass trivially)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if "subnet" in name:
                parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))


def _initialised_inn(dim: int, cond: int | None, seed: int, dtype=torch.float32) -> tuple[cinn_net.ConditionalINN, torch.Tensor,
                                                                                           torch.Tensor | None]:
    # zero_init=False: PyTorch's random initialisation of every subnet layer, so no coupling is the identity
    inn = init_model(lambda: cinn_net.ConditionalINN(dim, cond, n_blocks=4, hidden=32, permutation_seed=seed,
                                                zero_init=False), init_seed=seed).to(dtype)
    generator = torch.Generator().manual_seed(seed)
    data = 0.5 + 2.0 * torch.randn(64, dim, generator=generator, dtype=dtype)
    h = None if cond is None else torch.randn(64, cond, generator=generator, dtype=dtype)
    inn.initialize(data, h)
    x = 0.5 + 2.0 * torch.randn(64, dim, generator=generator, dtype=dtype)  # fresh random inputs
    return inn, x, h


@settings(max_examples=8, deadline=None)
@given(dim=st.integers(2, 40), cond=st.one_of(st.none(), st.integers(1, 12)), seed=st.integers(0, 10_000))
def test_cinn_inverts_to_1e_5_with_and_without_condition(dim, cond, seed):
    inn, x, h = _initialised_inn(dim, cond, seed)
    with torch.no_grad():
        v, log_det = inn(x, h)
        assert torch.isfinite(v).all() and log_det.shape == (x.shape[0],)
        assert (inn.inverse(v, h) - x).abs().max() < 1e-5
        assert log_det.std() > 1e-3  # the affine couplings act (ActNorm and permutations alone: constant)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))  # random latent inputs
        assert (inn(inn.inverse(noise, h), h)[0] - noise).abs().max() < 1e-5


@pytest.mark.parametrize("cond", [None, 3])
def test_cinn_log_determinant_equals_autograd_slogdet(cond):
    inn, x, h = _initialised_inn(6, cond, seed=5, dtype=torch.float64)
    for i in range(3):
        hi = None if h is None else h[i:i + 1]
        jacobian = torch.autograd.functional.jacobian(lambda a: inn(a[None], hi)[0][0], x[i])
        sign, logabsdet = torch.linalg.slogdet(jacobian)
        assert sign != 0
        assert inn(x[i:i + 1], hi)[1].item() == pytest.approx(logabsdet.item(), abs=1e-9)


def test_actnorm_is_initialised_from_data_before_any_sampling():
    inn = cinn_net.ConditionalINN(5, 2, n_blocks=2, hidden=8)
    assert not inn.initialized
    v = torch.randn(4, 5)
    with pytest.raises(cinn_net.NotInitializedError):
        inn.inverse(v, torch.zeros(4, 2))
    with pytest.raises(cinn_net.NotInitializedError):
        inn(v, torch.zeros(4, 2))
    with pytest.raises(common.InvarianceError, match="at least 2"):
        inn.initialize(v[:1], torch.zeros(1, 2))
    generator = torch.Generator().manual_seed(0)
    data = torch.tensor([10.0, -3.0, 0.5, 100.0, 7.0]) + torch.tensor([1.0, 2.0, 0.1, 30.0, 5.0]) * torch.randn(
        500, 5, generator=generator)
    inn.initialize(data, torch.randn(500, 2, generator=generator))
    assert inn.initialized
    first = inn.actnorms[0]
    out = data * first.scale.exp() + first.bias
    assert torch.allclose(out.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(out.std(0), torch.ones(5), atol=1e-4)
    # a loaded state dict counts as initialised (FrEIA's load hook); the global NumPy RNG is untouched
    state = np.random.get_state()[1].copy()
    fresh = cinn_net.ConditionalINN(5, 2, n_blocks=2, hidden=8)
    assert np.array_equal(np.random.get_state()[1], state)
    fresh.load_state_dict(inn.state_dict())
    assert fresh.initialized
    h = torch.randn(3, 2)
    assert torch.equal(fresh.inverse(v[:3], h), inn.inverse(v[:3], h))


def test_model_with_embedder_inverts_and_refuses_unset_actnorm():
    torch.manual_seed(0)
    model = cinn_net.InvarianceINN(8, (4, 16, 16), cinn_net.CINNConfig(hidden=16, emb_dim=6, embed_width=4))
    z = torch.randn(10, 4, 16, 16)
    with pytest.raises(cinn_net.NotInitializedError):
        model.inverse(torch.randn(10, 8), z)
    zbar = torch.randn(10, 8)
    model.initialize(zbar, z)
    _randomise(model.flow, 1, scale=0.05)
    with torch.no_grad():
        v, _ = model(zbar, z)
        assert (model.inverse(v, z) - zbar).abs().max() < 1e-5


def _toy_vae(patch: int = 8, latent: int = 6, seed: int = 0, posterior_std: float = 0.3) -> vae_net.VAE:
    """A random but informative encoder: posterior means spread over about +-2, posterior std ``posterior_std``."""
    vae = init_model(lambda: vae_net.VAE(patch, latent, width=4), init_seed=seed)
    linear = vae.encoder[-1]
    with torch.no_grad():
        linear.weight[:latent] *= 3.0
        linear.weight[latent:] = 0.0
        linear.bias[latent:] = math.log(posterior_std**2)
    return common.freeze(vae)


def _toy_images(n: int, patch: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, 2, 2, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(patch, patch), mode="bilinear", align_corners=False)
    return 1.0 + 0.2 * smooth + 0.01 * torch.randn(n, 1, patch, patch, generator=generator)


def test_after_training_v_on_held_out_data_is_standard_normal():
    vae = _toy_vae()
    chen = common.freeze(init_model(chen_cnn.ChenCNN, init_seed=0))
    phi = common.truncate(chen, 1)
    config = cinn_net.CINNConfig(hidden=32, emb_dim=16, embed_width=8, epochs=16, batch_size=64, lr=1e-3)
    train, held_out = _toy_images(768, seed=1), _toy_images(512, seed=2)
    model, history = vae_cinn.train_invariance_inn(phi, vae, train, config, seed=0, progress=False)
    before = cinn_net.InvarianceINN(vae.latent_dim, model.cond_shape, config, permutation_seed=0)
    before.initialize(*vae_cinn._encode_pair(phi, vae, train[:256], torch.Generator().manual_seed(0)))
    stats, stats_before = (vae_cinn.latent_statistics(m, phi, vae, held_out, seed=9) for m in (model, before))
    # per dimension: mean near 0 and variance near 1 (512 samples: standard errors ~0.04 and ~0.06)
    assert stats["max_abs_mean"] < 0.25 and float(np.sqrt(np.mean(stats["mean"] ** 2))) < 0.15
    assert np.all((stats["var"] > 0.7) & (stats["var"] < 1.3))
    # the condition explains much of zbar: the likelihood improved well beyond ActNorm's standardisation
    assert stats["nll_per_dim"] < stats_before["nll_per_dim"] - 0.2
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    # the trained cINN still inverts to 1e-5 on random latents, conditioned on real representations
    z = phi(held_out[:32])
    with torch.no_grad():
        v = torch.randn(32, vae.latent_dim, generator=torch.Generator().manual_seed(4))
        assert (model(model.inverse(v, z), z)[0] - v).abs().max() < 1e-5


def test_posterior_sampling_kl_and_vae_loss_match_closed_forms():
    vae = _toy_vae(patch=16, latent=4)
    x = _toy_images(5, patch=16)
    posterior = vae.encode(x)
    first = posterior.sample(torch.Generator().manual_seed(3))
    eps = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(first, posterior.mean + posterior.std * eps)
    q = torch.distributions.Normal(posterior.mean, posterior.std)
    p = torch.distributions.Normal(torch.zeros_like(posterior.mean), torch.ones_like(posterior.std))
    assert torch.allclose(posterior.kl(), torch.distributions.kl_divergence(q, p).sum(1), rtol=1e-5, atol=1e-5)
    clamped = vae_net.DiagonalGaussian(torch.zeros(1, 2), torch.tensor([[-100.0, 100.0]]))
    assert clamped.logvar.tolist() == [list(vae_net.LOGVAR_RANGE)]
    config = vae_cinn.VAEConfig(recon_sigma_hu=50.0, kl_weight=0.5)
    loss = vae_cinn.vae_loss(vae, x, torch.Generator().manual_seed(3), config)
    expected = ((vae.decode(first) - x).pow(2).flatten(1).sum(1) / (2 * 0.05**2) + 0.5 * posterior.kl()).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(common.InvarianceError, match="power of two"):
        vae_net.VAE(24)
    with pytest.raises(common.InvarianceError, match=r"\(N, 1, 16, 16\)"):
        vae.encode(torch.zeros(2, 1, 8, 8))


def test_vae_training_reduces_the_loss_and_resumes_exactly(tmp_path):
    images = _toy_images(64, patch=8, seed=4)
    config = vae_cinn.VAEConfig(latent_dim=4, width=4, epochs=2, batch_size=16, lr=3e-3)
    vae, history = vae_cinn.train_vae(images, config, seed=0, progress=False)
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    vae_cinn.train_vae(images, dataclasses.replace(config, epochs=1), seed=0, checkpoint_dir=tmp_path, progress=False)
    resumed, _ = vae_cinn.train_vae(images, config, seed=0, checkpoint_dir=tmp_path, progress=False)
    for (name, a), b in zip(vae.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_batch_noise_is_a_pure_function_of_seed_and_indices():
    a = torch.randn(3, generator=vae_cinn.batch_generator(1, torch.tensor([4, 5])))
    b = torch.randn(3, generator=vae_cinn.batch_generator(1, torch.tensor([4, 5])))
    c = torch.randn(3, generator=vae_cinn.batch_generator(1, torch.tensor([5, 4])))
    d = torch.randn(3, generator=vae_cinn.batch_generator(2, torch.tensor([4, 5])))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_centred_cosine_properties():
    generator = torch.Generator().manual_seed(0)
    centre = torch.randn(1, 3, 1, 1, generator=generator)
    a, b = torch.randn(2, 3, 4, 4, generator=generator), torch.randn(2, 3, 4, 4, generator=generator)
    assert torch.allclose(invariances.centred_cosine(a, a, centre), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(invariances.centred_cosine(a, 2 * centre - a, centre), -torch.ones(2, dtype=torch.float64))
    assert torch.allclose(invariances.centred_cosine(a, b, centre), invariances.centred_cosine(b, a, centre))
    assert torch.allclose(invariances.centred_cosine(a, centre + 5 * (a - centre), centre), torch.ones(2, dtype=torch.float64))


def test_sampling_and_checks_on_a_layer_that_sees_the_whole_input():
    """Layer 1 of Chen's net is a 64-filter 9x9 convolution: Phi(sample) must track z better than other images."""
    vae = _toy_vae(patch=8, latent=6)
    chen = common.freeze(init_model(chen_cnn.ChenCNN, init_seed=0))
    config = cinn_net.CINNConfig(hidden=32, emb_dim=16, embed_width=8, epochs=8, batch_size=64, lr=1e-3)
    train = _toy_images(512, seed=5)
    model, _ = vae_cinn.train_invariance_inn(common.truncate(chen, 1), vae, train, config, seed=0, progress=False)
    test = _toy_images(4, seed=6)
    z = common.truncate(chen, 1)(test[:1])
    one = vae_cinn.sample_invariances(model, vae, z, 7, torch.Generator().manual_seed(1))
    two = vae_cinn.sample_invariances(model, vae, z, 7, torch.Generator().manual_seed(1))
    assert one.shape == (7, 1, 8, 8) and torch.equal(one, two)
    result = invariances.analyse_layer("chen", chen, 1, model, vae, test, n_samples=20, n_shown=3, seed=0)
    assert result.shown.shape == (4, 3, 8, 8) and result.std_maps.shape == (4, 8, 8)
    assert result.spread_hu > 0 and result.prior_spread_hu > 0
    assert result.phi_similarity > result.phi_similarity_other
    assert -1.0 <= result.phi_similarity <= 1.0
    assert set(result.row()) >= {"spread_hu", "phi_similarity", "f_rmse_hu", "layer"}
    with pytest.raises(common.InvarianceError, match="one image"):
        vae_cinn.sample_invariances(model, vae, common.truncate(chen, 1)(test), 3, torch.Generator())


def test_image_quality_matches_scikit_image_on_the_window():
    generator = torch.Generator().manual_seed(0)
    reference = 1.0 + 0.1 * torch.randn(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    estimate = reference + 0.02 * torch.randn(2, 1, 16, 16, generator=generator, dtype=torch.float64)
    quality = invariances.image_quality(estimate, reference)
    lo, hi = invariances.display_window()
    window = [np.clip((1000 * t.numpy() - 1000 - lo) / (hi - lo), 0, 1) for t in (estimate, reference)]
    expected = np.mean([peak_signal_noise_ratio(window[1][i, 0], window[0][i, 0], data_range=1.0) for i in range(2)])
    assert quality["psnr"] == pytest.approx(expected, rel=1e-9)
    assert quality["rmse_hu"] == pytest.approx(float(1000 * (estimate - reference).pow(2).flatten(1).mean(1).sqrt()
                                                     .mean()), rel=1e-9)


def test_profiles_and_config_validation():
    assert set(invariances.PROFILES) == {"smoke", "quick", "paper"}
    paper = invariances.PROFILES["paper"]
    assert paper.cinn.n_blocks == 4 and paper.n_samples == 250 and paper.n_shown_samples == 5
    assert paper.chen_layers == (1, 3, 5) and paper.yang_layers == (1, 7, 13)
    assert paper.yang.n_critic == 4 and paper.yang.gp_weight == 10 and paper.yang.perceptual_weight == 0.1
    assert paper.chen.last_kernel == 5
    with pytest.raises(common.InvarianceError, match="power of two"):
        invariances.InvarianceConfig(patch_size=48)
    with pytest.raises(common.InvarianceError, match="n_samples"):
        invariances.InvarianceConfig(n_samples=1, n_shown_samples=1)
    with pytest.raises(common.InvarianceError, match="yang_layers"):
        invariances.InvarianceConfig(yang_layers=(16,))


def test_spread_trend_words_follow_the_spreads():
    from types import SimpleNamespace

    def results(*spreads):
        return [SimpleNamespace(analysis=SimpleNamespace(spread_hu=s)) for s in spreads]
    assert invariances.spread_trend(results(1.0, 2.0, 3.0)) == "grows with every layer"
    assert invariances.spread_trend(results(1.0, 0.5, 3.0)).startswith("is larger at the deepest layer")
    assert invariances.spread_trend(results(3.0, 2.0, 1.0)) == "does not grow with depth"
