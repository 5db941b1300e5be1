"""How often a held-out prompt snaps to a training caption that means the same thing (text/retrieval.py).

`diffuse sample` conditions a text model on the training caption nearest to the prompt. This measures that step
alone, with no diffusion model, on the held-out phrasings of the three text benchmarks:
- Fashion-MNIST (benchmarks/prompts/fmnist_heldout.tsv, 30 prompts): is the caption's class the prompt's?
- notes (benchmarks/audio_recipe.py's HELD_OUT words and templates, 4 per (family, pitch) pair: 1,100 prompts):
  family, and note;
- moving-fmnist (data/moving.py's heldout_prompt, 6 per (class, direction) pair: 480 prompts): class, and direction.
Three ways of ranking the captions: the pooled sentence embeddings' cosine alone (the rule until 2026-12-07), the
word pieces' BERTScore F1 alone, and their sum (the default, `nearest_captions`).

    python benchmarks/snapping.py            # about 2 minutes on a 2-core CPU once the captions are encoded
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def fmnist() -> tuple[dict[str, tuple], list[str], list[tuple]]:
    from diffuse.data.sources import FASHION_CLASSES
    from diffuse.text.captions import class_captions

    label = {c: (name,) for name in FASHION_CLASSES for c in class_captions(name)}
    rows = [line.split("\t") for line in (ROOT / "benchmarks" / "prompts" / "fmnist_heldout.tsv").read_text().splitlines()]
    return label, [p for _, p in rows], [(c,) for c, _ in rows]


def notes() -> tuple[dict[str, tuple], list[str], list[tuple]]:
    from audio_recipe import HELD_OUT, HELD_OUT_TEMPLATES

    from diffuse.data.notes import DYNAMICS, FAMILIES, PITCHES, group_captions, note_names

    label = {c: (f, p) for f in FAMILIES for p in PITCHES for d in DYNAMICS for c in group_captions(f, p, d)}
    pairs = [(f, p) for f in FAMILIES for p in PITCHES for _ in range(4)]
    prompts = [HELD_OUT_TEMPLATES[i % 2].format(i=HELD_OUT[f][(i // 2) % 2], p=note_names(p)[0]) for i, (f, p) in enumerate(pairs)]
    return label, prompts, pairs


def moving() -> tuple[dict[str, tuple], list[str], list[tuple]]:
    from diffuse.data.moving import DIRECTIONS, group_captions, heldout_prompt
    from diffuse.data.sources import FASHION_CLASSES

    label = {c: (name, d) for name in FASHION_CLASSES for d in DIRECTIONS for c in group_captions(name, d)}
    pairs = [(name, d) for name in FASHION_CLASSES for d in DIRECTIONS for _ in range(6)]
    return label, [heldout_prompt(n, d, i % 6) for i, (n, d) in enumerate(pairs)], pairs


SETS = {"Fashion-MNIST": (fmnist, ["class"]), "notes": (notes, ["family", "note"]), "moving-fmnist": (moving, ["class", "direction"])}


def main() -> None:
    from diffuse.text.bank import CaptionBank
    from diffuse.text.retrieval import alignment_scores, nearest_captions, prompt_embeddings

    print("| held-out prompts | n | ranking | the snapped caption is right on |")
    print("|---|---|---|---|")
    for name, (build, fields) in SETS.items():
        label, prompts, want = build()
        for c in label:
            assert c not in prompts, f"held-out prompt {c!r} is a training caption"
        t = time.time()
        bank = CaptionBank.build(list(label), "minilm")
        asked = prompt_embeddings(prompts, "minilm")
        encoded = time.time() - t
        cos = asked.pooled @ bank.pooled.T
        align = alignment_scores(asked, bank)
        t = time.time()
        both = [m.caption for m in nearest_captions(prompts, list(label), "minilm", bank)]
        took = time.time() - t
        for rank, picks in [("pooled cosine", [bank.texts[int(i)] for i in cos.argmax(1)]),
                            ("word-piece F1", [bank.texts[int(i)] for i in align.argmax(1)]),
                            ("cosine + F1 (default)", both)]:
            got = [label[c] for c in picks]
            right = [sum(g[k] == w[k] for g, w in zip(got, want)) / len(want) for k in range(len(fields))]
            whole = sum(g == w for g, w in zip(got, want)) / len(want)
            share = ", ".join(f"{f} {r:.1%}" for f, r in zip(fields, right)) + (f", both {whole:.1%}" if len(fields) > 1 else "")
            print(f"| {name} | {len(prompts)} | {rank} | {share} |", flush=True)
        print(f"({name}: {len(label)} training captions; encoding {encoded:.0f} s, the default ranking {took:.1f} s "
              f"for {len(prompts)} prompts)", file=sys.stderr)


if __name__ == "__main__":
    main()
