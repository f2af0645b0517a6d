"""U-Net-5/7/9 of Qu et al.: block structure, names, widths, shapes, errors, and that it can learn."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from glassbox.models.common import init_model
from glassbox.models.unet import (
    DEPTHS,
    DoubleConv,
    UNet,
    UpBlock,
    channels_of,
    depth_of_name,
    layer_names,
    levels_of,
    unet,
)

EXPECTED_NAMES = {
    5: ["Down1", "Down2", "Bottleneck", "Up1", "Up2"],
    7: ["Down1", "Down2", "Down3", "Bottleneck", "Up1", "Up2", "Up3"],
    9: ["Down1", "Down2", "Down3", "Down4", "Bottleneck", "Up1", "Up2", "Up3", "Up4"],
}


def _outputs_by_name(model: UNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Forward ``x`` and capture each analysed block's output by module name (as glassbox.measure.features will)."""
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = [modules[name].register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
               for name in layer_names(model)]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return captured


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("width", [0.125, 0.25])
def test_shapes_per_block(depth, width):
    model = UNet(depth, width).eval()
    levels = (depth - 1) // 2
    base = round(64 * width)
    x = torch.randn(2, 1, 16, 32)
    with torch.no_grad():
        out = model(x)
        feats = _outputs_by_name(model, x)
    assert out.shape == x.shape
    for i in range(1, levels + 1):  # encoder level i: base * 2**(i-1) channels at 1 / 2**(i-1) resolution
        assert feats[f"Down{i}"].shape == (2, base * 2 ** (i - 1), 16 // 2 ** (i - 1), 32 // 2 ** (i - 1))
    assert feats["Bottleneck"].shape == (2, base * 2**levels, 16 // 2**levels, 32 // 2**levels)
    for j in range(1, levels + 1):  # Up1 is the deepest decoder block, mirroring Down{levels}
        mirror = feats[f"Down{levels + 1 - j}"]
        assert feats[f"Up{j}"].shape == mirror.shape
    assert list(channels_of(model).values()) == [f.shape[1] for f in feats.values()]


@pytest.mark.parametrize("depth", DEPTHS)
def test_module_names_exactly_as_in_the_paper_tables(depth):
    model = UNet(depth, 0.125)
    assert layer_names(model) == EXPECTED_NAMES[depth]
    top_level = {name for name, _ in model.named_children()}
    assert top_level == set(EXPECTED_NAMES[depth]) | {"pool", "head"}
    modules = dict(model.named_modules())
    assert all(name in modules for name in EXPECTED_NAMES[depth])
    absent = {"Down1", "Down2", "Down3", "Down4", "Up1", "Up2", "Up3", "Up4"} - set(EXPECTED_NAMES[depth])
    assert not absent & set(modules)


@pytest.mark.parametrize("depth", DEPTHS)
def test_depth_counts_double_conv_blocks(depth):
    """'U-Net-5/7/9' = number of double-convolution blocks; one transposed conv per decoding level."""
    model = UNet(depth, 0.125)
    assert levels_of(depth) == (depth - 1) // 2
    assert sum(isinstance(m, DoubleConv) for m in model.modules()) == depth
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(ups) == (depth - 1) // 2
    assert all(m.kernel_size == (2, 2) and m.stride == (2, 2) for m in ups)
    assert model.pool.kernel_size == 2 and model.pool.stride == 2


def test_double_conv_is_conv3x3_bn_relu_twice():
    block = DoubleConv(3, 8)
    kinds = [type(m) for m in block]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
    for conv in (block[0], block[3]):
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert block[0].in_channels == 3 and block[3].out_channels == 8


def test_paper_width_channels():
    """width=1: analysed layers span 64..512 channels (the paper's M in [64, 512])."""
    widths = channels_of(UNet(9, 1.0))
    assert widths == {"Down1": 64, "Down2": 128, "Down3": 256, "Down4": 512, "Bottleneck": 1024,
                      "Up1": 512, "Up2": 256, "Up3": 128, "Up4": 64}
    assert channels_of(UNet(5, 0.25))["Down1"] == 16


def test_up_block_concatenates_the_skip():
    block = UpBlock(16, 8)
    assert block.conv[0].in_channels == 16  # 8 from the transposed conv + 8 from the skip
    out = block(torch.randn(1, 16, 4, 4), torch.randn(1, 8, 8, 8))
    assert out.shape == (1, 8, 8, 8)


def test_residual_output_adds_the_input():
    plain = init_model(lambda: UNet(5, 0.125), 3).eval()
    residual = UNet(5, 0.125, residual=True).eval()
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(residual(x) - x, plain(x))
    assert UNet(5, 0.125).residual is False  # the paper is silent; the default is the plain U-Net


@pytest.mark.parametrize("name,depth", [("unet5", 5), ("U-Net-7", 7), ("U9", 9), ("UNet9", 9), ("u_net_5", 5)])
def test_names(name, depth):
    assert depth_of_name(name) == depth
    assert unet(name, 0.125).depth == depth


@pytest.mark.parametrize("name", ["unet6", "resnet", "U-Net-11", "", 5])
def test_bad_name_lists_valid_names(name):
    with pytest.raises(ValueError, match="unet5.*U-Net-9"):
        unet(name, 0.125)


@pytest.mark.parametrize("depth", [3, 6, 11, True, "9"])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"\(5, 7, 9\)"):
        UNet(depth)


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), True])
def test_bad_width(width):
    with pytest.raises(ValueError, match="width"):
        UNet(5, width)


@pytest.mark.parametrize("depth,size,divisor", [(5, 18, 4), (7, 12, 8), (9, 24, 16)])
def test_size_not_divisible_names_size_and_divisor(depth, size, divisor):
    model = UNet(depth, 0.125)
    with pytest.raises(ValueError, match=rf"divisible by {divisor}\b.*{size}x{divisor * 2}"):
        model(torch.zeros(1, 1, size, divisor * 2))


def test_wrong_channels_or_rank():
    model = UNet(5, 0.125)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\).*\(1, 3, 8, 8\)"):
        model(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="residual"):
        UNet(5, residual=True, out_channels=2)


@pytest.mark.parametrize("depth", [5, 9])
def test_overfits_one_tiny_batch(depth):
    """The architecture trains: on one fixed batch the L2 loss falls at least 10x in a few dozen steps."""
    torch_gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 16, 16, generator=torch_gen)
    y = torch.rand(4, 1, 16, 16, generator=torch_gen)
    model = init_model(lambda: UNet(depth, 0.125), 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) <= losses[0] / 10
