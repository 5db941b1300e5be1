"""Nearest-caption conditioning: condition on the training caption nearest to a prompt, not on the prompt itself.

A text model only ever saw its training captions. A prompt in other words ("a warm parka") lands far from all of
them in the encoder's space: on Fashion-MNIST the nearest training caption of a held-out prompt is at a median
distance of 0.85 (unit vectors), while training captions sit 0.35 from their nearest neighbour. The pooled sentence
embedding still ranks the right captions first (the nearest training caption has the prompt's class for 28 of the 30
held-out prompts), but the cross-attended token states of unseen words mislead the U-Net
(benchmarks/text_conditioning_ablation.py, w = 3: 53.8% of samples in the intended class from the raw prompt,
86.3% from the prompt's pooled embedding with its nearest caption's token states, 87.7% from the nearest caption).
So by default `sample`/`synth` map each prompt to its nearest training caption and report the mapping; ``--raw-prompt``
conditions on the prompt's own encoding. Nearest is by the cosine of the pooled embeddings plus the BERTScore F1 of
the word pieces (``nearest_captions``): the pooled vector alone blurs details a caption states in one token (a note
name, a direction), benchmarks/snapping.py. The idea is
retrieval-augmented generation at its simplest (Blattmann et al. 2022, "Retrieval-Augmented Diffusion Models";
Sheynin et al. 2022, "kNN-Diffusion"). The cost: a prompt can only mean what some training caption means.

Training writes the caption list to RUN/captions.json; runs from before that re-derive it from their class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ..checkpoint import read_json, write_json

CAPTIONS_FILE = "captions.json"


BANK_FILE = "captions.safetensors"  # the encoded training captions, so a copied run needs no encoder to start


def save_training_captions(run: Path, bank: Any) -> None:
    """RUN/captions.json (the caption list) and RUN/captions.safetensors (their encodings, a CaptionBank)."""
    write_json(Path(run) / CAPTIONS_FILE, {"encoder": bank.encoder, "texts": list(bank.texts)})
    bank.save(Path(run) / BANK_FILE)


def training_captions(run: Path, mcfg: Any) -> list[str] | None:
    """The distinct training captions of a text run, or None where they cannot be known (an older run trained
    from a captions file)."""
    path = Path(run) / CAPTIONS_FILE
    if path.is_file():
        texts = read_json(path, "training captions").get("texts")
        return [str(t) for t in texts] if isinstance(texts, list) and texts else None
    cfg = read_json(Path(run) / "config.json", "run config").get("train", {})
    if mcfg.cond != "text" or not mcfg.class_names or cfg.get("captions"):
        return None
    from .captions import captions_of_classes

    return captions_of_classes(mcfg.class_names)


class Match(NamedTuple):
    caption: str  # the training caption a prompt snaps to
    cosine: float  # of the pooled sentence embeddings
    alignment: float  # BERTScore F1 of the word pieces (alignment_scores)


def nearest_captions(prompts: list[str], captions: list[str], encoder: str, bank: Any = None) -> list[Match]:
    """The nearest training caption of each prompt, by the sum of two similarities of the encoder's states: the
    cosine of the pooled sentence embeddings, which ranks captions by overall meaning, and the alignment of their word
    pieces (``alignment_scores``), which keeps the details a pooled vector blurs: a note name, a direction
    ("footage of a coat heading up-left" went to an "up-right" caption by cosine alone; benchmarks/snapping.py). A
    prompt that is a training caption is its own nearest (scores 1) without the encoder, so asking for training
    captions only never loads it (seconds of `diffuse sample`, benchmarks/first_image.py); nor does a prompt asked
    before (prompt_embeddings)."""
    from .bank import CaptionBank

    train = bank or CaptionBank.build(captions, encoder)  # cached on disk: encoded once per caption set
    known = set(train.texts)
    near = {p: Match(p, 1.0, 1.0) for p in prompts if p in known}
    new = [p for p in dict.fromkeys(prompts) if p not in known]
    if new:
        asked = prompt_embeddings(new, encoder)
        cos = asked.pooled @ train.pooled.T  # [P distinct, M]
        align = alignment_scores(asked, train)
        best = (cos + align).argmax(dim=1)
        near.update({p: Match(train.texts[int(i)], float(cos[k, i]), float(align[k, i])) for k, (p, i) in enumerate(zip(new, best))})
    return [near[p] for p in prompts]


def _pieces(tokens: Any, mask: Any) -> tuple[Any, Any]:
    """Unit token states and the mask of the word pieces, [CLS] (first) and [SEP] (last real token) left out."""
    import torch

    m = mask.clone()
    m[:, 0] = False
    m[torch.arange(len(m)), mask.sum(1) - 1] = False
    return torch.nn.functional.normalize(tokens.float(), dim=-1), m


def alignment_scores(queries: Any, keys: Any) -> Any:
    """[Q, K] BERTScore F1 (Zhang et al. 2020) between two CaptionBanks' texts: each word piece of one text is
    matched to its most similar piece of the other (cosine of the contextual token states), recall averages the
    query's pieces' best matches and precision the key's (each floored at 0), F1 is their harmonic mean.
    Without idf weights."""
    import torch

    qt, qm = _pieces(queries.tokens, queries.mask)
    kt, km = _pieces(keys.tokens, keys.mask)
    flat = kt.reshape(-1, kt.shape[-1]).T  # [D, K * Lk]
    out = torch.empty(len(qt), len(kt))
    for lo in range(0, len(qt), 8):  # 8 queries a matrix product: [8, Lq, K, Lk] stays about 100 MB
        q, m = qt[lo : lo + 8], qm[lo : lo + 8]
        s = (q.reshape(-1, q.shape[-1]) @ flat).view(len(q), q.shape[1], *kt.shape[:2])  # [B, Lq, K, Lk]
        s = s.masked_fill(~km[None, None], -2.0).masked_fill(~m[:, :, None, None], -2.0)
        recall = (s.amax(3) * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)  # [B, K]
        precision = (s.amax(1) * km).sum(2) / km.sum(1).clamp(min=1)
        recall, precision = recall.clamp(min=0), precision.clamp(min=0)  # token cosines can be negative; F1 needs >= 0
        out[lo : lo + 8] = 2 * recall * precision / (recall + precision).clamp(min=1e-6)
    return out


def prompt_embeddings(prompts: list[str], encoder: str) -> Any:
    """The encoded distinct prompts as a CaptionBank (token states, mask, pooled unit embedding). Each is kept in the
    user's cache (text/prompts/, a small safetensors file per prompt), so a prompt asked for again needs no encoder."""
    import hashlib

    import torch

    from ..cache import cache_dir
    from ..checkpoint import load_tensors, save_tensors
    from ..errors import UserError
    from .bank import CaptionBank

    folder = cache_dir() / "text" / "prompts"
    paths = [folder / f"{encoder}-{hashlib.sha256(p.encode()).hexdigest()[:24]}.safetensors" for p in prompts]
    rows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # i: (token states [L, D] of its real tokens, pooled [D])
    for i, (p, path) in enumerate(zip(prompts, paths)):
        try:
            t, meta = load_tensors(path, "cached prompt embedding")
            if meta.get("prompt") == p:
                rows[i] = (t["tokens"].float(), t["pooled"].float())
        except (UserError, KeyError):  # missing or damaged: encode it again
            pass
    todo = [i for i in range(len(prompts)) if i not in rows]
    if todo:
        fresh = CaptionBank.build([prompts[i] for i in todo], encoder, cache=False)
        for i, tok, m, v in zip(todo, fresh.tokens, fresh.mask, fresh.pooled):
            rows[i] = (tok[m].half().float(), v)  # as a cached load gives it, so a first and a later call agree
            try:
                save_tensors(paths[i], {"tokens": tok[m].half(), "pooled": v}, {"prompt": prompts[i]})
            except (OSError, UserError):  # a full or read-only cache costs the next call the encoder, nothing else
                pass
    length = max(len(rows[i][0]) for i in rows)
    tokens = torch.zeros(len(prompts), length, rows[0][0].shape[-1])
    mask = torch.zeros(len(prompts), length, dtype=torch.bool)
    for i in range(len(prompts)):
        tokens[i, : len(rows[i][0])], mask[i, : len(rows[i][0])] = rows[i][0], True
    return CaptionBank(list(prompts), tokens, mask, torch.stack([rows[i][1] for i in range(len(prompts))]), encoder)


def training_bank(run: Path, mcfg: Any) -> Any:
    """The encoded training captions of a text run (a CaptionBank, from the disk cache after the first time), or None
    where they cannot be known."""
    from .bank import CaptionBank

    captions = training_captions(run, mcfg)
    if captions is None:
        return None
    stored = CaptionBank.load(Path(run) / BANK_FILE, captions, mcfg.text_encoder) if (Path(run) / BANK_FILE).is_file() else None
    return stored or CaptionBank.build(captions, mcfg.text_encoder)


def snap_prompts(prompts: list[str], run: Path, mcfg: Any, enabled: bool = True, bank: Any = None
                 ) -> tuple[list[str], list[str]]:
    """(texts to condition on, one report line per distinct prompt). Disabled, or where the run's captions are
    unknown, the prompts themselves (with a line saying why)."""
    from ..generate import check_prompts

    check_prompts(prompts)
    if not enabled:
        return list(prompts), []
    captions = training_captions(run, mcfg)
    if captions is None:
        return list(prompts), [f"{run} does not record its training captions: conditioning on the raw prompts"]
    near = nearest_captions(prompts, captions, mcfg.text_encoder, bank or training_bank(run, mcfg))
    lines = [f"prompt {p!r} -> training caption {m.caption!r} (cosine {m.cosine:.2f}, word alignment {m.alignment:.2f})"
             for p, m in dict(zip(prompts, near)).items()]
    return [m.caption for m in near], lines
