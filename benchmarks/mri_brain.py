"""A real MRI demonstration: 4x-undersampled k-space of held-out slices of one real T1 brain (Colin27, Debian's
``mricron-data``), reconstructed with a prior trained on other slices of the same brain. One subject: a demonstration,
not a claim about generalisation.

    apt-get install mricron-data
    python benchmarks/mri_brain.py prepare --out runs/brain-data              # axial slices -> 64x64 .npz files
    diffuse train --data runs/brain-data/train.npz --flip --minutes 10 --preset fmnist --batch-size 32 --lr 2e-3 --ema-kimg 2 \
        --out runs/brain
    python benchmarks/mri_brain.py eval --run runs/brain --data runs/brain-data --out docs/mri_brain.png

``prepare``: the 181x217x181 1-mm volume, intensities scaled to [0, 1] by the 99.5th percentile, each axial slice padded
to a square and resized to 64x64. Slices 85-94 are held out; the training set is slices 20-160 except 65-114, so the
nearest training slice is 20 mm from the held-out slab. ``eval``: Cartesian 4x masks (a different random mask per slice)
with noise sigma_y = 0.01; zero-filled, TV (lambda tuned on 10 training slices, never on held-out ones) and the
diffusion solvers (4 posterior samples each); PSNR and SSIM over the whole 64x64 slice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

VOLUME = "/usr/share/mricron/templates/ch2.nii.gz"
HELD_OUT = range(85, 95)
TRAIN = [z for z in range(20, 161) if not 65 <= z < 115]


def slices(zs) -> np.ndarray:
    import nibabel

    vol = np.asarray(nibabel.load(VOLUME).get_fdata(), dtype=np.float32)  # [181, 217, 181]: x, y, z (axial = z)
    vol = np.clip(vol / np.percentile(vol, 99.5), 0, 1)
    s = torch.from_numpy(np.stack([np.rot90(vol[:, :, z]) for z in zs]).copy())[:, None]  # [N, 1, 217, 181]
    h, w = s.shape[-2:]
    side = max(h, w)
    s = F.pad(s, ((side - w) // 2, side - w - (side - w) // 2, (side - h) // 2, side - h - (side - h) // 2))
    s = F.interpolate(s, size=(64, 64), mode="area")
    return (s[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def evaluate(args) -> None:
    from skimage.metrics import structural_similarity

    from diffuse.images import make_grid, save_png
    from diffuse.inverse.baselines import psnr, tv, zero_filled
    from diffuse.inverse.operators import MRI
    from diffuse.inverse.restore import RestoreConfig, restore
    from diffuse.model import load_model

    model, _ = load_model(args.run)
    data = Path(args.data)
    held = torch.from_numpy(np.load(data / "heldout.npz")["images"]).float()[:, None] / 255
    tune = torch.from_numpy(np.load(data / "train.npz")["images"][::8][:10]).float()[:, None] / 255

    def measure(x, seed):
        out = []
        for i, img in enumerate(x):
            op = MRI((1, 64, 64), 4.0, 0.01, seed=seed * 100 + i)
            out.append((op, op.measure(img[None], torch.Generator().manual_seed(seed * 100 + i))))
        return out

    def ssim(a, b):
        return float(structural_similarity(a[0, 0].numpy(), b[0, 0].numpy(), data_range=1.0))

    lams = (1e-3, 3e-3, 1e-2, 3e-2)
    tuned = max(lams, key=lambda lam: np.mean([float(psnr(tv(op, y, lam), x[None])[0]) for (op, y), x in zip(measure(tune, 9), tune)]))
    methods = {"zero-filled": lambda op, y: zero_filled(op, y), f"TV (lambda {tuned:g})": lambda op, y: tv(op, y, tuned)}
    for solver, steps in (("ddrm", 100), ("dps", 100)):
        methods[f"{solver}-{steps}, K={args.samples}"] = (
            lambda op, y, s=solver, n=steps: restore(model, op, y, RestoreConfig(s, n, args.samples, seed=0)).mean(0))
    rows = {"truth": held}
    print(f"{len(held)} held-out slices, MRI 4x (achieved {held.shape[-2] / MRI((1, 64, 64), 4.0).mask[:, 0].sum():.2f}x), "
          f"sigma_y 0.01\n| method | PSNR (dB) | SSIM |\n|---|---|---|")
    pairs = measure(held, 0)
    for name, fn in methods.items():
        recs = torch.cat([fn(op, y) for op, y in pairs])
        rows[name] = recs
        print(f"| {name} | {np.mean([float(psnr(r[None], x[None])[0]) for r, x in zip(recs, held)]):.2f} | "
              f"{np.mean([ssim(r[None], x[None]) for r, x in zip(recs, held)]):.3f} |")
    grid = torch.cat([(r[:6].clamp(0, 1) * 255).round().to(torch.uint8) for r in rows.values()])
    save_png(Path(args.out), make_grid(grid, ncol=6, scale=2))
    print(f"wrote {args.out}: rows {', '.join(rows)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["prepare", "eval"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--run")
    ap.add_argument("--data")
    ap.add_argument("--samples", type=int, default=4)
    args = ap.parse_args()
    if args.stage == "prepare":
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "train.npz", images=slices(TRAIN))
        np.savez_compressed(out / "heldout.npz", images=slices(HELD_OUT))
        print(f"wrote {len(TRAIN)} training and {len(HELD_OUT)} held-out 64x64 slices to {out}")
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
