"""The video path of the DiT: spacetime patches as tokens (Sora's technical report; Latte, Ma et al. 2024; Open-Sora's
STDiT).

A clip [B, C, T, H, W] is cut into tubelets of ``temporal_patch`` x p x p (a stride-equal Conv3d, i.e. a linear map of
each tubelet), each token gets fixed sin-cos positions for its (frame, row, column), about a third of the channels each,
and the DiT blocks run over the tokens either jointly (every token attends to every token) or divided: even blocks
attend within a frame (spatial), odd blocks across frames at one position (temporal), Latte's variant 1 (Sec. 3.2).
Cross-attention to text, adaLN-Zero and the MLP always see all tokens; only self-attention is grouped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .common import positional_embedding


def spacetime_positions(width: int, frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """[frames * gh * gw, width] sin-cos positions in token order (frame-major, then rows, then columns), about a
    third of the (even) width each."""
    gh, gw = grid
    third = width // 6 * 2
    t, r, c = torch.meshgrid(*(torch.arange(n, dtype=torch.float32, device="cpu") for n in (frames, gh, gw)), indexing="ij")
    return torch.cat([positional_embedding(a.reshape(-1), d) for a, d in ((t, third), (r, third), (c, width - 2 * third))], 1)


def attention_groups(b: int, frames: int, per_frame: int) -> tuple[tuple, tuple]:
    """(spatial, temporal) (split, merge) pairs for DiTBlock: tokens [B, T' * S, W] -> [B * T', S, W] (one frame's
    tokens) or [B * S, T', W] (one position's tokens across frames), and back."""
    def spatial_split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b * frames, per_frame, t.shape[-1])

    def spatial_merge(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, frames * per_frame, t.shape[-1])

    def temporal_split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, frames, per_frame, t.shape[-1]).transpose(1, 2).reshape(b * per_frame, frames, t.shape[-1])

    def temporal_merge(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(b, per_frame, frames, t.shape[-1]).transpose(1, 2).reshape(b, frames * per_frame, t.shape[-1])

    return (spatial_split, spatial_merge), (temporal_split, temporal_merge)


def patchify(x: torch.Tensor, tp: int, p: int) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, T/tp * H/p * W/p, C * tp * p * p]: each token's tubelet values (C, t, y, x order)."""
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t // tp, tp, h // p, p, w // p, p).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(b, (t // tp) * (h // p) * (w // p), c * tp * p * p)


def unpatchify(tokens: torch.Tensor, c: int, t: int, h: int, w: int, tp: int, p: int) -> torch.Tensor:
    """The inverse of ``patchify``: [B, N, C * tp * p * p] -> [B, C, T, H, W]."""
    b = tokens.shape[0]
    x = tokens.reshape(b, t // tp, h // p, w // p, c, tp, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
    return x.reshape(b, c, t, h, w)


def video_forward(net, x: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
    """DiT.forward for clips: x [B, C, T, H, W] -> [B, C_out, T, H, W]. Other frame counts than the trained one
    (divisible by the temporal patch) get positions for their own length."""
    cfg = net.cfg
    p, tp = cfg.patch_size, cfg.temporal_patch
    if x.ndim != 5 or tuple(x.shape[-2:]) != cfg.hw or x.shape[2] % tp:
        raise ValueError(f"this video DiT was built for [B, C, T, {cfg.hw[0]}, {cfg.hw[1]}] clips with T divisible by "
                         f"{tp}, got {tuple(x.shape)}")
    b, _, t, h, w = x.shape
    gt, (gh, gw) = t // tp, cfg.grid
    pos = net.pos if gt * tp == cfg.frames else spacetime_positions(cfg.width, gt, cfg.grid).to(x.device)[None]
    emb = net.noise_mlp(positional_embedding(c_noise, cfg.width))  # [B, W]
    x, emb, ctx = net.condition(x, emb, cond)
    emb = F.silu(emb)
    h_tok = net.patch(x).flatten(2).transpose(1, 2) + pos.to(x.dtype)  # [B, N, W]
    spatial, temporal = attention_groups(b, gt, gh * gw)
    for i, block in enumerate(net.blocks):
        groups = None if cfg.attention == "joint" else (spatial if i % 2 == 0 else temporal)
        h_tok = block(h_tok, emb, ctx, groups)
    return unpatchify(net.head_out(h_tok, emb), cfg.out_channels, t, h, w, tp, p)
