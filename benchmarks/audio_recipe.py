"""The notes recipe, end to end: the 10-minute text-to-audio model against its real-data floor and its vocoder
ceiling, on named notes (training phrasing) and on held-out phrasings (wordings never in a training caption), the
latter snapped to their nearest training caption (as `diffuse sample` does by default) and raw (`--raw-prompt`).

    diffuse train --data notes --cond text --minutes 10 --out runs/notes
    python benchmarks/audio_recipe.py runs/notes [--n 275] [--guidance W[,W2,...]] [--vocoder DIR] [--vocoder-refine N] [--mels-only]

--vocoder DIR decodes with a neural vocoder (diffuse train-vocoder) instead of the run's; the ceiling row uses it too.

Targets (issue 13): family adherence on held-out phrasings >= 80%; >= 70% of samples within +-50 cents of the
asked note; a Frechet distance within 3x the vocoder ceiling's.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffuse.data.notes import FAMILIES, PITCHES, SYNONYMS, note_names  # noqa: E402
from diffuse.generate import SampleConfig, generate  # noqa: E402
from diffuse.metrics.audio_eval import HEADER, NotesJudge  # noqa: E402
from diffuse.modalities import modality_of  # noqa: E402
from diffuse.model import load_model  # noqa: E402
from diffuse.text.retrieval import snap_prompts  # noqa: E402

# other words for each family, and other sentence shapes, than data/notes.py's captions (tests check they differ)
HELD_OUT = {"keyboard": ["pianoforte", "concert grand"], "mallet": ["wooden marimba", "xylophone"],
            "organ": ["church organ", "hammond organ"], "guitar": ["spanish guitar", "classical guitarist"],
            "bass": ["contrabass", "jazz double bass"], "string": ["solo violin", "violinist"],
            "vocal": ["chorus of singers", "choral voices"], "brass": ["trumpeter", "bright trumpet"],
            "reed": ["reed instrument", "saxophonist"], "flute": ["flautist", "silver flute"],
            "synth_lead": ["chiptune square synth", "8-bit square lead"]}
HELD_OUT_TEMPLATES = ["{i} sounding the note {p}", "a clip of {i} at pitch {p}"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=275, help="samples per set (and real clips for floor and ceiling)")
    ap.add_argument("--guidance", default=None, help="guidance strength, or a comma list to sweep (default: the run's)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--vocoder", type=Path, default=None, help="a neural vocoder folder (diffuse train-vocoder) instead of the run's")
    ap.add_argument("--vocoder-refine", type=int, default=None,
                    help="log-mel matching steps after Griffin-Lim (default: the run's vocoder; runs before it have 0)")
    ap.add_argument("--mels-only", action="store_true",
                    help="screening: score the samples' log-mels only (no vocoder, no floor or ceiling rows; minutes faster)")
    args = ap.parse_args()
    model, mcfg = load_model(args.run)
    mod = modality_of(mcfg)
    if args.vocoder is not None:
        mod.set_vocoder(name="neural", path=str(args.vocoder))
    if args.vocoder_refine is not None:
        mod.set_vocoder(refine=args.vocoder_refine)
    print(f"vocoder: {mod.vocoder_spec}", flush=True)
    judge = NotesJudge(mod)
    g = torch.Generator().manual_seed(0)
    n = args.n
    fam, midi, named = named_notes(n, g)
    held_out = [HELD_OUT_TEMPLATES[i % 2].format(i=HELD_OUT[FAMILIES[f]][(i // 2) % 2], p=note_names(int(m))[0])
                for i, (f, m) in enumerate(zip(fam, midi))]
    sets = {  # name: (prompts, snap each to its nearest training caption first, as `diffuse sample` does by default)
        "named notes (training phrasing)": (named, True),
        "held-out phrasings": (held_out, True),
        "held-out phrasings, raw (--raw-prompt)": (held_out, False),
    }
    idx = torch.randperm(len(judge.test), generator=g)[:n]
    rows = []
    if not args.mels_only:
        rows.append(judge.real_floor(idx).row("real test clips (floor)"))
        t = time.time()
        rows.append(judge.vocoder_ceiling(idx).row("real log-mels -> vocoder (ceiling)"))
        print(f"vocoder: {time.time() - t:.0f} s for {n} clips", flush=True)
    for w in [float(v) for v in args.guidance.split(",")] if args.guidance else [None]:
        scfg = SampleConfig(steps=args.steps, guidance=w)
        tag = f", guidance {scfg.guidance_for(True, text=True):g}"
        for name, (prompts, snap) in sets.items():
            t = time.time()
            x = sample_prompts(model, mcfg, args.run, prompts, scfg, snap)
            if not args.mels_only:
                rows.append(judge.score_waves(mod.decode(x), fam, midi).row(f"samples: {name}{tag}"))
            rows.append(judge.score_mels(x, fam, midi).row(f"samples: {name}{tag}, log-mels before the vocoder"))
            print(f"{name}{tag}: {time.time() - t:.0f} s", flush=True)
    print(HEADER)
    print("\n".join(rows))


def named_notes(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """n random (family, MIDI note) pairs and their prompts in the training phrasing ("a trumpet playing G4")."""
    fam = torch.randint(len(FAMILIES), (n,), generator=g)
    midi = torch.tensor(PITCHES)[torch.randint(len(PITCHES), (n,), generator=g)]
    return fam, midi, [f"a {SYNONYMS[FAMILIES[f]][0]} playing {note_names(int(m))[0]}" for f, m in zip(fam, midi)]


def sample_prompts(model, mcfg, run: Path, prompts: list[str], scfg: SampleConfig, snap: bool = True) -> torch.Tensor:
    """Model-space samples, sample i for prompts[i] (snapped to its nearest training caption, as the CLI does)."""
    texts, _ = snap_prompts(prompts, run, mcfg, snap)
    return generate(model, len(prompts), scfg, text=_per_sample(texts, mcfg))


def _per_sample(texts: list[str], mcfg):
    """The text condition with sample i conditioned on texts[i]."""
    from diffuse.text.bank import CaptionBank, TextRows

    bank = CaptionBank.build(texts, mcfg.text_encoder, cache=False)
    return TextRows(bank.cond(bank.index(bank.texts)), bank.index(texts))


if __name__ == "__main__":
    main()
