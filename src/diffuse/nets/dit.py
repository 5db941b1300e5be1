"""Diffusion Transformer: F(x_in, c_noise, cond) over image patches (Peebles & Xie 2023, "Scalable Diffusion
Models with Transformers").

Patchify (a stride-p convolution, i.e. a linear map of each p x p patch) plus fixed 2-D sin-cos positions,
``depth`` transformer blocks with adaLN-Zero conditioning (Sec. 3.2: the block's LayerNorm shift/scale and a
residual gate per branch are regressed from the conditioning vector; the regressor starts at zero so every block
starts as the identity), a final adaLN + linear layer (zero-initialised) and unpatchify. The conditioning vector
is the noise embedding plus the class embedding (an extra null class for classifier-free guidance) or the pooled
text embedding. Text models also cross-attend to the encoder's token states in every block (Chen et al. 2023,
PixArt-alpha, Sec. 2.3), with padding masked. Like the U-Net, it knows nothing of sigma or parameterization.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import positional_embedding, zero_init
from .head import ConditioningHead
from .spacetime import spacetime_positions, video_forward


@dataclass
class DiTConfig:
    """Shape of the DiT. Tokens: (image_size / patch_size)^2. ``num_classes`` and ``text_dim`` as in UNetConfig;
    ``lowres_factor > 0`` makes a super-resolution model (the upsampled low-res image joins the input channels)."""

    image_size: int = 28
    in_channels: int = 1
    out_channels: int = 1
    patch_size: int = 2
    width: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    num_classes: int = 0
    text_dim: int = 0
    lowres_factor: int = 0
    image_width: int = 0  # > 0: inputs are image_size x image_width (e.g. 64 mels x 100 frames); 0: square
    # video (nets/spacetime.py): frames > 0 makes inputs [B, C, frames, H, W], cut into temporal_patch x p x p tubelets;
    # attention "joint" (every token attends to every token) or "divided" (blocks alternate spatial and temporal)
    frames: int = 0
    temporal_patch: int = 1
    attention: str = "joint"
    known_frames: bool = False  # reads given frames (Cond.known, Open-Sora's frame mask): image-to-video, continuation

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the inputs."""
        return self.image_size, self.image_width or self.image_size

    @property
    def grid(self) -> tuple[int, int]:
        """Token rows and columns."""
        return self.hw[0] // self.patch_size, self.hw[1] // self.patch_size

    def __post_init__(self) -> None:
        if self.hw[0] % self.patch_size or self.hw[1] % self.patch_size:
            raise ValueError(f"input size {self.hw} is not divisible by the DiT patch_size {self.patch_size}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"DiT width {self.width} must split into {self.heads} heads of even size")
        if self.width % 4:
            raise ValueError(f"DiT width {self.width} must be divisible by 4 (2-D sin-cos positions)")
        if self.frames % self.temporal_patch or self.temporal_patch < 1 or self.attention not in ("joint", "divided"):
            raise ValueError(f"DiT frames {self.frames} must divide by temporal_patch {self.temporal_patch}, and attention "
                             f"must be joint or divided (got {self.attention!r})")

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1]


DIT_PRESETS: dict[str, dict] = {
    # tests and the digits quick start (8x8 images -> 16 tokens)
    "tiny": dict(width=64, depth=2, heads=2, patch_size=2),
    # the 10-minute Fashion-MNIST CPU budget (benchmarks/dit_vs_unet.py): 4x4 patches (49 tokens) give 0.26 GFLOP per
    # sample and ~160 img/s training here, matched to the U-Net preset fmnist (0.22, ~180); 2x2 patches at width 192
    # ran 38 img/s
    "fmnist": dict(width=192, depth=6, heads=3, patch_size=4),
    # the notes recipe: 64 mels x 100 frames in 4x4 patches, 400 tokens
    "audio": dict(width=192, depth=6, heads=3, patch_size=4),
    # moving Fashion-MNIST: 8 frames of 32x32 in 4x4x4 tubelets, 128 tokens (benchmarks/video_recipe.py; 2-frame
    # tubelets halve the clips a second, README "Video")
    "video": dict(width=192, depth=6, heads=3, patch_size=4, temporal_patch=4, attention="joint"),
    # the paper's DiT-S and DiT-B (Table 1) with 2x2 patches
    "S": dict(width=384, depth=12, heads=6, patch_size=2),
    "B": dict(width=768, depth=12, heads=12, patch_size=2),
}


def dit_preset(name: str, **overrides) -> DiTConfig:
    """A DiTConfig from a named preset, with field overrides."""
    if name not in DIT_PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; choose one of {', '.join(DIT_PRESETS)}")
    return DiTConfig(**{**DIT_PRESETS[name], **overrides})


def sincos_2d(width: int, grid: int | tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding [gh * gw, width]: half the channels encode the row, half the column."""
    gh, gw = (grid, grid) if isinstance(grid, int) else grid
    # on the CPU even while the network is built on meta: a few KB, and meta math would import torch._dynamo (model.py)
    rows, cols = torch.meshgrid(*(torch.arange(n, dtype=torch.float32, device="cpu") for n in (gh, gw)), indexing="ij")
    return torch.cat([positional_embedding(rows.reshape(-1), width // 2), positional_embedding(cols.reshape(-1), width // 2)], 1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x [B, N, W] with shift/scale [B, 1, W]."""
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """Self-attention and MLP branches, each LayerNorm -> adaLN modulation -> branch -> gate -> residual; optional
    cross-attention to text tokens between them."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float, text_dim: int = 0):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout), nn.Linear(hidden, width))
        self.ada = zero_init(nn.Linear(width, 6 * width))  # adaLN-Zero: every block starts as the identity
        if text_dim:
            self.norm_x = nn.LayerNorm(width, eps=1e-6)
            self.q_x = nn.Linear(width, width)
            self.kv_x = nn.Linear(text_dim, 2 * width)
            self.proj_x = zero_init(nn.Linear(width, width))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, w = t.shape
        return t.reshape(b, n, self.heads, w // self.heads).transpose(1, 2)  # [B, nh, N, d]

    def forward(self, x: torch.Tensor, c: torch.Tensor, ctx: tuple[torch.Tensor, torch.Tensor] | None = None,
                groups: tuple | None = None) -> torch.Tensor:
        """x [B, N, W] tokens, c [B, W] (already through SiLU), ctx (text tokens [B, L, D], mask [B, L]) or None;
        ``groups`` = (split, merge): self-attention runs within the groups split makes ([B, N, W] -> [B', n', W]),
        e.g. the tokens of one frame (nets/spacetime.py); None: over all N tokens."""
        b, n, w = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)  # [B, 1, W] each
        q, k, v = self.qkv(modulate(self.norm1(x), shift1, scale1)).chunk(3, dim=-1)  # [B, N, W] each
        split, merge = groups or (lambda t: t, lambda t: t)
        q, k, v = split(q), split(k), split(v)
        o = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))  # [B', nh, n', d]
        x = x + gate1 * self.proj(merge(o.transpose(1, 2).reshape(q.shape)))
        if ctx is not None:
            tokens, mask = ctx
            kx, vx = self.kv_x(tokens.to(self.kv_x.weight.dtype)).chunk(2, dim=-1)  # [B, L, W] each
            o = F.scaled_dot_product_attention(self._heads(self.q_x(self.norm_x(x))), self._heads(kx), self._heads(vx),
                                               attn_mask=mask[:, None, None, :])  # [B, nh, N, d]
            x = x + self.proj_x(o.transpose(1, 2).reshape(b, n, w))
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(ConditioningHead):
    """DiT over [B, C, H, W] inputs, (H, W) = cfg.hw; a non-square one (``image_width`` > 0: a time axis) also takes
    other widths divisible by the patch size, with sin-cos positions for that grid."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        w, p = cfg.width, cfg.patch_size
        c_in = self.input_channels(cfg.in_channels, cfg.lowres_factor, cfg.known_frames)
        tp = cfg.temporal_patch
        self.patch = nn.Conv3d(c_in, w, (tp, p, p), stride=(tp, p, p)) if cfg.frames else nn.Conv2d(c_in, w, p, stride=p)
        pos = spacetime_positions(w, cfg.frames // tp, cfg.grid) if cfg.frames else sincos_2d(w, cfg.grid)
        self.register_buffer("pos", pos[None], persistent=False)  # [1, N, W]
        self.noise_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.init_conditioning(w, cfg.num_classes, cfg.text_dim, cfg.lowres_factor, cfg.known_frames)
        self.blocks = nn.ModuleList([DiTBlock(w, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.text_dim) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = zero_init(nn.Linear(w, 2 * w))
        self.out = zero_init(nn.Linear(w, (tp if cfg.frames else 1) * p * p * cfg.out_channels))
        for m in self.modules():  # DiT's init: Xavier-uniform linears (the zero-initialised ones stay zero)
            if isinstance(m, nn.Linear) and not getattr(m, "zero_initialised", False):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        """x [B, C, H, W], c_noise [B], cond: a Cond (cond.py) or one of its older forms, or None -> [B, C_out, H, W].
        A video DiT (``frames`` > 0) takes and returns [B, C, T, H, W]."""
        if self.cfg.frames:
            return video_forward(self, x, c_noise, cond)
        p = self.cfg.patch_size
        if x.shape[-2] != self.cfg.hw[0] or x.shape[-1] % p or (x.shape[-1] != self.cfg.hw[1] and self.cfg.image_width == 0):
            raise ValueError(f"this DiT was built for {self.cfg.hw[0]}x{self.cfg.hw[1]} inputs, got {tuple(x.shape[-2:])}")
        gh, gw = x.shape[-2] // p, x.shape[-1] // p
        pos = self.pos if (gh, gw) == self.cfg.grid else sincos_2d(self.cfg.width, (gh, gw)).to(x.device)[None]
        c = self.noise_mlp(positional_embedding(c_noise, self.cfg.width))  # [B, W]
        x, c, ctx = self.condition(x, c, cond)
        c = F.silu(c)
        h = self.patch(x).flatten(2).transpose(1, 2) + pos.to(x.dtype)  # [B, N, W]
        for block in self.blocks:
            h = block(h, c, ctx)
        h = self.head_out(h, c)  # [B, N, p*p*C]
        h = h.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)  # [B, C p^2, H/p, W/p] (channel-major, as pixel_shuffle reads)
        return F.pixel_shuffle(h, self.cfg.patch_size)  # [B, C, H, W]

    def head_out(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The final adaLN and linear layer: tokens [B, N, W] -> [B, N, patch values]."""
        shift, scale = self.ada_out(c)[:, None].chunk(2, dim=-1)  # [B, 1, W] each
        return self.out(modulate(self.norm_out(h), shift, scale))

    def config_dict(self) -> dict:
        """The JSON-serialisable config that rebuilds this network."""
        return asdict(self.cfg)
