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


def save_training_captions(run: Path, texts: list[str], encoder: str) -> None:
    write_json(Path(run) / CAPTIONS_FILE, {"encoder": encoder, "texts": list(texts)})


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


def nearest_captions(prompts: list[str], captions: list[str], encoder: str) -> list[tuple[str, float]]:
    """(nearest training caption, cosine) of each prompt, by the encoder's pooled (unit) sentence embeddings."""
    from .bank import CaptionBank

    train = CaptionBank.build(captions, encoder)  # cached on disk: encoded once per caption set
    asked = CaptionBank.build(list(prompts), encoder, cache=False)
    sim = asked.pooled @ train.pooled.T  # [P distinct, M]
    best, idx = sim.max(dim=1)
    near = {p: (train.texts[int(i)], float(s)) for p, i, s in zip(asked.texts, idx, best)}
    return [near[p] for p in prompts]


def snap_prompts(prompts: list[str], run: Path, mcfg: Any, enabled: bool = True) -> tuple[list[str], list[str]]:
    """(texts to condition on, one report line per distinct prompt). Disabled, or where the run's captions are
    unknown, the prompts themselves (with a line saying why)."""
    from ..generate import check_prompts

    check_prompts(prompts)
    if not enabled:
        return list(prompts), []
    captions = training_captions(run, mcfg)
    if captions is None:
        return list(prompts), [f"{run} does not record its training captions: conditioning on the raw prompts"]
    near = nearest_captions(prompts, captions, mcfg.text_encoder)
    lines = [f"prompt {p!r} -> training caption {c!r} (cosine {s:.2f})" for p, (c, s) in dict(zip(prompts, near)).items()]
    return [c for c, _ in near], lines
