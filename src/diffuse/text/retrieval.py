"""Nearest-caption conditioning: condition on the training caption nearest to a prompt, not on the prompt itself.

A text model only ever saw its training captions. A prompt in other words ("a warm parka") lands far from all of
them in the encoder's space: on Fashion-MNIST the nearest training caption of a held-out prompt is at a median
distance of 0.85 (unit vectors), while training captions sit 0.35 from their nearest neighbour. The pooled sentence
embedding still ranks the right captions first (the nearest training caption has the prompt's class for 28 of the 30
held-out prompts), but the cross-attended token states of unseen words mislead the U-Net
(benchmarks/text_conditioning_ablation.py, w = 3: 53.8% of samples in the intended class from the raw prompt,
86.3% from the prompt's pooled embedding with its nearest caption's token states, 87.7% from the nearest caption).
So by default `sample`/`synth` map each prompt to its nearest training caption by cosine of the pooled embeddings
and report the mapping; ``--raw-prompt`` conditions on the prompt's own encoding. The idea is
retrieval-augmented generation at its simplest (Blattmann et al. 2022, "Retrieval-Augmented Diffusion Models";
Sheynin et al. 2022, "kNN-Diffusion"). The cost: a prompt can only mean what some training caption means.

Training writes the caption list to RUN/captions.json; runs from before that re-derive it from their class names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def nearest_captions(prompts: list[str], captions: list[str], encoder: str, bank: Any = None) -> list[tuple[str, float]]:
    """(nearest training caption, cosine) of each prompt, by the encoder's pooled (unit) sentence embeddings. A prompt
    that is a training caption is its own nearest (cosine 1) without the encoder, so asking for training captions only
    never loads it (seconds of `diffuse sample`, benchmarks/first_image.py); nor does a prompt asked before
    (prompt_embeddings)."""
    from .bank import CaptionBank

    train = bank or CaptionBank.build(captions, encoder)  # cached on disk: encoded once per caption set
    known = set(train.texts)
    near = {p: (p, 1.0) for p in prompts if p in known}
    new = [p for p in dict.fromkeys(prompts) if p not in known]
    if new:
        pooled = prompt_embeddings(new, encoder)
        sim = pooled @ train.pooled.T  # [P distinct, M]
        best, idx = sim.max(dim=1)
        near.update({p: (train.texts[int(i)], float(s)) for p, i, s in zip(new, idx, best)})
    return [near[p] for p in prompts]


def prompt_embeddings(prompts: list[str], encoder: str) -> Any:
    """Pooled (unit) embeddings [P, D] of distinct prompts. Each is kept in the user's cache (text/pooled/, a small
    JSON per prompt), so a prompt asked for again needs no encoder."""
    import hashlib
    import json

    import torch

    from ..cache import cache_dir
    from ..checkpoint import atomic_write_bytes
    from ..errors import UserError
    from .bank import CaptionBank

    folder = cache_dir() / "text" / "pooled"
    paths = [folder / f"{encoder}-{hashlib.sha256(p.encode()).hexdigest()[:24]}.json" for p in prompts]
    rows: dict[int, torch.Tensor] = {}
    for i, (p, path) in enumerate(zip(prompts, paths)):
        try:
            d = json.loads(path.read_text())
            if d["prompt"] == p:
                rows[i] = torch.tensor(d["pooled"], dtype=torch.float32)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    todo = [i for i in range(len(prompts)) if i not in rows]
    if todo:
        fresh = CaptionBank.build([prompts[i] for i in todo], encoder, cache=False).pooled
        for i, v in zip(todo, fresh):
            rows[i] = v
            try:
                atomic_write_bytes(paths[i], json.dumps({"prompt": prompts[i], "pooled": v.tolist()}).encode())
            except (OSError, UserError):  # a full or read-only cache costs the next call the encoder, nothing else
                pass
    return torch.stack([rows[i] for i in range(len(prompts))])


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
    lines = [f"prompt {p!r} -> training caption {c!r} (cosine {s:.2f})" for p, (c, s) in dict(zip(prompts, near)).items()]
    return [c for c, _ in near], lines
