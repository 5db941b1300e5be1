"""Does the bf16 fast path cost quality? The same recipe for the same number of steps in fp32 and in bf16.

    python benchmarks/precision_quality.py --steps 600 --n 1000 --out runs/bench-precision [--reuse]

Trains the default class-conditional Fashion-MNIST recipe for ``--steps`` steps three times, one after the other:
fp32 (seed 0), fp32 (seed 1) and bf16 autocast (seed 0, `--precision bf16`: forced, since `auto` picks fp32 on CPUs
without AMX). Each is sampled in its own precision with the default sampler (n images, labels i mod 10) and scored
with the same domain classifier. The two fp32 seeds give the noise floor: bf16 is "within noise" when its FID
differs from fp32's (same seed) by no more than the two fp32 seeds differ from each other. Prints a table; writes
OUT/results.json and OUT/<name>.png grids. Wall-clock figures are this machine's (no AMX: bf16 runs slower here).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _budget import contestant

from diffuse.generate import SampleConfig
from diffuse.train import TrainConfig

RUNS = (("fp32-seed0", "fp32", 0), ("fp32-seed1", "fp32", 1), ("bf16-seed0", "bf16", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default="runs/bench-precision")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for name, precision, seed in RUNS:
        cfg = TrainConfig(data="fashion-mnist", cond="class", steps=args.steps, seed=seed, precision=precision,
                          out=str(out / name), sample_every=10**9, checkpoint_every=10**9)
        rows.append(contestant(cfg, args.reuse, args.n, out / f"{name}.png", SampleConfig(precision=precision),
                               name=name, precision=precision, seed=seed))
        print(f"{name}: FID {rows[-1]['eval']['fid']:.2f}", flush=True)
    a, b, h = rows
    e0 = a["eval"]
    print(f"\nFashion-MNIST, {args.steps} steps each (batch 128), n={args.n}, DPM-Solver++(2M) 10 steps, guidance 3; FID in the "
          f"domain classifier's features (real-data floor at this n: {e0['fid_real']:.2f})\n")
    print("| run | train img/s | final loss | FID | label acc | sampling s |\n|---|---|---|---|---|---|")
    for r in rows:
        t, e = r["train"], r["eval"]
        loss = json.loads([x for x in (out / r["name"] / "metrics.jsonl").read_text().splitlines() if '"loss"' in x][-1])["loss"]
        print(f"| {r['name']} | {t['img_per_s']:.0f} | {loss:.4f} | {e['fid']:.2f} | {e['label_accuracy']:.1%} | {e['sample_seconds']:.1f} |")
    seed_gap = abs(a["eval"]["fid"] - b["eval"]["fid"])
    bf_gap = abs(h["eval"]["fid"] - a["eval"]["fid"])
    print(f"\n|FID bf16 - FID fp32| = {bf_gap:.2f} (same seed); |FID fp32 seed 0 - seed 1| = {seed_gap:.2f} -> "
          f"{'within' if bf_gap <= seed_gap else 'outside'} the seed-to-seed noise")
    (out / "results.json").write_text(json.dumps({"steps": args.steps, "n": args.n, "rows": rows,
                                                  "bf16_gap": bf_gap, "seed_gap": seed_gap}, indent=2))


if __name__ == "__main__":
    main()
