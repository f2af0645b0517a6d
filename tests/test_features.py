"""Feature extraction: reductions, streaming moments against the direct computation, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from glassbox.measure import features as F
from glassbox.measure import similarity as S


def small_net(seed: int) -> nn.Sequential:
    """conv-BN-ReLU-conv-ReLU with seeded weights and non-trivial BN running statistics."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))
        net[1].running_mean.copy_(0.1 * torch.randn(8, generator=g))
        net[1].running_var.copy_(1 + torch.rand(8, generator=g))
    return net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(37, 1, 10, 12, generator=torch.Generator().manual_seed(3))


def loader_of(images: torch.Tensor, batch_size: int = 5) -> DataLoader:
    return DataLoader(TensorDataset(images), batch_size=batch_size)


def reference_output(net: nn.Module, images: torch.Tensor, upto: int) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net[:upto + 1](images)


def test_three_reductions_match_the_layer_output(images):
    net = small_net(1)
    out = reference_output(net, images, 2)  # after the ReLU: 37 x 8 x 10 x 12
    for reduction, expected in (("flatten", out.flatten(1)), ("mean", out.mean((2, 3))),
                                ("positions", out.permute(0, 2, 3, 1).reshape(-1, 8))):
        got = F.extract(net, loader_of(images), "2", reduction)["2"]
        assert got.shape == expected.shape, reduction
        assert torch.allclose(got, expected, atol=1e-6), reduction


def test_batch_size_does_not_matter_and_train_flags_are_restored(images):
    net = small_net(2)
    net.train()
    net[1].eval()  # mixed flags must come back as they were
    one = F.extract(net, loader_of(images, 37), ["2", "4"], "mean")
    many = F.extract(net, loader_of(images, 4), ["2", "4"], "mean")
    for name in ("2", "4"):
        assert torch.allclose(one[name], many[name], atol=1e-6)
    assert net.training and net[0].training and not net[1].training
    # BN ran in eval mode: the running statistics were used, not the batch's
    assert torch.allclose(one["4"], reference_output(small_net(2), images, 4).mean((2, 3)), atol=1e-6)


def test_inputs_from_dict_batches_and_early_stop(images):
    net = small_net(3)
    batches = [{"image": images[i:i + 8]} for i in range(0, 37, 8)]
    got = F.extract(net, batches, "2", "mean", input_fn=lambda b: b["image"], max_batches=2)["2"]
    assert got.shape == (16, 8)
    assert F.extract(net, batches, "2", "mean", input_fn=lambda b: b["image"], n_samples=10)["2"].shape == (37, 8)
    with pytest.raises(F.FeatureExtractionError, match="input_fn"):
        F.extract(net, batches, "2")


def test_streamed_positions_match_direct_computation(images):
    a, b = small_net(4), small_net(5)
    fa = F.extract(a, loader_of(images), ["2", "4"], "positions")
    fb = F.extract(b, loader_of(images), ["2", "4"], "positions")
    moments = F.stream_cross_moments(a, b, loader_of(images, 6), ["2", "4", ("2", "4")], "positions")
    for key, (lx, ly) in (("2", ("2", "2")), ("4", ("4", "4")), (("2", "4"), ("2", "4"))):
        m, x, y = moments[key], fa[lx], fb[ly]
        assert m.n == x.shape[0] and m.reduction == "positions"
        assert m.linear_cka().value == pytest.approx(S.linear_cka(x, y).value, abs=1e-6)
        assert m.linear_cka(True).value == pytest.approx(S.linear_cka(x, y, debiased=True).value, abs=1e-6)
        assert np.allclose(m.cca().coefficients, S.cca(x, y).coefficients, atol=1e-6)
        assert m.svcca().value == pytest.approx(S.svcca(x, y).value, abs=1e-6)
        assert m.pwcca().value == pytest.approx(S.pwcca(x, y).value, abs=1e-6)
        assert m.procrustes().value == pytest.approx(S.procrustes(x, y).value, abs=1e-6)


def test_same_model_runs_once_and_mean_reduction_streams(images):
    net = small_net(6)
    calls = []
    handle = net.register_forward_hook(lambda *_: calls.append(1))
    moments = F.stream_cross_moments(net, net, loader_of(images), ("2", "4"), "mean", fourth_moments=False)
    handle.remove()
    assert len(calls) == 8  # 8 batches, one forward each
    f = F.extract(net, loader_of(images), ["2", "4"], "mean")
    assert moments[("2", "4")].cca().value == pytest.approx(S.cca(f["2"], f["4"]).value, abs=1e-6)
    with pytest.raises(S.SimilarityInputError, match="fourth_moments"):
        moments[("2", "4")].linear_cka(debiased=True)


def test_streamed_minibatch_cka_merges_a_tiny_last_batch(images):
    a, b = small_net(7), small_net(8)
    result = F.stream_minibatch_cka(a, b, loader_of(images, 5), "2", "flatten")["2"]  # batches 5 x 7, then 2
    fa = F.extract(a, loader_of(images), "2", "flatten")["2"]
    fb = F.extract(b, loader_of(images), "2", "flatten")["2"]
    manual = S.MinibatchCKA()
    for start, stop in [(i, i + 5) for i in range(0, 30, 5)] + [(30, 37)]:
        manual.update(fa[start:stop], fb[start:stop])
    assert result.n == 37 and result.extra["batches"] == 7
    assert result.value == pytest.approx(manual.result().value, abs=1e-9)


def test_clear_errors(images):
    net = small_net(9)
    with pytest.raises(F.LayerNotFoundError, match=r"no layer\(s\) \['down1'\]; valid names are \['0', '1'"):
        F.extract(net, loader_of(images), ["2", "down1"])
    with pytest.raises(F.FeatureExtractionError, match="reduction must be one of"):
        F.extract(net, loader_of(images), "2", "gap")
    pooled = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2))
    with pytest.raises(F.FeatureExtractionError, match="spatial sizes"):
        F.stream_cross_moments(pooled, pooled, loader_of(images), [("0", "1")], "positions")
    with pytest.raises(F.FeatureExtractionError, match="linear_gram"):
        F.stream_cross_moments(net, net, loader_of(images), "2", "flatten")

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(F.FeatureExtractionError, match="not a tensor"):
        F.extract(nn.Sequential(Pair()), loader_of(images), "0")
    with pytest.raises(F.FeatureExtractionError, match="no batch"):
        F.extract(net, [], "2")
