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
    python benchmarks/snapping.py --misses   # also: per held-out wording, how often the default is wrong, and where to
"""

from __future__ import annotations

import argparse
import collections
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


def wording(name: str, prompt: str) -> str:
    """What a miss is grouped by: the held-out instrument words of a notes prompt, else the prompt itself."""
    if name == "notes":
        from audio_recipe import HELD_OUT

        return next((w for words in HELD_OUT.values() for w in words if w in prompt), prompt)
    return prompt


def misses(name: str, prompts: list[str], got: list[tuple], want: list[tuple]) -> None:
    """One line per wording the default ranking gets wrong at least once (first label field): right / asked, and
    the labels it went to instead."""
    groups: dict[str, list] = collections.defaultdict(lambda: [0, 0, collections.Counter()])
    for p, g, w in zip(prompts, got, want):
        row = groups[wording(name, p)]
        row[1] += 1
        if g[0] == w[0]:
            row[0] += 1
        else:
            row[2][g[0]] += 1
    for key, (right, asked, wrong) in groups.items():
        if wrong:
            print(f"  {name}: {key!r} right {right}/{asked}, else " + ", ".join(f"{k} {v}" for k, v in wrong.most_common(3)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--misses", action="store_true", help="also list the wordings the default ranking gets wrong")
    args = ap.parse_args()
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
        if args.misses:
            misses(name, prompts, [label[c] for c in both], want)
        print(f"({name}: {len(label)} training captions; encoding {encoded:.0f} s, the default ranking {took:.1f} s "
              f"for {len(prompts)} prompts)", file=sys.stderr)


if __name__ == "__main__":
    main()
