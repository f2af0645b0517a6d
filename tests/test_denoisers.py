"""Chen's CNN, Yang's WGAN-VGG and their training: architecture facts, layer taps, loss decrease, exact resume."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from glassbox.models import chen_cnn, common, feature_nets, wgan_vgg
from glassbox.models.feature_nets import FeatureNetError, hu_to_input
from glassbox.training import ct_denoisers


def _convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.layers if isinstance(m, nn.Conv2d)]


def test_chen_architecture_matches_the_paper_and_keeps_the_image_size():
    net = chen_cnn.ChenCNN()
    convs = _convs(net)
    assert [(c.kernel_size[0], c.out_channels) for c in convs] == [(9, 64), (3, 32), (5, 1)]
    assert [type(m) for m in net.layers] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d]
    assert net(torch.zeros(2, 1, 20, 24)).shape == (2, 1, 20, 24)
    assert _convs(chen_cnn.ChenCNN(last_kernel=3))[-1].kernel_size == (3, 3)  # seed 004's Table I variant
    with pytest.raises(common.DenoiserError, match="last_kernel"):
        chen_cnn.ChenCNN(last_kernel=4)


def test_yang_generator_has_eight_3x3_convs_and_fifteen_layers():
    net = wgan_vgg.YangGenerator()
    convs = _convs(net)
    assert len(convs) == 8 and common.n_layers(net) == 15
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [c.out_channels for c in convs] == [32] * 7 + [1]
    assert net(torch.zeros(1, 1, 17, 17)).shape == (1, 1, 17, 17)


def test_paper_layers_are_convolution_outputs_and_truncation_reproduces_the_network():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    for net, layers in ((chen_cnn.ChenCNN(), chen_cnn.CHEN_LAYERS), (wgan_vgg.YangGenerator(), wgan_vgg.YANG_LAYERS)):
        assert all(isinstance(net.layers[k - 1], nn.Conv2d) for k in layers)
        full = common.truncate(net, common.n_layers(net))
        assert torch.equal(full(x), net(x))
    yang = wgan_vgg.YangGenerator()
    # layer 13 = conv 7 before its ReLU (it can be negative); layer 14 applies that ReLU
    z13, z14 = common.truncate(yang, 13)(x), common.truncate(yang, 14)(x)
    assert z13.shape == (2, 32, 16, 16) and torch.equal(torch.relu(z13), z14)
    with pytest.raises(common.DenoiserError, match="layer"):
        common.truncate(chen_cnn.ChenCNN(), 6)
    with pytest.raises(common.DenoiserError, match="layer"):
        common.truncate(chen_cnn.ChenCNN(), 0)


def test_critic_feature_map_matches_the_reference_size():
    # ldct-benchmark: 64 x 64 input, no padding -> 256 x 5 x 5 before the FC 1024 layer
    critic = wgan_vgg.WGANCritic(64, width=64)
    assert critic.head[1].in_features == 256 * 5 * 5 and critic.head[1].out_features == 1024
    assert critic(torch.zeros(3, 1, 64, 64)).shape == (3,)
    with pytest.raises(common.DenoiserError, match="patch_size"):
        wgan_vgg.WGANCritic(16)
    with pytest.raises(common.DenoiserError, match="expects"):
        wgan_vgg.WGANCritic(32, width=4)(torch.zeros(1, 1, 64, 64))


def test_perceptual_input_maps_reach_each_networks_scale(tmp_path):
    hu = torch.tensor([-1024.0, -1000.0, 0.0, 3072.0]).view(1, 1, 2, 2)
    units = (hu + 1000.0) / 1000.0
    identity = nn.Sequential(nn.Identity())
    ct = feature_nets.PerceptualFeatures(identity, offset=1.0, scale=1.0)
    assert torch.allclose(ct(units)[0], hu_to_input(hu), atol=1e-6)
    # the VGG path: [-1024, 3072] HU onto [0, 1]; build a weights file for conv1_1 only
    weights = {"features.0.weight": torch.randn(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    torch.save(weights, tmp_path / "vgg.pth")
    vgg = ct_denoisers.perceptual_features("vgg19", vgg19_weights=tmp_path / "vgg.pth", layers=("relu1_1",))
    mapped = (units - vgg.offset) * vgg.scale
    assert torch.allclose(mapped.flatten()[[0, 3]], torch.tensor([0.0, 1.0]), atol=1e-6)
    assert vgg(units)[0].shape == (1, 64, 2, 2)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        ct_denoisers.perceptual_features("vgg19", vgg19_weights=tmp_path / "missing.pth")
    with pytest.raises(common.DenoiserError, match="vgg19_weights"):
        ct_denoisers.YangConfig(perceptual="vgg19")
    with pytest.raises(common.DenoiserError, match="'ct' or 'vgg19'"):
        ct_denoisers.perceptual_features("imagenet")
    with pytest.raises(FeatureNetError):
        ct_denoisers.perceptual_features("vgg19", vgg19_weights=tmp_path / "vgg.pth", layers=("conv9_9",))


def _toy_pairs(n: int = 24, size: int = 32, seed: int = 0) -> TensorDataset:
    """Smooth random images (full dose) and a noisy copy (low dose), network units around 1."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1, size // 4, size // 4))
    full = 1.0 + 0.1 * torch.nn.functional.interpolate(torch.tensor(base, dtype=torch.float32), size=(size, size),
                                                       mode="bilinear", align_corners=False)
    low = full + 0.05 * torch.tensor(rng.normal(size=full.shape), dtype=torch.float32)
    return TensorDataset(low, full)


def test_chen_training_lowers_the_l2_loss():
    data = _toy_pairs()
    model, history = ct_denoisers.train_chen(data, ct_denoisers.ChenConfig(epochs=3, batch_size=8, lr=1e-3), seed=0, progress=False)
    losses = [e["train_loss"] for e in history.epochs]
    assert losses[-1] < 0.5 * losses[0]
    assert not model.training


class _TinyFeatures(nn.Module):
    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(3)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))

    def forward(self, x):
        return [torch.relu(self.conv(x))]


def test_wgan_vgg_resumes_exactly_and_refuses_a_foreign_checkpoint(tmp_path):
    data = _toy_pairs(n=8)
    features = _TinyFeatures().requires_grad_(False)
    config = ct_denoisers.YangConfig(epochs=2, batch_size=4, lr=1e-4, n_critic=2, critic_width=4)
    straight, critic, history = ct_denoisers.train_wgan_vgg(data, features, config, seed=1, progress=False)
    assert len(history.epochs) == 2 and all(np.isfinite(e["critic_loss"]) for e in history.epochs)
    first = dataclasses.replace(config, epochs=1)
    ct_denoisers.train_wgan_vgg(data, features, first, seed=1, checkpoint_dir=tmp_path / "run", progress=False)
    with pytest.raises(common.DenoiserError, match="another WGAN-VGG run"):
        ct_denoisers.train_wgan_vgg(data, features, dataclasses.replace(first, lr=2e-4), seed=1,
                          checkpoint_dir=tmp_path / "run", progress=False)
    resumed, resumed_critic, resumed_history = ct_denoisers.train_wgan_vgg(data, features, config, seed=1,
                                                                 checkpoint_dir=tmp_path / "run", progress=False)
    for a, b in ((straight, resumed), (critic, resumed_critic)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(p, q), name
    assert [e["epoch"] for e in resumed_history.epochs] == [1, 2]


class _Recording(torch.utils.data.Dataset):
    """A dataset that remembers which items were read, in order."""

    def __init__(self, data):
        self.data, self.seen = data, []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        self.seen.append(int(index))
        return self.data[index]


def test_every_critic_step_draws_a_fresh_batch():
    """WGAN-GP's Algorithm 1 (and Yang et al.'s code): each of the n_critic critic steps and the generator step
    sample their own batch; none reuses the batch of another step."""
    size, batch, n_critic = 48, 4, 3
    steps = ct_denoisers.wgan_steps_per_epoch(size, batch, n_critic)
    assert steps == 3                                          # 12 batches per pass / (3 + 1)
    schedule = [ct_denoisers.wgan_step_batches(s, size, batch, n_critic, seed=5) for s in range(2 * steps)]
    for critic_batches, generator_batch in schedule:
        groups = [set(b.tolist()) for b in [*critic_batches, generator_batch]]
        assert len(groups) == n_critic + 1 and all(len(g) == batch for g in groups)
        assert all(not (a & b) for i, a in enumerate(groups) for b in groups[i + 1:])   # disjoint within a step
    first_pass = torch.cat([torch.cat([*c, g]) for c, g in schedule[:steps]])
    assert sorted(first_pass.tolist()) == list(range(size))                          # one pass = every patch once
    assert torch.equal(schedule[1][0][0], ct_denoisers.wgan_step_batches(1, size, batch, n_critic, seed=5)[0][0])
    # the training loop reads exactly these batches, in this order
    data = _Recording(_toy_pairs(n=size))
    config = ct_denoisers.YangConfig(epochs=2, batch_size=batch, lr=1e-4, n_critic=n_critic, critic_width=4)
    ct_denoisers.train_wgan_vgg(data, _TinyFeatures().requires_grad_(False), config, seed=5, progress=False)
    expected = torch.cat([torch.cat([*c, g]) for c, g in schedule]).tolist()
    assert data.seen[0] == 0 and data.seen[1:] == expected     # item 0 is read once first, to check its shape


def test_configs_reject_bad_values():
    with pytest.raises(common.DenoiserError, match="epochs"):
        ct_denoisers.ChenConfig(epochs=0)
    with pytest.raises(common.DenoiserError, match="betas"):
        ct_denoisers.YangConfig(betas=(0.5, 1.5))
    with pytest.raises(common.DenoiserError, match="pretrain_epochs"):
        ct_denoisers.YangConfig(pretrain_epochs=-1)
    with pytest.raises(common.DenoiserError, match=r"\(N, 1, H, W\)"):
        chen_cnn.ChenCNN()(torch.zeros(1, 3, 8, 8))
