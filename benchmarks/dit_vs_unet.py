"""Same budget, two backbones: our U-Net against the DiT on Fashion-MNIST, class-conditional.

    python benchmarks/dit_vs_unet.py --minutes 10 --n 1000 --out runs/bench-backbone [--reuse]

Each is ``diffuse train --data fashion-mnist --cond class --minutes M`` with ``--model unet`` (the default recipe:
preset fmnist) or ``--model dit`` (preset fmnist: width 192, depth 6, 2x2 patches, lr 5e-4), trained one after
the other on this machine, then sampled with the default sampler (DPM-Solver++(2M), 10 steps, guidance 3) and
scored with the same domain classifier. Prints a table; writes OUT/results.json and OUT/<model>.png grids.
``--reuse`` keeps runs already in OUT (a run trained by an earlier invocation of this same script)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _budget import contestant

from diffuse.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default="runs/bench-backbone")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for arch in ("unet", "dit"):
        cfg = TrainConfig(data="fashion-mnist", cond="class", arch=arch, minutes=args.minutes, out=str(out / arch),
                          sample_every=10**9, checkpoint_every=10**9)
        rows.append(contestant(cfg, args.reuse, args.n, out / f"{arch}.png", model=arch))
    e0 = rows[0]["eval"]
    print(f"\nFashion-MNIST, {args.minutes:g} min of training each, n={args.n}, DPM-Solver++(2M) 10 steps, guidance 3; FID in the "
          f"domain classifier's features (real-data floor at this n: {e0['fid_real']:.2f})\n")
    print("| backbone | params | GFLOP/sample | train img/s | images seen | FID | label acc | sampling s |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, e = r["train"], r["eval"]
        print(f"| {r['model']} | {r['params'] / 1e6:.2f}M | {r['gflop_per_sample']:.3f} | {t['img_per_s']:.0f} | {t['images']} "
              f"| {e['fid']:.2f} | {e['label_accuracy']:.1%} | {e['sample_seconds']:.1f} |")
    u, d = rows
    print(f"DiT / U-Net: train img/s {d['train']['img_per_s'] / u['train']['img_per_s']:.2f}x, FID {d['eval']['fid'] / u['eval']['fid']:.2f}x, "
          f"sampling time {d['eval']['sample_seconds'] / u['eval']['sample_seconds']:.2f}x")
    (out / "results.json").write_text(json.dumps({"minutes": args.minutes, "n": args.n, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
