"""Reconstruction from measurements: the diffusion solvers of `diffuse restore` against zero-filled, TV and (CT) FBP.

    python benchmarks/restore.py --run runs/fmnist --out runs/bench-restore          # the README table
    python benchmarks/restore.py --run runs/fmnist --n 16 --seeds 1 --tasks mri4    # a quick look

The 10-minute Fashion-MNIST class model in its unconditional mode is the prior. Six tasks (inpainting of the centre
half, 4x super-resolution, Gaussian blur of width 1.5 px, MRI at 4x and 8x, CT from 8 views), all with measurement
noise sigma_y = 0.01. The first --val test images tune TV's lambda and DPS's zeta; the next --n images are measured and
reconstructed for each of --seeds seeds. See diffuse/inverse/bench.py for the figures. Run it alone: it times.
Writes OUT/restore.json, OUT/restore.md (the table) and OUT/restore_<task>.png (rows: truth, measurement, each method,
each solver's std map).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from diffuse.inverse.bench import TASKS, BenchConfig, run_benchmark_to


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--val", type=int, default=32)
    ap.add_argument("--samples", type=int, default=2, help="posterior samples K per image (their mean is the reconstruction)")
    ap.add_argument("--tasks", default=",".join(TASKS))
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = BenchConfig(n=args.n, seeds=args.seeds, val=args.val, samples=args.samples, tasks=args.tasks.split(","))
    _, md = run_benchmark_to(args.run, cfg, Path(args.out), log=lambda m: print(m, flush=True))
    print(md)

if __name__ == "__main__":
    main()
