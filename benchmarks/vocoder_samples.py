"""The vocoder on generated log-mels: a run's samples for named notes (the named set of benchmarks/audio_recipe.py,
DPM-Solver++ 10 steps at the run's guidance) through Griffin-Lim and each number of log-mel matching steps, and with
the quiet floor cleaned first. Real log-mels lose little through the vocoder (benchmarks/vocoder_ceiling.py); generated
ones need not be the log-mel of any wave, so their cost can differ, and this measures it.

    python benchmarks/vocoder_samples.py RUN [--n 200] [--refine 100,300,600] [--lr 1.5e-4] [--clean none,median3,gate-0.7]
                                         [--neural DIR [--neural-refine 0,100]]

--neural adds rows for the neural vocoder in DIR (diffuse train-vocoder), alone and followed by matching steps.

Cleanings (model space, where the floor is -1): median3, a 3-frame median in time; gate-T, values below T set to -1.
It also prints how rough the log-mels are in time (mean |x[t+1] - x[t]| where both are below -0.5), real and samples.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_recipe import named_notes, sample_prompts  # noqa: E402

from diffuse.audio.vocoder import GriffinLim, Neural  # noqa: E402
from diffuse.generate import SampleConfig  # noqa: E402
from diffuse.metrics.audio_eval import HEADER, NotesJudge  # noqa: E402
from diffuse.modalities import modality_of  # noqa: E402
from diffuse.model import load_model  # noqa: E402


def median_time(x: torch.Tensor, k: int = 3) -> torch.Tensor:
    return torch.nn.functional.pad(x, (k // 2, k // 2, 0, 0), mode="replicate").unfold(-1, k, 1).median(-1).values


def clean(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "none":
        return x
    if how == "median3":
        return median_time(x)
    if how.startswith("gate"):
        return torch.where(x < float(how[len("gate"):]), torch.full_like(x, -1.0), x)
    raise SystemExit(f"error: unknown cleaning {how!r} (none, median3, gate-T)")


def roughness(x: torch.Tensor, below: float = -0.5) -> float:
    d, quiet = (x[..., 1:] - x[..., :-1]).abs(), (x[..., 1:] < below) & (x[..., :-1] < below)
    return float(d[quiet].mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--refine", default="100,300,600", help="log-mel matching steps after Griffin-Lim, comma list")
    ap.add_argument("--lr", type=float, default=1.5e-4, help="the matching steps' learning rate (wave units)")
    ap.add_argument("--clean", default="none", help="cleanings of the log-mels before the vocoder, comma list")
    ap.add_argument("--neural", type=Path, help="also the neural vocoder in this folder (diffuse train-vocoder)")
    ap.add_argument("--neural-refine", default="0,100", help="log-mel matching steps after the neural vocoder, comma list")
    args = ap.parse_args()
    model, mcfg = load_model(args.run)
    mod = modality_of(mcfg)
    judge = NotesJudge(mod)
    g = torch.Generator().manual_seed(0)
    fam, midi, prompts = named_notes(args.n, g)
    x = sample_prompts(model, mcfg, args.run, prompts, SampleConfig(steps=10)).float()
    real = judge.test.images[torch.randperm(len(judge.test), generator=g)[: args.n]].float()
    print(f"roughness in time below -0.5: real test log-mels {roughness(real):.4f}, samples {roughness(x):.4f}", flush=True)
    rows = []
    for how in args.clean.split(","):
        c = clean(x, how)
        rows.append(judge.score_mels(c, fam, midi).row(f"samples, {how}: log-mels before the vocoder"))
        for r in (int(v) for v in args.refine.split(",") if v):
            t = time.time()
            y = GriffinLim(mod.mel, 32, "pinv", refine=r, lr=args.lr)(mod.front.magnitudes(c), c.shape[-1] * mod.mel.hop)
            rows.append(judge.score_waves(y, fam, midi).row(f"samples, {how}: Griffin-Lim 32 + {r} matching steps ({time.time() - t:.0f} s)"))
            print(rows[-1], flush=True)
        for r in (int(v) for v in args.neural_refine.split(",") if v and args.neural):
            t = time.time()
            y = Neural(mod.mel, str(args.neural), refine=r, lr=args.lr)(mod.front.magnitudes(c), c.shape[-1] * mod.mel.hop)
            rows.append(judge.score_waves(y, fam, midi).row(f"samples, {how}: neural vocoder + {r} matching steps ({time.time() - t:.0f} s)"))
            print(rows[-1], flush=True)
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
