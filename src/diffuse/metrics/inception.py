"""The Inception-v3 network of the original TensorFlow FID code, for users who hold its weights locally.

The layer names and shapes follow pytorch-fid's ``pt_inception-2015-12-05`` state dict (the TF FID graph
ported to PyTorch): torchvision's Inception-v3 layout with 1008 classes, no auxiliary head, average pools
that exclude padding, and a max pool in the last block's pool branch. Nothing is downloaded; load the file with
``load_inception(path)`` (a ``.safetensors`` file, or the ``.pth`` read with ``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects). Features are the 2048-d global average pool.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

FEATURE_DIM = 2048
WHERE = ("pass --inception-weights FILE: pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or a .safetensors "
         "copy of it); nothing is downloaded at run time")


class Conv(nn.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU, named as in the weight file (``conv``, ``bn``)."""

    def __init__(self, i: int, o: int, k, s=1, p=0):
        super().__init__()
        self.conv = nn.Conv2d(i, o, k, s, p, bias=False)
        self.bn = nn.BatchNorm2d(o, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class BlockA(nn.Module):
    def __init__(self, i: int, pool: int):
        super().__init__()
        self.branch1x1 = Conv(i, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = Conv(i, 48, 1), Conv(48, 64, 5, p=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = Conv(i, 64, 1), Conv(64, 96, 3, p=1), Conv(96, 96, 3, p=1)
        self.branch_pool = Conv(i, pool, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))), self.branch_pool(_avg(x))], 1)


class BlockB(nn.Module):
    def __init__(self, i: int):
        super().__init__()
        self.branch3x3 = Conv(i, 384, 3, s=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3 = Conv(i, 64, 1), Conv(64, 96, 3, p=1), Conv(96, 96, 3, s=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, 2)], 1)


class BlockC(nn.Module):
    def __init__(self, i: int, c7: int):
        super().__init__()
        row, col = dict(k=(1, 7), p=(0, 3)), dict(k=(7, 1), p=(3, 0))
        self.branch1x1 = Conv(i, 192, 1)
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = Conv(i, c7, 1), Conv(c7, c7, **row), Conv(c7, 192, **col)
        self.branch7x7dbl_1 = Conv(i, c7, 1)
        self.branch7x7dbl_2, self.branch7x7dbl_3 = Conv(c7, c7, **col), Conv(c7, c7, **row)
        self.branch7x7dbl_4, self.branch7x7dbl_5 = Conv(c7, c7, **col), Conv(c7, 192, **row)
        self.branch_pool = Conv(i, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg(x))], 1)


class BlockD(nn.Module):
    def __init__(self, i: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = Conv(i, 192, 1), Conv(192, 320, 3, s=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = Conv(i, 192, 1), Conv(192, 192, (1, 7), p=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = Conv(192, 192, (7, 1), p=(3, 0)), Conv(192, 192, 3, s=2)

    def forward(self, x):
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, 2)], 1)


class BlockE(nn.Module):
    def __init__(self, i: int, max_pool: bool):
        super().__init__()
        row, col = dict(k=(1, 3), p=(0, 1)), dict(k=(3, 1), p=(1, 0))
        self.max_pool = max_pool
        self.branch1x1 = Conv(i, 320, 1)
        self.branch3x3_1, self.branch3x3_2a, self.branch3x3_2b = Conv(i, 384, 1), Conv(384, 384, **row), Conv(384, 384, **col)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = Conv(i, 448, 1), Conv(448, 384, 3, p=1)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = Conv(384, 384, **row), Conv(384, 384, **col)
        self.branch_pool = Conv(i, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class FIDInception(nn.Module):
    """uint8 images [N, C, H, W] (C = 1 or 3) -> 2048-d pool features, resized bilinearly to 299x299."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3 = Conv(3, 32, 3, s=2), Conv(32, 32, 3), Conv(32, 64, 3, p=1)
        self.Conv2d_3b_1x1, self.Conv2d_4a_3x3 = Conv(64, 80, 1), Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = BlockC(768, 128), BlockC(768, 160), BlockC(768, 160), BlockC(768, 192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b, self.Mixed_7c = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 127.5 - 1  # the TF graph's input scaling, [0, 255] -> [-1, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return x.mean((2, 3))  # [N, 2048]


def load_inception(path: str | Path | None) -> FIDInception:
    """The FID Inception network with the weights at ``path``; one clear error if absent or not that network."""
    if path is None:
        raise UserError(f"--features inception needs local weights: {WHERE}")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Inception weights not found at {path}: {WHERE}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle holding more than tensors
        raise UserError(f"cannot read Inception weights {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(sd, dict):
        raise UserError(f"{path} does not hold a state dict")
    net = FIDInception()
    own = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own and not k.endswith("num_batches_tracked")]
    bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or bad:
        raise UserError(f"{path} is not the FID Inception-v3 (pt_inception) state dict: {len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(bad)} mis-shaped tensors")
    net.load_state_dict({k: sd[k] for k in own}, strict=False)
    return net.eval()


@torch.no_grad()
def inception_features(net: FIDInception, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float64 [N, 2048]."""
    return torch.cat([net(images[i : i + batch_size]).double() for i in range(0, len(images), batch_size)])
