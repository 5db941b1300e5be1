"""The U-Net at 8x8 and 28x28, conditional and not, with patches; shapes and the zero-init skip path."""

import pytest
import torch

from diffuse.nets import PRESETS, UNet, preset
from diffuse.precond import Precond, PrecondConfig


@pytest.mark.parametrize("size,attn", [(8, (4,)), (28, (7,))])
@pytest.mark.parametrize("num_classes", [0, 10])
@pytest.mark.parametrize("patch", [1, 2])
def test_shapes(size, attn, num_classes, patch):
    net = UNet(preset("tiny", image_size=size, num_classes=num_classes, attn_resolutions=attn, patch_size=patch, in_channels=3, out_channels=3))
    x = torch.randn(3, 3, size, size)
    labels = torch.tensor([0, 5, 10]) if num_classes else None
    y = net(x, torch.randn(3), labels)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert any(type(m).__name__ == "Attention" for m in net.modules())


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build(name):
    net = UNet(preset(name, image_size=28, num_classes=10, attn_resolutions=(7,)))
    assert net(torch.randn(1, 1, 28, 28), torch.zeros(1), torch.tensor([3])).shape == (1, 1, 28, 28)


def test_zero_init_gives_skip_path_and_learns_from_labels():
    net = UNet(preset("tiny", image_size=8, num_classes=3))
    d = Precond(net, PrecondConfig(param="edm"))
    x, sigma = torch.randn(4, 1, 8, 8), torch.full((4,), 2.0)
    torch.testing.assert_close(d(x, sigma), x * 0.25 / (4 + 0.25))  # c_skip x exactly, F = 0 at init
    for prm in net.parameters():  # leave the zero init, so that every path carries signal
        torch.nn.init.normal_(prm, std=0.1)
    a = net(x, sigma.log() / 4, torch.tensor([0, 0, 0, 0]))
    b = net(x, sigma.log() / 4, torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(a, b)  # the class embedding reaches the output


def test_wrong_size_and_bad_config():
    net = UNet(preset("tiny", image_size=8))
    with pytest.raises(ValueError, match="8x8"):
        net(torch.randn(1, 1, 16, 16), torch.zeros(1))
    with pytest.raises(ValueError, match="preset"):
        preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        preset("tiny", image_size=9, patch_size=2)


def test_bf16_channels_last_forward_backward():
    net = UNet(preset("tiny", image_size=8, num_classes=2)).to(memory_format=torch.channels_last)
    x = torch.randn(2, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = net(x, torch.zeros(2), torch.tensor([0, 1]))
    y.float().sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
