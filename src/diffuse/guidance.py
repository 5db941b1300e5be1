"""Denoiser -> denoiser wrappers for guidance.

Classifier-free guidance (Ho & Salimans 2022, Eq. 6), in the convention used by diffusers and Stable
Diffusion ("guidance scale"):

    D_w(x, sigma, c) = D(x, sigma, null) + w * (D(x, sigma, c) - D(x, sigma, null))

so ``w = 1`` is the plain conditional model (no guidance), ``w = 0`` is the unconditional model and
``w > 1`` extrapolates away from it (sharper, more on-class, less diverse). Ho & Salimans' own ``w``
is ours minus one. The conditional and unconditional passes run as one batched forward.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .cond import Cond
from .precond import Denoiser


def cat_cond(a: Any, b: Any) -> Any:
    """Concatenate two conditioning values along the batch: Conds (cond.py), tensors, or dicts of tensors."""
    if isinstance(a, Cond):
        return a.cat(b)
    if isinstance(a, dict):
        return {k: cat_cond(a[k], b[k]) for k in a}
    return torch.cat([a, b])


def cfg(denoiser: Denoiser, w: float, null_cond: Callable[[Any], Any],
        interval: tuple[float, float] | None = None) -> Denoiser:
    """Classifier-free guidance with strength ``w``; ``null_cond(cond)`` gives the null condition of the same batch.
    ``interval = (lo, hi)`` guides only at noise levels lo < sigma <= hi and leaves the conditional model alone
    elsewhere (Kynkaenniemi et al. 2024, "Applying guidance in a limited interval"; EDM2 uses it)."""

    def guided(x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        if w == 1:
            return denoiser(x, sigma, cond)
        inside = None
        if interval is not None:
            s = sigma.reshape(-1).expand(x.shape[0])  # [B] (one sigma broadcasts)
            inside = (s > interval[0]) & (s <= interval[1])
            if not bool(inside.any()):
                return denoiser(x, sigma, cond)
        null = null_cond(cond)
        if w == 0 and inside is None:
            return denoiser(x, sigma, null)
        d = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), cat_cond(cond, null))  # [2B, ...]
        d_cond, d_null = d.chunk(2)
        if inside is not None:  # per item: w inside the interval, 1 (the conditional model) outside
            w_b = torch.where(inside, w, 1.0).to(d.dtype).view(-1, *[1] * (d.ndim - 1))
            return d_null + w_b * (d_cond - d_null)
        return d_null + w * (d_cond - d_null)

    return guided


def class_null(num_classes: int) -> Callable[[Any], Any]:
    """The null condition of a conditional model: label index ``num_classes``, dropped text (a Cond, or labels)."""
    return lambda c: c.null(num_classes) if isinstance(c, Cond) else torch.full_like(c, num_classes)


def drop_labels(labels: torch.Tensor, p: float, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Label dropout for classifier-free guidance training: each label becomes the null class with probability p."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, num_classes), labels)
