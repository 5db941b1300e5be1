"""The typed condition every network, sampler wrapper and trainer passes around.

    Cond(labels=[B] int64 | None, text={"tokens", "mask", "pooled", "drop"} | None, lowres=[B, C, h, w] | None,
         known=[B, C, ...] | None, known_mask=[B, 1, ...] | None)

Class labels (index ``num_classes`` is the null class), a text condition (text/bank.py) and a low-res image
(super-resolution) and known parts of the item (``known`` where ``known_mask`` is 1: a video's given frames, set by
editing's inpainting wrapper) are orthogonal: a network reads the fields it was built for (nets/head.py) and refuses a
condition that lacks one. Older call sites pass a bare label tensor, a text dict or ``{"lowres": x}``;
``Cond.of`` turns each into a Cond, so the network side has one input type.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch


@dataclass
class Cond:
    labels: torch.Tensor | None = None  # [B] int64
    text: dict[str, torch.Tensor] | None = None  # text/bank.py's condition dict, [B, ...] each
    lowres: torch.Tensor | None = None  # [B, C, h, w] in model space
    known: torch.Tensor | None = None  # [B, *shape] model space, clean: the given part of each item (0 elsewhere)
    known_mask: torch.Tensor | None = None  # [B, 1, *shape[1:]]: 1 where ``known`` is given

    @classmethod
    def of(cls, cond: Any) -> "Cond":
        """A Cond from a Cond, None, a label tensor, a text dict or ``{"lowres": x}``."""
        if cond is None:
            return cls()
        if isinstance(cond, Cond):
            return cond
        if isinstance(cond, torch.Tensor):
            return cls(labels=cond)
        if isinstance(cond, dict):
            return cls(lowres=cond["lowres"]) if "lowres" in cond else cls(text=cond)
        raise TypeError(f"not a condition: {type(cond).__name__}")

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Cond":
        text = None if self.text is None else {k: fn(v) for k, v in self.text.items()}
        other = (None if t is None else fn(t) for t in (self.labels, self.lowres, self.known, self.known_mask))
        labels, lowres, known, known_mask = other
        return Cond(labels, text, lowres, known, known_mask)

    def index(self, idx: Any) -> "Cond":
        """Rows ``idx`` of every field."""
        return self._map(lambda t: t[idx])

    def to(self, device: torch.device | str) -> "Cond":
        return self._map(lambda t: t.to(device))

    def cat(self, other: "Cond") -> "Cond":
        """Both batches, self first (classifier-free guidance's one batched forward)."""
        def both(a, b):
            if a is None:
                return None
            if not isinstance(a, dict):
                return torch.cat([a, b])
            # Text from two encodings (a prompt and a negative prompt) may have different token counts: pad the
            # shorter with masked-out tokens, which cross-attention ignores.
            n = max(a["tokens"].shape[1], b["tokens"].shape[1])
            return {k: torch.cat([_pad_tokens(a[k], n), _pad_tokens(b[k], n)]) if k in ("tokens", "mask")
                    else torch.cat([a[k], b[k]]) for k in a}

        return Cond(*(both(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)))

    def null(self, num_classes: int) -> "Cond":
        """The unconditional counterpart: null labels, dropped text, the same low-res image and known part (not guided)."""
        labels = None if self.labels is None else torch.full_like(self.labels, num_classes)
        text = None if self.text is None else {**self.text, "drop": torch.ones_like(self.text["drop"])}
        return Cond(labels, text, self.lowres, self.known, self.known_mask)

    def __len__(self) -> int:
        for t in (self.labels, self.lowres, self.known, None if self.text is None else self.text["drop"]):
            if t is not None:
                return len(t)
        return 0


def _pad_tokens(t: torch.Tensor, n: int) -> torch.Tensor:
    """[B, L, ...] -> [B, n, ...] with zeros (False for a mask) appended along the token axis."""
    return t if t.shape[1] == n else torch.cat([t, t.new_zeros((t.shape[0], n - t.shape[1], *t.shape[2:]))], 1)
