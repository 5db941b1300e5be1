"""Exponential moving average of weights with its length set in images (Karras et al. 2022, Appendix F.1:
``ema_halflife_kimg`` with a ramp-up ``ema_rampup_ratio``)."""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, nimg: int, halflife_nimg: float, rampup_ratio: float | None = 0.05) -> float:
    """Decay per step so that the average's half-life is ``halflife_nimg`` images (capped at
    ``rampup_ratio * nimg`` early in training, so the average forgets the random init quickly)."""
    if rampup_ratio is not None:
        halflife_nimg = min(halflife_nimg, nimg * rampup_ratio)
    return 0.5 ** (batch_size / max(halflife_nimg, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model, with one foreach call over all parameters."""
    e = [p for p in ema.parameters()]
    m = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(e, m, 1.0 - beta)
