"""A bank of encoded captions, so training never runs the text encoder per step.

Every distinct training caption is encoded once (and cached on disk by encoder and content hash). A text
condition is a dict of tensors that ``guidance.cat_cond`` can batch:

    {"tokens": [B, L, D], "mask": [B, L] bool, "pooled": [B, D], "drop": [B] bool}

``drop`` marks the null text: the network swaps in its learned null embedding there (caption dropout in
training, the unconditional half of classifier-free guidance in sampling).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from ..checkpoint import load_tensors, save_tensors
from ..cond import Cond

TextCond = dict[str, torch.Tensor]


def text_null(cond: TextCond) -> TextCond:
    """The null condition for a batch of text conditions (same shapes, every row dropped)."""
    return {**cond, "drop": torch.ones_like(cond["drop"])}


def augment(cond: TextCond, scale: float, generator: torch.Generator | None = None) -> TextCond:
    """Conditioning augmentation for training (after Zhang et al. 2017, "StackGAN", Sec. 3.1): jitter the text
    embedding so that the model sees a neighbourhood of each caption, not a point, and maps unseen wordings near
    it smoothly. The pooled (unit) embedding gets isotropic noise of expected norm ``scale`` and is renormalised;
    token states get noise of ``scale`` times their RMS. ``scale = 0`` is off."""
    if scale <= 0:
        return cond
    pooled, tokens = cond["pooled"], cond["tokens"]
    d = pooled.shape[-1]
    noisy = pooled + scale / d**0.5 * torch.randn(pooled.shape, generator=generator)
    rms = tokens.pow(2).mean(-1, keepdim=True).sqrt()  # [B, L, 1]
    tok = tokens + scale * rms * torch.randn(tokens.shape, generator=generator)
    return {**cond, "pooled": torch.nn.functional.normalize(noisy, dim=-1), "tokens": tok}


class TextRows:
    """The text condition of n samples without n rows of token states in memory: row i is ``table``'s row
    ``ids[i]`` (a few distinct prompts shared by many samples). Rows are gathered per batch by ``index_cond``."""

    def __init__(self, table: TextCond, ids: torch.Tensor):
        self.table, self.ids = table, ids  # table: [P, ...] per prompt; ids: [n] into it

    def __len__(self) -> int:
        return len(self.ids)

    def shard(self, lo: int, hi: int) -> "TextRows":
        """Samples lo .. hi - 1, still lazy."""
        return TextRows(self.table, self.ids[lo:hi])

    def rows(self, idx: Any) -> TextCond:
        """The condition dict of samples ``idx`` (gathered now)."""
        ids = self.ids[idx]
        return {k: v[ids] for k, v in self.table.items()}


def index_cond(cond: Any, idx: Any) -> Any:
    """cond[idx] for a Cond, a tensor, a text-condition dict, TextRows (gathered into a dict) or None."""
    if cond is None:
        return None
    if isinstance(cond, Cond):
        return cond.index(idx)
    if isinstance(cond, TextRows):
        return cond.rows(idx)
    if isinstance(cond, dict):
        return {k: v[idx] for k, v in cond.items()}
    return cond[idx]


def cond_to(cond: Any, device: torch.device | str) -> Any:
    """The condition on ``device`` (TextRows are gathered first)."""
    if cond is None:
        return None
    if isinstance(cond, TextRows):
        cond = cond.rows(slice(None))
    if isinstance(cond, dict):
        return {k: v.to(device) for k, v in cond.items()}
    return cond.to(device)


class CaptionBank:
    """texts [N] with tokens [N, L, D], mask [N, L], pooled [N, D] from one encoder."""

    def __init__(self, texts: list[str], tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor, encoder: str):
        self.texts, self.tokens, self.mask, self.pooled, self.encoder = texts, tokens, mask, pooled, encoder

    @classmethod
    def build(cls, texts: list[str], encoder: str = "minilm", cache: bool = True) -> "CaptionBank":
        from ..cache import cache_dir
        from .encoder import get_encoder

        texts = list(dict.fromkeys(texts))
        path = cache_dir() / "text" / f"{encoder}-{cls.key(texts, encoder)}.safetensors"
        if cache and path.is_file():
            t, _ = load_tensors(path, "cached caption embeddings")
            return cls(texts, t["tokens"].float(), t["mask"].bool(), t["pooled"].float(), encoder)
        tokens, mask, pooled = get_encoder(encoder).encode(texts)
        if cache:
            save_tensors(path, {"tokens": tokens.half(), "mask": mask.to(torch.uint8), "pooled": pooled}, {"n": len(texts)})
            tokens = tokens.half().float()  # what a cached load gives, so a first and a later run train identically
        return cls(texts, tokens, mask, pooled, encoder)

    @staticmethod
    def key(texts: list[str], encoder: str) -> str:
        """Content key of an encoded caption set (its cache file name)."""
        return hashlib.sha256(json.dumps([encoder, list(dict.fromkeys(texts))]).encode()).hexdigest()[:16]

    def save(self, path: Any) -> None:
        """Write the bank (tokens in half precision, as the cache holds them) with its content key."""
        save_tensors(path, {"tokens": self.tokens.half(), "mask": self.mask.to(torch.uint8), "pooled": self.pooled},
                     {"n": len(self.texts), "key": self.key(self.texts, self.encoder)})

    @classmethod
    def load(cls, path: Any, texts: list[str], encoder: str) -> "CaptionBank | None":
        """The bank ``save`` wrote for exactly these texts and encoder, or None (missing, unreadable or another set)."""
        from ..errors import UserError

        texts = list(dict.fromkeys(texts))
        try:
            t, meta = load_tensors(path, "caption embeddings")
            if meta.get("key") != cls.key(texts, encoder) or len(t["pooled"]) != len(texts):
                return None
            return cls(texts, t["tokens"].float(), t["mask"].bool(), t["pooled"].float(), encoder)
        except (UserError, KeyError):
            return None

    def __len__(self) -> int:
        return len(self.texts)

    def cond(self, ids: torch.Tensor, drop: torch.Tensor | None = None) -> TextCond:
        """The text condition of bank entries ``ids`` [B]; ``drop`` [B] bool marks null texts."""
        if drop is None:
            drop = torch.zeros(len(ids), dtype=torch.bool)
        return {"tokens": self.tokens[ids], "mask": self.mask[ids], "pooled": self.pooled[ids], "drop": drop}

    def index(self, texts: list[str]) -> torch.Tensor:
        """Bank ids of texts (each must be in the bank)."""
        pos = {t: i for i, t in enumerate(self.texts)}
        return torch.tensor([pos[t] for t in texts])


class CaptionChoices:
    """For each group (a class, or an image) the bank ids of its captions; ``sample`` picks one uniformly per item."""

    def __init__(self, groups: list[list[int]]):
        k = max(len(g) for g in groups)
        self.counts = torch.tensor([len(g) for g in groups])  # [G]
        self.ids = torch.tensor([g + [g[0]] * (k - len(g)) for g in groups])  # [G, K], padded with a valid id

    def sample(self, group: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """group [B] -> bank ids [B]."""
        j = (torch.rand(len(group), generator=generator) * self.counts[group]).long()
        return self.ids[group, j]


def training_text(ds: Any, cfg: Any) -> tuple[CaptionBank, CaptionChoices, torch.Tensor]:
    """(bank, choices, group of each image) for a text model: captions from the class names of a labelled
    dataset, or per image from ``cfg.captions`` (image folders)."""
    from ..errors import UserError
    from .captions import captions_of_classes, class_captions, read_captions_file

    if cfg.captions:
        if ds.files is None:
            raise UserError("--captions needs an image-folder dataset (its rows name files relative to the folder)")
        per_image = read_captions_file(cfg.captions, ds.files)
        bank = CaptionBank.build([t for caps in per_image for t in caps], cfg.text_encoder)
        return bank, CaptionChoices([bank.index(c).tolist() for c in per_image]), torch.arange(len(ds))
    if getattr(ds, "captions", None) is not None:  # captions per group of items (e.g. the notes' family, pitch, dynamics)
        groups, group = ds.captions
        bank = CaptionBank.build([t for caps in groups for t in caps], cfg.text_encoder)
        return bank, CaptionChoices([bank.index(c).tolist() for c in groups]), group
    per_class = [class_captions(n) for n in ds.class_names]
    bank = CaptionBank.build(captions_of_classes(ds.class_names), cfg.text_encoder)
    return bank, CaptionChoices([bank.index(c).tolist() for c in per_class]), ds.labels
