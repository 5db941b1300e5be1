"""Pieces every raw network shares: the sinusoidal noise embedding, zero initialisation, and the learned
null text that stands in for dropped captions (classifier-free guidance)."""

from __future__ import annotations

import math

import torch
from torch import nn


def positional_embedding(c: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (Vaswani et al. 2017, Sec. 3.5) of a scalar per example: [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c.device, dtype=torch.float32) / half)  # [half]
    args = c.float()[:, None] * freqs[None]  # [B, half]
    return torch.cat([args.cos(), args.sin()], dim=1)


def zero_init(m: nn.Module) -> nn.Module:
    """Set every parameter of m to zero (output layers of residual branches start as the identity)."""
    for p in m.parameters():
        nn.init.zeros_(p)
    m.zero_initialised = True  # read by later init passes (a flag, not a look at the values: works on the meta device)
    return m


def text_with_null(cond: dict | None, null_token: torch.Tensor, null_pooled: torch.Tensor, b: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens [B, L, D], mask [B, L], pooled [B, D]) of a text condition (text/bank.py), with dropped rows
    (``drop``) or no condition at all replaced by the learned null text: one token, ``null_token``, and
    ``null_pooled``."""
    if cond is None:
        d = null_token.shape[0]
        cond = {"tokens": torch.zeros(b, 1, d, device=device), "mask": torch.ones(b, 1, dtype=torch.bool, device=device),
                "pooled": torch.zeros(b, d, device=device), "drop": torch.ones(b, dtype=torch.bool, device=device)}
    drop = cond["drop"][:, None]  # [B, 1]
    tokens = torch.where(drop[..., None], null_token.to(cond["tokens"].dtype), cond["tokens"])
    first = torch.zeros_like(cond["mask"])
    first[:, 0] = True
    mask = torch.where(drop, first, cond["mask"])  # the null text: one learned token
    pooled = torch.where(drop, null_pooled.to(cond["pooled"].dtype), cond["pooled"])
    return tokens, mask, pooled
