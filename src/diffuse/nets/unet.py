"""A compact ADM-style U-Net: F(x_in, c_noise, labels) -> output of the same shape as x_in.

Ho et al. 2020 (Appendix B) and Dhariwal & Nichol 2021 (ADM, Sec. 3): residual blocks with GroupNorm,
the noise embedding applied as an adaptive scale/shift (AdaGN), self-attention at low resolutions, and
a class embedding with an extra null class for classifier-free guidance. The network knows nothing of
sigma or of the parameterization: that lives in ``precond.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import positional_embedding
from .common import zero_init as _zero
from .head import ConditioningHead


@dataclass
class UNetConfig:
    """Shape of the U-Net. ``attn_resolutions`` lists the spatial sizes (e.g. 7 for 28x28 inputs after two
    downsamplings, 2 for 8x8 inputs after two) whose blocks get self-attention; the middle block always has
    it. ``num_classes = 0`` and ``text_dim = 0`` mean unconditional; ``text_dim > 0`` adds cross-attention to
    text token states wherever there is self-attention, and the pooled text embedding to the noise embedding. ``patch_size = p > 1`` folds p x p pixel patches into channels
    at the input and unfolds them at the output (space-to-depth, as in Hoogeboom et al. 2023, "simple
    diffusion", Sec. 3.2), so every level runs at 1/p^2 of the pixels."""

    image_size: int = 28
    in_channels: int = 1
    out_channels: int = 1
    channels: int = 64
    mults: tuple[int, ...] = (1, 2, 2)
    num_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (7,)
    head_dim: int = 32
    dropout: float = 0.1
    num_classes: int = 0
    groups: int = 8
    patch_size: int = 1
    text_dim: int = 0  # > 0: text-conditional, cross-attending to token states of this width
    lowres_factor: int = 0  # > 0: super-resolution, conditioned on a 1/f-size image by channel concatenation
    image_width: int = 0  # > 0: inputs are image_size x image_width (e.g. 64 mels x 100 frames); 0: square

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the inputs."""
        return self.image_size, self.image_width or self.image_size

    @property
    def inner_size(self) -> int:
        """Height after the patch space-to-depth at the input (attn_resolutions count heights)."""
        return self.image_size // self.patch_size

    def __post_init__(self) -> None:
        self.mults, self.attn_resolutions = tuple(self.mults), tuple(self.attn_resolutions)
        if self.hw[0] % self.patch_size or self.hw[1] % self.patch_size:
            raise ValueError(f"input size {self.hw} is not divisible by patch_size {self.patch_size}")
        for c in [self.channels * m for m in self.mults]:
            if c % self.groups:
                raise ValueError(f"channel count {c} is not divisible by groups={self.groups}")


PRESETS: dict[str, dict] = {
    # tests and the digits quick start
    "tiny": dict(channels=16, mults=(1, 2), num_blocks=1, head_dim=16, dropout=0.0),
    # the 10-minute Fashion-MNIST CPU recipe
    "small": dict(channels=32, mults=(1, 2, 3), num_blocks=2, head_dim=32, dropout=0.1),
    # the 10-minute Fashion-MNIST CPU recipe: 2x2 patches, so the U-Net runs at 14x14 and 7x7
    "fmnist": dict(channels=48, mults=(1, 2), num_blocks=1, head_dim=32, dropout=0.1, patch_size=2),
    # the notes recipe: 64 mels x 100 frames in 4x4 patches, so levels run at 16x25 and 8x13 (attention there);
    # ~100 samples/s training here (2x2 patches at width 64: 17/s)
    "audio": dict(channels=48, mults=(1, 2), num_blocks=1, head_dim=32, dropout=0.0, patch_size=4, attn_resolutions=(8,)),
    "base": dict(channels=64, mults=(1, 2, 2), num_blocks=2, head_dim=32, dropout=0.1),
    "large": dict(channels=128, mults=(1, 2, 2, 2), num_blocks=2, head_dim=64, dropout=0.1),
}


def preset(name: str, **overrides) -> UNetConfig:
    """A UNetConfig from a named width/depth preset, with field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown U-Net preset {name!r}; choose one of {', '.join(PRESETS)}")
    return UNetConfig(**{**PRESETS[name], **overrides})


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, AdaGN from the embedding, dropout, conv; residual (Dhariwal & Nichol 2021, Sec. 3)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, C, H, W]
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)  # [B, C, 1, 1] each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, through scaled_dot_product_attention."""

    def __init__(self, channels: int, head_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)  # [B, 3, nh, d, HW]
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # [B, nh, HW, d] each
        o = F.scaled_dot_product_attention(q, k, v)  # [B, nh, HW, d]
        o = o.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(o)


class CrossAttention(nn.Module):
    """Queries from the H*W positions, keys and values from the text tokens (Rombach et al. 2022, Sec. 3.3);
    padding tokens are masked out."""

    def __init__(self, channels: int, text_dim: int, head_dim: int, groups: int):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(groups, channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.kv = nn.Linear(text_dim, 2 * channels)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W], ctx [B, L, D], mask [B, L] bool (True = attend)."""
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)  # [B, nh, HW, d]
        k, v = self.kv(ctx.to(self.kv.weight.dtype)).reshape(
            b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # [B, nh, L, d] each
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # [B, nh, HW, d]
        return x + self.proj(o.transpose(-1, -2).reshape(b, c, h, w))


class UNet(ConditioningHead):
    """U-Net over [B, C, H, W] inputs, (H, W) = cfg.hw (odd sizes are upsampled to the skip's shape). A non-square
    network (``image_width`` > 0: a time axis) also takes other widths divisible by the patch size (longer or
    shorter clips): every layer is convolutional or attention over all positions."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch, emb_dim, g = cfg.channels, 4 * cfg.channels, cfg.groups
        self.noise_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.init_conditioning(emb_dim, cfg.num_classes, cfg.text_dim, cfg.lowres_factor)
        p = cfg.patch_size
        c_in = cfg.in_channels * (2 if cfg.lowres_factor else 1)  # super-resolution: + the upsampled low-res image
        self.conv_in = nn.Conv2d(c_in * p * p, ch, 3, padding=1)

        # Encoder: at each level num_blocks ResBlocks (+ attention), then a stride-2 conv (not after the last level).
        self.down = nn.ModuleList()
        skips, cur, level_ch = [ch], ch, [ch * m for m in cfg.mults]
        self.level_res = [cfg.inner_size]
        for _ in level_ch[1:]:
            self.level_res.append((self.level_res[-1] + 1) // 2)  # stride-2 conv with padding 1
        for lvl, c_out in enumerate(level_ch):
            for _ in range(cfg.num_blocks):
                self.down.append(self._block(cur, c_out, lvl))
                cur = c_out
                skips.append(cur)
            if lvl < len(level_ch) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb_dim, cfg.dropout, g), Attention(cur, cfg.head_dim, g),
                                  *([CrossAttention(cur, cfg.text_dim, cfg.head_dim, g)] if cfg.text_dim else []),
                                  ResBlock(cur, cur, emb_dim, cfg.dropout, g)])
        # Decoder: num_blocks + 1 ResBlocks per level, each eating one skip, then upsampling.
        self.up = nn.ModuleList()
        for lvl in reversed(range(len(level_ch))):
            for _ in range(cfg.num_blocks + 1):
                self.up.append(self._block(cur + skips.pop(), level_ch[lvl], lvl))
                cur = level_ch[lvl]
            if lvl > 0:
                self.up.append(nn.Conv2d(cur, cur, 3, padding=1))  # applied after nearest upsampling
        self.norm_out = nn.GroupNorm(g, cur)
        self.conv_out = _zero(nn.Conv2d(cur, cfg.out_channels * p * p, 3, padding=1))

    def _block(self, c_in: int, c_out: int, lvl: int) -> nn.ModuleList:
        """A ResBlock, followed by self-attention when this level's resolution is in attn_resolutions."""
        block = nn.ModuleList([ResBlock(c_in, c_out, 4 * self.cfg.channels, self.cfg.dropout, self.cfg.groups)])
        if self.level_res[lvl] in self.cfg.attn_resolutions:
            block.append(Attention(c_out, self.cfg.head_dim, self.cfg.groups))
            if self.cfg.text_dim:
                block.append(CrossAttention(c_out, self.cfg.text_dim, self.cfg.head_dim, self.cfg.groups))
        return block

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        """x [B, C, H, W], c_noise [B], cond: a Cond (cond.py; labels with index num_classes = null, text, low-res)
        or one of its older forms, or None -> [B, C_out, H, W]."""
        if x.shape[-2] != self.cfg.hw[0] or x.shape[-1] % self.cfg.patch_size or (x.shape[-1] != self.cfg.hw[1] and self.cfg.image_width == 0):
            raise ValueError(f"this U-Net was built for {self.cfg.hw[0]}x{self.cfg.hw[1]} inputs, got {tuple(x.shape[-2:])}")
        emb = self.noise_mlp(positional_embedding(c_noise, self.cfg.channels))  # [B, E]
        x, emb, ctx = self.condition(x, emb, cond)
        emb = F.silu(emb)
        if self.cfg.patch_size > 1:
            x = F.pixel_unshuffle(x, self.cfg.patch_size)  # [B, C p^2, S/p, S/p]
        h = self.conv_in(x)
        skips = [h]
        for m in self.down:
            if isinstance(m, nn.ModuleList):
                h = self._run_block(m, h, emb, ctx)
            else:
                h = m(h)
            skips.append(h)
        h = self._run_block(self.mid, h, emb, ctx)
        for m in self.up:
            if isinstance(m, nn.ModuleList):
                h = self._run_block(m, torch.cat([h, skips.pop()], dim=1), emb, ctx)
            else:
                h = m(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.cfg.patch_size) if self.cfg.patch_size > 1 else out

    @staticmethod
    def _run_block(block: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor, ctx: tuple | None = None) -> torch.Tensor:
        for m in block:
            h = m(h, *ctx) if isinstance(m, CrossAttention) else m(h, emb)
        return h

    def config_dict(self) -> dict:
        """The JSON-serialisable config that rebuilds this network."""
        return asdict(self.cfg)
