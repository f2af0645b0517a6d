"""glassbox.models.feature_nets: the CT feature network, its training data, and VGG-19 weights from a file."""
import numpy as np
import pytest
import torch
from torch import nn

from glassbox.data import tissue_crops
from glassbox.models import feature_nets
from glassbox.training import losses, tissue_features

TINY = tissue_features.FeatureNetConfig(size=32, crop=16, crops_per_image=1, n_patients=3, base=2, epochs=1, batch_size=4)


def test_feature_maps_follow_the_vgg_shape():
    net = feature_nets.FeatureNet(base=4)
    maps = net(torch.zeros(2, 1, 32, 32))
    assert [tuple(m.shape) for m in maps] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8)]
    assert all((m >= 0).all() for m in maps)                            # ReLU outputs
    only = feature_nets.FeatureNet(base=4, layers=("relu2_2",))
    assert len(only(torch.zeros(1, 1, 16, 16))) == 1
    with pytest.raises(ValueError, match="layers"):
        feature_nets.FeatureNet(layers=("relu4_1",))
    with pytest.raises(ValueError, match="expects"):
        net(torch.zeros(1, 3, 16, 16))


def test_random_crops_cut_the_same_windows_from_every_array():
    a = np.arange(2 * 10 * 10).reshape(2, 10, 10)
    b = -a
    ca, cb = tissue_crops.random_crops([a, b], 4, 3, seed=1)
    assert ca.shape == (6, 4, 4) and np.array_equal(cb, -ca)
    for k, crop in enumerate(ca):                                       # every crop is a window of its image
        image = a[k // 3]
        r, c = np.argwhere(image == crop[0, 0])[0]
        assert np.array_equal(image[r:r + 4, c:c + 4], crop)
    assert np.array_equal(tissue_crops.random_crops([a], 4, 3, seed=1)[0], ca)
    with pytest.raises(ValueError):
        tissue_crops.random_crops([a, b[:1]], 4, 1, seed=0)


def test_simulated_ct_low_dose_is_noisier_than_full_dose():
    data = tissue_crops.simulated_ct(2, 32, 0.1, seed=0)
    assert {k: v.shape for k, v in data.items()} == {k: (2, 32, 32) for k in ("phantom", "labels", "low", "full")}
    body = data["phantom"] > -500
    assert np.std((data["low"] - data["phantom"])[body]) > np.std((data["full"] - data["phantom"])[body])


def test_training_returns_a_frozen_network_that_reproduces_the_encoder():
    result = tissue_features.train_feature_net(TINY, seed=0, progress=False)
    assert set(result) >= {"state_dict", "config", "history", "pixel_accuracy", "chance"}
    assert 0 <= result["chance"] <= 1 and 0 <= result["pixel_accuracy"] <= 1
    net = tissue_features.feature_net_from_state(result)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), requires_grad=True)
    value = losses.perceptual_loss(x, torch.zeros(1, 1, 16, 16), net)
    value.backward()
    assert x.grad.abs().sum() > 0                                        # gradients reach the image only
    again = tissue_features.train_feature_net(TINY, seed=0, progress=False)
    assert all(torch.equal(result["state_dict"][k], again["state_dict"][k]) for k in result["state_dict"])


def test_pretrained_feature_net_goes_through_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSBOX_STORE", str(tmp_path))
    net, state = tissue_features.pretrained_feature_net(TINY, seed=1, progress=False)
    assert (tmp_path / "featurenet").is_dir()
    net2, _ = tissue_features.pretrained_feature_net(TINY, seed=1, progress=False)      # loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))


@pytest.mark.parametrize("kwargs", [{"crop": 6}, {"crop": 200}, {"crop": 30}, {"epochs": 0}, {"base": 1.5}])
def test_bad_configuration_raises(kwargs):
    with pytest.raises(ValueError):
        tissue_features.FeatureNetConfig(**kwargs)


def test_vgg19_layer_names_match_torchvision_indices():
    names = feature_nets.vgg19_layer_names()
    assert len(names) == 37
    assert names[0] == "conv1_1" and names[4] == "pool1" and names[34] == "conv5_4" and names[36] == "pool5"


def test_vgg19_loads_a_user_supplied_file(tmp_path):
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Conv2d(64, 128, 3, padding=1), nn.ReLU())
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in reference.state_dict().items()} | {"classifier.0.weight": torch.zeros(1)},
               path)
    vgg = feature_nets.VGG19Features(path, layers=("relu1_2", "relu2_1"), imagenet_normalise=False)
    grey = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    relu1_2, relu2_1 = vgg(grey)
    rgb = grey.repeat(1, 3, 1, 1)
    torch.testing.assert_close(relu1_2, reference[:4](rgb))
    torch.testing.assert_close(relu2_1, reference(rgb))
    with pytest.raises(ValueError, match="lacks VGG-19 feature weights"):
        feature_nets.VGG19Features(path, layers=("relu2_2",))


def test_missing_vgg19_weights_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads weights"):
        feature_nets.VGG19Features(tmp_path / "absent.pth")
    with pytest.raises(FileNotFoundError):
        feature_nets.VGG19Features(None)
