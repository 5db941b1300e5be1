"""How the std map of `diffuse restore --samples K` calibrates as K grows, on one benchmark task.

    python benchmarks/restore_calibration.py --run runs/fmnist --task mri4 --n 200 --samples 8

The task's measurement of test images 32 .. 32 + n (seed 0, as `diffuse bench restore` draws it), DDRM (50 steps) with
K posterior samples; for K = 2, 4, ... up to --samples (the first K of the same draws): the PSNR of their mean and the
share of pixels whose error is under 2 std (about 95% if the posterior were Gaussian and the samples calibrated).
"""

from __future__ import annotations

import argparse

import torch

from diffuse.data import load_dataset
from diffuse.inverse.baselines import psnr
from diffuse.inverse.bench import TASKS, _with_seed
from diffuse.inverse.restore import RestoreConfig, restore
from diffuse.model import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--task", default="mri4", choices=list(TASKS))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    model, cfg = load_model(args.run)
    x = load_dataset(cfg.data, "test", cfg.data_dir, cfg.image_size).images[32 : 32 + args.n].float() / 255
    op = _with_seed(TASKS[args.task], 0).build(tuple(x.shape[1:]))
    y = op.measure(x, torch.Generator().manual_seed(10_000))
    draws = restore(model, op, y, RestoreConfig("ddrm", args.steps, args.samples))
    k = 2
    while k <= args.samples:
        mean, std = draws[:k].mean(0), draws[:k].std(0)
        inside = ((mean - x).abs() < 2 * std).float().mean()
        print(f"K={k}: PSNR of the mean {float(psnr(mean, x).mean()):.2f} dB, |err| < 2 std: {100 * float(inside):.1f}%")
        k *= 2


if __name__ == "__main__":
    main()
