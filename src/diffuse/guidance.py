"""Denoiser -> denoiser wrappers for guidance.

Classifier-free guidance (Ho & Salimans 2022, Eq. 6), in the convention used by diffusers and Stable
Diffusion ("guidance scale"):

    D_w(x, sigma, c) = D(x, sigma, null) + w * (D(x, sigma, c) - D(x, sigma, null))

so ``w = 1`` is the plain conditional model (no guidance), ``w = 0`` is the unconditional model and
``w > 1`` extrapolates away from it (sharper, more on-class, less diverse). Ho & Salimans' own ``w``
is ours minus one. The conditional and unconditional passes run as one batched forward.

Adaptive projected guidance (``Projection``; Sadat, Hilliges & Weber 2024, "Eliminating oversaturation and artifacts
of high guidance scales in diffusion models", Alg. 1) rewrites the same update on the denoised prediction, which is
what our denoisers return:

    D_w = D(c) + (w - 1) * (Delta_perp + eta * Delta_par),   Delta = D(c) - D(null)

where Delta_par is Delta's part along D(c) (mostly a change of scale: oversaturation at high w) and Delta_perp the
rest. ``eta = 1`` with no rescale and no momentum is plain CFG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Projection:
    """Adaptive projected guidance's settings (module docstring). ``eta``: the weight of the update's part along
    D(c) (0 drops it, the paper's choice; 1 keeps it, as CFG does). ``rescale`` r > 0: the update's norm, per item, is
    capped at r before the split (0: no cap). ``momentum`` beta: the update becomes Delta_t + beta * (the previous
    step's), a running sum that a negative beta turns against the last step's push (0: none); it restarts when sigma
    rises (a new pass), and a two-evaluation sampler (heun) feeds it both evaluations of a step."""
    eta: float = 0.0
    rescale: float = 0.0
    momentum: float = 0.0

    def check(self) -> "Projection":
        if not all(math.isfinite(v) for v in (self.eta, self.rescale, self.momentum)) or self.rescale < 0 \
                or not -1 < self.momentum <= 0:
            raise ValueError(f"APG wants finite ETA, RESCALE >= 0 and -1 < MOMENTUM <= 0, got {self.eta:g},"
                             f"{self.rescale:g},{self.momentum:g}")
        return self


def projected_update(delta: torch.Tensor, d_cond: torch.Tensor, p: Projection) -> torch.Tensor:
    """APG's update from the guidance difference ``delta`` (momentum already applied) and the conditional
    prediction, per item [B, ...]: capped at norm ``p.rescale``, then its part along ``d_cond`` weighted by ``p.eta``."""
    flat = delta.flatten(1).float()  # (float32, not float64: MPS has no float64)
    if p.rescale > 0:
        flat = flat * (p.rescale / flat.norm(dim=1, keepdim=True).clamp_min(1e-30)).clamp(max=1.0)
    u = torch.nn.functional.normalize(d_cond.flatten(1).float(), dim=1)
    par = (flat * u).sum(dim=1, keepdim=True) * u
    return (flat - par + p.eta * par).to(delta.dtype).view_as(delta)


def cfg(denoiser: Denoiser, w: float, null_cond: Callable[[Any], Any],
        interval: tuple[float, float] | None = None, apg: Projection | None = None) -> Denoiser:
    """Classifier-free guidance with strength ``w``; ``null_cond(cond)`` gives the null condition of the same batch.
    ``interval = (lo, hi)`` guides only at noise levels lo < sigma <= hi and leaves the conditional model alone
    elsewhere (Kynkaenniemi et al. 2024, "Applying guidance in a limited interval"; EDM2 uses it). ``apg``: adaptive
    projected guidance in place of the plain update (``Projection``); the wrapper then keeps its momentum between
    calls, so make one per sampling pass."""
    state: dict[str, Any] = {"sigma": None, "avg": None}

    def apg_update(d_cond: torch.Tensor, d_null: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        delta = d_cond - d_null
        if apg.momentum:  # (no state otherwise, and no host sync for sigma)
            s = float(sigma.reshape(-1).max())
            restart = state["avg"] is None or s > state["sigma"] or state["avg"].shape != delta.shape
            delta = delta if restart else delta + apg.momentum * state["avg"]
            state["avg"], state["sigma"] = delta, s
        return projected_update(delta, d_cond, apg)

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
        w_b = w if inside is None else torch.where(inside, w, 1.0).to(d.dtype).view(-1, *[1] * (d.ndim - 1))
        if apg is not None:
            return d_cond + (w_b - 1) * apg_update(d_cond, d_null, sigma)
        return d_null + w_b * (d_cond - d_null)  # per item with an interval: w inside it, 1 (the conditional model) outside

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
