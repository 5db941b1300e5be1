"""The moving Fashion-MNIST text-to-video recipe, end to end: real clips and two broken versions of them (the
sanity rows: a metric blind to motion would score them like real clips), then the model on held-out phrasings
(templates and verbs never in a training caption), with and without snapping each prompt to its nearest training
caption (what `diffuse sample` does by default), and image-to-video: the first frame of a real test clip given, the
direction asked by a held-out phrasing.

    diffuse train --data moving-fmnist --cond text --model dit --minutes 20 --out runs/video
    python benchmarks/video_recipe.py runs/video [--n 240] [--steps 10] [--guidance W] [--guidance-interval LO,HI] [--apg ETA,R,B] [--resample K]
        [--weights ema|raw]

Targets (issue 14), held-out phrasings: class adherence >= 80%, direction accuracy >= 80%.
Scores (metrics/video.py): class = the frame classifier's majority over frames; direction = the centroid track's
least-squares slope snapped to 8 directions (slower than 0.3 px/frame: none); consistency = share of frames agreeing
with the clip's class; FD = Frechet distance to the test clips in the clip network's features. Each model row is
followed by its class accuracy per object and what a missed object was read as most often.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffuse.checkpoint import load_into, load_tensors  # noqa: E402
from diffuse.data.moving import DIRECTIONS, heldout_prompt  # noqa: E402
from diffuse.editing import Edit  # noqa: E402
from diffuse.generate import SampleConfig, generate, parse_interval, parse_projection  # noqa: E402
from diffuse.metrics.fid import feature_stats, frechet_distance  # noqa: E402
from diffuse.metrics.video import VideoJudge, clip_features  # noqa: E402
from diffuse.model import load_model  # noqa: E402
from diffuse.pixels import to_model_space, to_uint8  # noqa: E402
from diffuse.text.retrieval import snap_prompts  # noqa: E402

HEADER = f"{'clips':58s} {'class':>6s} {'dir':>6s} {'both':>6s} {'consist':>8s} {'still':>6s} {'FD':>7s}"


def row(judge: VideoJudge, name: str, clips: torch.Tensor, cls: torch.Tensor, d: torch.Tensor, ref, by_object: bool = False) -> dict:
    s = judge.clip_scores(clips)
    ok_c, ok_d = s["class"] == cls, s["direction"] == d
    fd = frechet_distance(*feature_stats(clip_features(judge.net, clips)[0]), *ref)
    r = {"name": name, "n": len(clips), "class": float(ok_c.float().mean()), "direction": float(ok_d.float().mean()),
         "both": float((ok_c & ok_d).float().mean()), "consistency": float(s["consistency"].mean()),
         "still": float((s["direction"] < 0).float().mean()), "fd": fd}
    print(f"{name:58s} {r['class']:6.1%} {r['direction']:6.1%} {r['both']:6.1%} {r['consistency']:8.1%} {r['still']:6.1%} {fd:7.2f}",
          flush=True)
    if by_object:
        r["per_class"] = per_class(judge, s["class"], cls)
    return r


def per_class(judge: VideoJudge, got: torch.Tensor, cls: torch.Tensor) -> dict:
    """Class accuracy per object from the judge's reads ``got``, and the wrong read most often made of each object:
    where class adherence is lost."""
    names, out = judge.object_names, {}
    for k in range(judge.num_classes):
        mine = got[cls == k]
        wrong = mine[mine != k]
        out[names[k]] = {"accuracy": float((mine == k).float().mean()),
                         "read_as": names[int(wrong.mode().values)] if len(wrong) else None}
    print("  per class: " + ", ".join(f"{k} {v['accuracy']:.0%}" + (f" (else {v['read_as']})" if v["accuracy"] < 0.8 else "")
                                      for k, v in out.items()), flush=True)
    return out


def load_weights(run: Path, model, which: str) -> None:
    """--weights raw: the trainer's raw weights from RUN/state (what the EMA averages), in place of the EMA."""
    if which == "raw":
        path = run / "state" / "state.safetensors"
        tensors, _ = load_tensors(path, "training state")
        load_into(model.net, {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, path)


def per_sample_text(texts: list[str], encoder: str):
    from diffuse.text.bank import CaptionBank, TextRows

    bank = CaptionBank.build(texts, encoder, cache=False)
    return TextRows(bank.cond(bank.index(bank.texts)), bank.index(texts))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=240, help="clips per row (3 per (class, direction) pair at 240)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sampler", default=None, help="as diffuse sample --sampler (default dpmpp_2m)")
    ap.add_argument("--churn", type=float, default=0.0, help="heun only: EDM's S_churn")
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--guidance-interval", default=None, help="LO,HI: guide only at LO < sigma <= HI")
    ap.add_argument("--apg", default=None, help="ETA[,RESCALE[,MOMENTUM]]: adaptive projected guidance (as diffuse sample --apg)")
    ap.add_argument("--resample", type=int, default=1, help="image-to-video: RePaint passes per step")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="only the raw held-out row (architecture sweeps)")
    ap.add_argument("--snapped-only", action="store_true", help="only the snapped held-out row (the CLI's default)")
    ap.add_argument("--seed", type=int, default=0, help="sampling noise (0: the tables in the README)")
    ap.add_argument("--weights", choices=("ema", "raw"), default="ema", help="raw: the trainer's weights, not their EMA")
    args = ap.parse_args()
    model, mcfg = load_model(args.run)
    load_weights(args.run, model, args.weights)
    judge = VideoJudge(mcfg.data, mcfg.data_dir)
    print(f"frame classifier test accuracy {judge.frame_classifier_accuracy:.1%}; clip network {judge.clipnet_accuracy}")
    ref = feature_stats(judge.reference())
    n, g = args.n, torch.Generator().manual_seed(0)
    test = judge.test
    idx = torch.randperm(len(test), generator=g)[:n]
    real, cls, d = test.images[idx], test.extra["class"][idx], test.extra["direction"][idx]
    t = real.shape[2]
    rows = [row(judge, "real test clips", real, cls, d, ref),
            row(judge, "real training clips (FD floor at this n)", judge.train.images[idx],
                judge.train.extra["class"][idx], judge.train.extra["direction"][idx], ref),
            row(judge, "sanity: real clips, frames shuffled", real[:, :, torch.randperm(t, generator=g)], cls, d, ref),
            row(judge, "sanity: real clips, first frame repeated", real[:, :, :1].expand(-1, -1, t, -1, -1).contiguous(), cls, d, ref)]
    # the model: each (class, direction) pair in turn, a held-out phrasing each time
    k = torch.arange(n)
    want_c, want_d = (k // 8) % judge.num_classes, k % 8
    objects = judge.train.class_names[::8]
    names = [n.rsplit(" moving ", 1)[0] for n in objects]
    prompts = [heldout_prompt(names[c], DIRECTIONS[dd], int(i)) for i, c, dd in zip(k, want_c, want_d)]
    print("held-out prompts, e.g.:", "; ".join(prompts[:4]))
    scfg = SampleConfig(sampler=args.sampler, churn=args.churn, steps=args.steps, guidance=args.guidance, guidance_interval=parse_interval(args.guidance_interval),
                        apg=parse_projection(args.apg), seed=args.seed)
    tag = f"guidance {scfg.guidance_for(True, text=mcfg.cond == 'text'):g}, {args.steps} steps"
    tag += f", {args.sampler}" if args.sampler else ""
    tag += f", churn {args.churn:g}" if args.churn else ""
    tag += f", seed {args.seed}" if args.seed else ""
    tag += ", raw weights" if args.weights == "raw" else ""
    if scfg.guidance_interval is not None:
        tag += f", interval {args.guidance_interval}"
    tag += f", apg {args.apg}" if args.apg else ""
    if mcfg.cond == "class":  # a (class, direction) model: the labels asked, no words (what the text path costs)
        t0 = time.time()
        x = generate(model, n, scfg, labels=want_c * 8 + want_d)
        rows.append(row(judge, f"class labels ({tag})", to_uint8(x), want_c, want_d, ref,
                        by_object=True))
        print(f"  {time.time() - t0:.0f} s to sample {n}", flush=True)
    for snap in () if mcfg.cond == "class" else (False,) if args.quick else (True,) if args.snapped_only else (False, True):
        texts, _ = snap_prompts(prompts, args.run, mcfg, snap)
        t0 = time.time()
        x = generate(model, n, scfg, text=per_sample_text(texts, mcfg.text_encoder))
        label = f"text, held-out phrasings{', snapped' if snap else ', raw'} ({tag})"
        rows.append(row(judge, label, to_uint8(x), want_c, want_d, ref, by_object=True))
        print(f"  {time.time() - t0:.0f} s to sample {n}", flush=True)
    if args.quick or args.snapped_only or mcfg.cond == "class":
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    # image-to-video: the first frame of a real test clip of the wanted class and direction (so that the path asked
    # stays in the frame), the direction asked by a held-out phrasing
    first = torch.stack([test.images[(test.labels == c * 8 + dd).nonzero()[i // 80, 0], :, 0]
                         for i, (c, dd) in enumerate(zip(want_c.tolist(), want_d.tolist()))])
    init = to_model_space(first)[:, :, None].expand(-1, -1, t, -1, -1).contiguous()
    mask = torch.zeros(1, 1, *init.shape[2:])
    mask[:, :, 0] = 1
    texts, _ = snap_prompts(prompts, args.run, mcfg, False)
    x = generate(model, n, scfg, text=per_sample_text(texts, mcfg.text_encoder), edit=Edit(init, 1.0, mask, args.resample))
    rows.append(row(judge, f"image-to-video, held-out phrasings, raw (resample {args.resample})", to_uint8(x), want_c, want_d, ref))
    print(HEADER)
    for r in rows:
        print(f"{r['name']:58s} {r['class']:6.1%} {r['direction']:6.1%} {r['both']:6.1%} {r['consistency']:8.1%} "
              f"{r['still']:6.1%} {r['fd']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
