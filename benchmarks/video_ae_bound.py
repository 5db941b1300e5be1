"""The class a latent video model can reach at best: real test clips through an autoencoder and back, scored by the
video judge beside the originals (README "Video").

    python benchmarks/video_ae_bound.py runs/ae-moving [--n 480]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffuse.codecs.autoencoder import load_codec  # noqa: E402
from diffuse.metrics.video import VideoJudge  # noqa: E402
from diffuse.pixels import to_model_space, to_uint8  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ae", type=Path, help="an autoencoder directory (or RUN/autoencoder)")
    ap.add_argument("--data", default="moving-fmnist")
    ap.add_argument("--n", type=int, default=480)
    args = ap.parse_args()
    codec = load_codec(args.ae)
    judge = VideoJudge(args.data, None)
    idx = torch.randperm(len(judge.test), generator=torch.Generator().manual_seed(0))[: args.n]
    real, cls = judge.test.images[idx], judge.test.extra["class"][idx]
    rec = to_uint8(codec.decode(codec.encode(to_model_space(real))))
    for name, clips in (("real test clips", real), ("autoencoder reconstructions", rec)):
        s = judge.clip_scores(clips)
        print(f"{name:30s} class {float((s['class'] == cls).float().mean()):6.1%}  consistency {float(s['consistency'].mean()):6.1%}")
        print("  per class: " + ", ".join(f"{judge.object_names[k]} {float((s['class'][cls == k] == k).float().mean()):.0%}"
                                          for k in range(judge.num_classes)))


if __name__ == "__main__":
    main()
