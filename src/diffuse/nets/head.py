"""The conditioning head every network shares: class embedding, pooled text + cross-attention tokens, and the
low-res image of a super-resolution model, all read from one typed ``Cond`` (cond.py).

It is a mixin, so the parameters it adds (``class_emb``, ``text_pool``, ``null_token``, ``null_pooled``) keep the
names they had when each network owned them, and runs saved before it load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cond import Cond
from .common import text_with_null


class ConditioningHead(nn.Module):
    """Call ``init_conditioning`` in ``__init__`` and ``condition`` first thing in ``forward``."""

    def init_conditioning(self, emb_dim: int, num_classes: int, text_dim: int, lowres_factor: int, known: bool = False) -> None:
        """``known``: the network also reads a known part of its item (Cond.known / known_mask: the given frames of a
        video, Open-Sora's frame mask) as 1 + C extra input channels; see ``input_channels``."""
        self._num_classes, self._text, self._lowres, self._known = num_classes, text_dim > 0, lowres_factor > 0, known
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes > 0 else None  # + the null class
        if text_dim > 0:  # the pooled text joins the noise embedding; the learned null text stands in for dropped captions
            self.text_pool = nn.Linear(text_dim, emb_dim)
            self.null_token = nn.Parameter(nn.init.normal_(torch.empty(text_dim), std=0.02))  # nn.init: skipped on meta (model.py)
            self.null_pooled = nn.Parameter(torch.zeros(text_dim))

    @staticmethod
    def input_channels(channels: int, lowres_factor: int, known: bool) -> int:
        """Channels after ``condition``: the item's, + the known mask and part, + the upsampled low-res image."""
        return channels * (2 if lowres_factor else 1) + ((1 + channels) if known else 0)

    def condition(self, x: torch.Tensor, emb: torch.Tensor, cond: Any) -> tuple[torch.Tensor, torch.Tensor, tuple | None]:
        """(x, with the known mask and part [B, 1 + C, ...] and the upsampled low-res image (super-resolution) as extra
        channels;
        emb + class or pooled-text embedding [B, E]; cross-attention context (tokens [B, L, D], mask [B, L]) or None)."""
        c = Cond.of(cond)
        name = type(self).__name__
        if getattr(self, "_known", False):  # given parts as extra channels: mask, then mask * known (zeros: none given)
            if c.known is None:
                m = x.new_zeros(x.shape[0], 1, *x.shape[2:])
                x = torch.cat([x, m, x.new_zeros(x.shape)], 1)
            else:
                m = c.known_mask.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
                x = torch.cat([x, m, m * c.known.to(x.dtype)], 1)
        if self._lowres:
            if c.lowres is None:
                raise ValueError(f"this {name} is a super-resolution model: pass Cond(lowres=images)")
            lr = F.interpolate(c.lowres.to(x.dtype), size=x.shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, lr], 1)
        ctx = None
        if self._text:
            if c.labels is not None:
                raise ValueError(f"this {name} is text-conditional: pass a text condition, not labels")
            tokens, mask, pooled = text_with_null(c.text, self.null_token, self.null_pooled, x.shape[0], x.device)
            emb = emb + self.text_pool(pooled)
            ctx = (tokens, mask)
        if self.class_emb is not None:
            labels = c.labels
            if labels is None:
                labels = torch.full((x.shape[0],), self._num_classes, device=x.device, dtype=torch.long)
            emb = emb + self.class_emb(labels)
        return x, emb, ctx
