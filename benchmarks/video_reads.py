"""What the video judge reads of each prompt: ``n`` clips per prompt, the share read as the wanted object and the
three reads made most often. Tells a class the model cannot draw from a word it cannot follow (one object under
several synonyms, each phrased as a training caption, so that snapping plays no part).

    python benchmarks/video_reads.py runs/video --object Sandal --object Sneaker [--n 48] [--guidance 5] [--seed 1]

Each object is asked through every one of its training synonyms (text/captions.py), as "a video of a <word> moving
<direction>", the 8 directions in turn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from video_recipe import per_sample_text  # noqa: E402

from diffuse.data.moving import DIRECTIONS  # noqa: E402
from diffuse.generate import SampleConfig, generate  # noqa: E402
from diffuse.metrics.video import VideoJudge  # noqa: E402
from diffuse.model import load_model  # noqa: E402
from diffuse.pixels import to_uint8  # noqa: E402
from diffuse.text.captions import _article, _words  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--object", action="append", required=True, help="a Fashion-MNIST class name (repeatable)")
    ap.add_argument("--n", type=int, default=48, help="clips per synonym")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model, mcfg = load_model(args.run)
    judge = VideoJudge(mcfg.data, mcfg.data_dir)
    names = judge.object_names
    for obj in args.object:
        if obj not in names:
            sys.exit(f"error: --object {obj!r} is not one of {', '.join(names)}")
        for word in _words(obj):
            texts = [_article(f"a video of a {word} moving {DIRECTIONS[i % 8]}") for i in range(args.n)]
            x = generate(model, args.n, SampleConfig(guidance=args.guidance, seed=args.seed),
                         text=per_sample_text(texts, mcfg.text_encoder))
            got = judge.clip_scores(to_uint8(x))["class"]
            counts = torch.bincount(got, minlength=len(names))
            top = ", ".join(f"{names[k]} {int(counts[k])}" for k in counts.argsort(descending=True)[:3].tolist() if counts[k])
            print(f"{obj:12s} {word!r:22s} {float((got == names.index(obj)).float().mean()):5.0%}   reads: {top}", flush=True)


if __name__ == "__main__":
    main()
