"""The vocoder ceiling on the notes: real test log-mels -> vocoder -> the metrics of benchmarks/audio_recipe.py, for
each vocoder choice, beside the real clips themselves. It tells the vocoder's cost apart from the model's.

    python benchmarks/vocoder_ceiling.py [--refine 100,300] [--no-learned] [--learned-steps 1500] [--loss log|pow]
                                         [--only-learned] [--cuts 0,1000] [--neural DIR [--neural-refine 0,100]]

Choices: Griffin-Lim (32 iterations) after the pseudo-inverse or NNLS mel inversion, then optionally log-mel
matching steps (audio/vocoder.py), and the learned mel ->
linear-magnitude network (audio/learned.py) with Griffin-Lim, over the whole band or above a cut-off only; and the
neural vocoder in DIR (diffuse train-vocoder), alone and followed by matching steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffuse.audio import MelConfig  # noqa: E402
from diffuse.audio.learned import train_mel_to_stft  # noqa: E402
from diffuse.audio.vocoder import GriffinLim, Neural  # noqa: E402
from diffuse.data.notes import build  # noqa: E402
from diffuse.metrics.audio_eval import HEADER, NotesJudge  # noqa: E402
from diffuse.modalities.audio import AudioModality  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--learned-steps", type=int, default=1500)
    ap.add_argument("--loss", default="log", choices=("log", "pow"), help="mel2stft loss: L1 of log or of |S|^0.3")
    ap.add_argument("--only-learned", action="store_true", help="skip the Griffin-Lim rows (measured before)")
    ap.add_argument("--refine", default="100,300", help="log-mel matching steps after Griffin-Lim (pinv), comma list")
    ap.add_argument("--no-learned", action="store_true", help="skip the learned mel2stft rows")
    ap.add_argument("--cuts", default="0,1000", help="learned magnitudes above these frequencies (Hz), pseudo-inverse below")
    ap.add_argument("--neural", type=Path, help="also the neural vocoder in this folder (diffuse train-vocoder)")
    ap.add_argument("--neural-refine", default="0,100", help="log-mel matching steps after the neural vocoder, comma list")
    args = ap.parse_args()
    cfg = MelConfig()
    mod = AudioModality(cfg)
    judge = NotesJudge(mod)
    idx = torch.arange(len(judge.test))
    fam, midi = judge.test.labels, judge.test.extra["pitch"]
    mags = mod.front.magnitudes(judge.test.images)
    rows = [judge.real_floor(idx).row("real test clips")]
    for inv in () if args.only_learned else ("pinv", "nnls"):
        t = time.time()
        y = GriffinLim(cfg, 32, inv)(mags, cfg.samples)
        rows.append(judge.score_waves(y, fam, midi).row(f"Griffin-Lim 32, {inv} mel inversion ({time.time() - t:.0f} s)"))
        print(rows[-1], flush=True)
    for r in () if args.only_learned else (int(v) for v in args.refine.split(",") if v):
        t = time.time()
        y = GriffinLim(cfg, 32, "pinv", refine=r)(mags, cfg.samples)
        rows.append(judge.score_waves(y, fam, midi).row(f"Griffin-Lim 32 + {r} log-mel matching steps ({time.time() - t:.0f} s)"))
        print(rows[-1], flush=True)
    for r in (int(v) for v in args.neural_refine.split(",") if v and args.neural):
        t = time.time()
        y = Neural(cfg, str(args.neural), refine=r)(mags, cfg.samples)
        rows.append(judge.score_waves(y, fam, midi).row(f"neural vocoder + {r} matching steps ({time.time() - t:.0f} s)"))
        print(rows[-1], flush=True)
    if args.no_learned:
        print(HEADER)
        print("\n".join(rows))
        return
    t = time.time()
    net = train_mel_to_stft(torch.from_numpy(build("train").waves), cfg, steps=args.learned_steps, loss=args.loss)
    print(f"learned mel2stft ({args.loss} loss): {args.learned_steps} steps in {time.time() - t:.0f} s", flush=True)
    import librosa

    freqs = torch.from_numpy(librosa.fft_frequencies(sr=cfg.sample_rate, n_fft=cfg.n_fft)).float()[:, None]
    with torch.no_grad():
        x = judge.test.images[:, 0]
        learned = net(x).exp()
        base = (net.pinv @ mags).clamp_min(0)
    for cut in (float(c) for c in args.cuts.split(",")):
        mag = torch.where(freqs < cut, base, learned).double().numpy()
        y = librosa.griffinlim(mag, n_iter=32, hop_length=cfg.hop, n_fft=cfg.n_fft, length=(cfg.frames - 1) * cfg.hop, random_state=0)
        y = torch.from_numpy(np.pad(y, [(0, 0), (0, cfg.hop)]).astype(np.float32)).clamp(-1, 1)
        rows.append(judge.score_waves(y, fam, midi).row(f"learned magnitudes ({args.loss} loss) above {cut:g} Hz + Griffin-Lim 32"))
        print(rows[-1], flush=True)
    print(HEADER)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
