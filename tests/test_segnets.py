"""glassbox.models.segnets: the notes' architectures, shapes, seeding, input errors, and that they can learn."""
import pytest
import torch
from torch import nn

from glassbox.models import segnets
from glassbox.models.segnets import ARCHITECTURES
from glassbox.training import losses


def _conv_params(c_in: int, c_out: int, k: int = 3) -> int:
    return c_in * c_out * k * k + c_out


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("size", [(32, 32), (40, 24)])
def test_output_is_one_score_map_per_class_at_input_size(name, size):
    model = segnets.build_segnet(name, out_channels=4, width=0.125)
    out = model(torch.zeros(2, 1, *size))
    assert out.shape == (2, 4, *size)


def test_naive_network_has_the_notes_channels_and_parameter_count():
    model = segnets.NaiveSegNet(width=1.0, batch_norm=False, out_channels=3)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 128, 256, 128, 32, 3]      # I -> 32 -> 128 -> 256 (up) 128 -> 32 -> O
    expected = (_conv_params(1, 32) + _conv_params(32, 128) + _conv_params(128, 256) + _conv_params(256, 128)
                + _conv_params(128, 32) + _conv_params(32, 3))
    assert segnets.count_parameters(model) == expected
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3         # s = 2**3 = 8


def test_unet_variants_differ_only_in_their_upsampling():
    bilinear = segnets.build_segnet("unet-bilinear", width=0.25)
    transposed = segnets.build_segnet("unet-transposed", width=0.25)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in bilinear.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in transposed.modules()) == 3
    assert sum(isinstance(m, nn.Upsample) for m in bilinear.modules()) == 3


def test_build_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = segnets.build_segnet("fcn", init_seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = segnets.build_segnet("fcn", init_seed=5)
    c = segnets.build_segnet("fcn", init_seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_residual_unet_with_zero_head_is_the_identity():
    model = segnets.SmallUNet(1, 1, base=4, levels=2, residual=True)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(x), x)


def test_skip_connections_carry_fine_detail_that_the_naive_bottleneck_cannot():
    """A one-pixel change of the input moves the U-Net's output at that pixel through the skip path;
    for the naive network every output pixel is computed from 8x-down-sampled features."""
    x = torch.zeros(1, 1, 32, 32)
    x2 = x.clone()
    x2[0, 0, 16, 16] = 1.0
    for name in ("unet-bilinear", "naive"):
        model = segnets.build_segnet(name, width=0.25).eval()
        change = (model(x2) - model(x)).abs().sum(1)[0]
        if name == "unet-bilinear":
            assert change[16, 16] > 0
    naive = segnets.NaiveSegNet(width=0.25, upsample="nearest", batch_norm=False).eval()
    captured = {}
    naive.decoder.register_forward_pre_hook(lambda m, args: captured.update(up=args[0]))
    naive(torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(1)))
    blocks = captured["up"].unfold(2, 8, 8).unfold(3, 8, 8)                     # (1, C, 4, 4, 8, 8)
    assert torch.equal(blocks, blocks[..., :1, :1].expand_as(blocks))           # constant on 8x8 blocks


@pytest.mark.parametrize("call", [
    lambda: segnets.build_segnet("segformer"),
    lambda: segnets.build_segnet("naive", width=0),
    lambda: segnets.build_segnet("naive")(torch.zeros(1, 1, 30, 32)),
    lambda: segnets.build_segnet("unet-transposed")(torch.zeros(1, 2, 32, 32)),
    lambda: segnets.build_segnet("fcn")(torch.zeros(1, 32, 32)),
    lambda: segnets.SmallUNet(levels=0),
    lambda: segnets.SmallUNet(1, 3, residual=True),
    lambda: segnets.SmallUNet(up="nearest"),
    lambda: segnets.NaiveSegNet(upsample="bicubic"),
])
def test_bad_configurations_and_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


@pytest.mark.parametrize("name", ["naive", "unet-transposed"])
def test_each_network_can_fit_a_tiny_batch(name):
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(4, 24, 24, dtype=torch.long)
    labels[:, 6:18, 4:14] = 1
    labels[:, 8:12, 17:21] = 2
    images = labels.float()[:, None] + 0.1 * torch.randn(4, 1, 24, 24, generator=g)
    model = segnets.build_segnet(name, width=0.125)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        loss = losses.combined_loss(model(images), labels)
        first = first if first is not None else loss.item()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert loss.item() < first / 2
    predicted = segnets.predict_labels(model, images)
    assert predicted.shape == labels.shape and predicted.dtype == torch.int64
    assert model.training                                                       # prediction restores the mode
    assert (predicted == labels).float().mean() > 0.9


def test_unet_widths_replace_the_doubling_of_base():
    by_base = segnets.SmallUNet(base=8, levels=3)
    by_widths = segnets.SmallUNet(widths=[8, 16, 32, 64], levels=3)
    assert segnets.count_parameters(by_base) == segnets.count_parameters(by_widths)
    assert segnets.parameter_count("unet-bilinear", 0.25) == segnets.count_parameters(
        segnets.SmallUNet(base=8, levels=3, up="bilinear"))
    with pytest.raises(segnets.SegNetInputError, match="widths"):
        segnets.SmallUNet(widths=[8, 16], levels=3)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_width_for_parameters_finds_the_nearest_count(name):
    target = segnets.parameter_count("naive", 0.25)
    width, count = segnets.width_for_parameters(name, target)
    assert count == segnets.parameter_count(name, width)
    assert abs(count / target - 1) < 0.05
    # no width in a fine grid around the answer gets closer to the target
    grid = [width * f for f in (0.9, 0.95, 0.98, 1.02, 1.05, 1.1)]
    assert all(abs(segnets.parameter_count(name, w) - target) >= abs(count - target) for w in grid)


def test_parameter_count_leaves_the_global_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    segnets.parameter_count("fcn", 0.3)
    segnets.width_for_parameters("unet-transposed", 20_000)
    assert torch.equal(torch.rand(3), expected)


def test_receptive_field_of_stacked_convolutions():
    one = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1))
    two = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 3, padding=1))
    dilated = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2))
    assert [segnets.receptive_field(m, size=16) for m in (one, two, dilated)] == [3, 5, 5]
    unet = segnets.build_segnet("unet-bilinear", width=0.125)
    assert segnets.receptive_field(unet, size=64) > segnets.receptive_field(two, size=64)


def test_conv3d_parameter_count_grows_each_kernel_by_its_size():
    conv = nn.Conv2d(2, 4, 3)
    assert segnets.conv3d_parameter_count(conv) == 2 * 4 * 27 + 4
    up = nn.ConvTranspose2d(4, 2, 2, stride=2)
    assert segnets.conv3d_parameter_count(up) == 4 * 2 * 8 + 2
    norm = nn.BatchNorm2d(5)
    assert segnets.conv3d_parameter_count(norm) == 10


def test_one_output_channel_is_the_binary_network():
    model = segnets.build_segnet("naive", out_channels=1, width=0.125)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 1, 32, 32)
