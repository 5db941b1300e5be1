"""Same budget, pixels against latents: class-conditional Fashion-MNIST at 28x28 and upsampled to 64x64.

    python benchmarks/latent_vs_pixel.py --minutes 10 --ae-minutes 4 --n 1000 --out runs/bench-latent [--reuse]

For each size S: ``diffuse train-autoencoder --data fashion-mnist [--image-size S] --minutes A`` (f4: 4x7x7 latents at
28, f8: 4x8x8 at 64), then ``diffuse train --data fashion-mnist --cond class [--image-size S] --minutes M`` once on
pixels and once with ``--latent AE`` (the same U-Net preset, fmnist; on latents without its 2x2 patches), one after
the other on this machine. Both are sampled with the default sampler and scored with the same domain classifier
(64x64 samples are scored after resizing to 28x28, as the data was made by upsampling). The autoencoder's minutes
and the one-off encoding of the data come on top of the latent model's budget and are printed separately.
Prints a table; writes OUT/results.json and OUT/<setting>.png grids."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _budget import contestant

from diffuse.train import TrainConfig
from diffuse.train.autoencoder import AETrainConfig, train_autoencoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--ae-minutes", type=float, default=4.0)
    ap.add_argument("--sizes", default="28,64")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default="runs/bench-latent")
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows, aes = [], {}
    if (out / "results.json").is_file():  # keep the other sizes' rows from an earlier invocation
        old = json.loads((out / "results.json").read_text())
        rows = [r for r in old["rows"] if r["size"] not in sizes]
        aes = {int(k): v for k, v in old["autoencoders"].items() if int(k) not in sizes}
    for size in sizes:
        resize = None if size == 28 else size
        ae = out / f"ae{size}"
        if not (args.reuse and (ae / "model.safetensors").is_file() and "eval" in json.loads((ae / "config.json").read_text())):
            print(f"training the autoencoder {ae} for {args.ae_minutes} min ...", flush=True)
            train_autoencoder(AETrainConfig(data="fashion-mnist", image_size=resize, out=str(ae), minutes=args.ae_minutes))
        doc = json.loads((ae / "config.json").read_text())
        aes[size] = {**doc["eval"], "minutes": doc["train"]["minutes"], "preset": doc["model"]}
        for kind in ("pixel", "latent"):
            run = out / f"{kind}{size}"
            cfg = TrainConfig(data="fashion-mnist", cond="class", image_size=resize, latent=str(ae) if kind == "latent" else None,
                              minutes=args.minutes, out=str(run), sample_every=10**9, checkpoint_every=10**9)
            rows.append(contestant(cfg, args.reuse, args.n, out / f"{kind}{size}.png", size=size, model=kind))
    rows.sort(key=lambda r: (r["size"], r["model"] != "pixel"))
    print(f"\nFashion-MNIST, class-conditional U-Net (preset fmnist), {args.minutes:g} min of training each, n={args.n}, "
          "DPM-Solver++(2M) 10 steps, guidance 3; FID in the domain classifier's features\n")
    print("| size | space | denoiser GFLOP/sample | decoder GFLOP/sample | train img/s | images seen | FID | label acc | "
          "sampling s |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, e = r["train"], r["eval"]
        print(f"| {r['size']} | {r['model']} | {r['gflop_per_sample']:.3f} | {r['decode_gflop_per_sample']:.3f} | {t['img_per_s']:.0f} "
              f"| {t['images']} | {e['fid']:.2f} | {e['label_accuracy']:.1%} | {e['sample_seconds']:.1f} |")
    for size, ev in sorted(aes.items()):
        px, lt = [r for r in rows if r["size"] == size]
        print(f"{size}x{size}: latent / pixel train img/s {lt['train']['img_per_s'] / px['train']['img_per_s']:.2f}x, "
              f"sampling {px['eval']['sample_seconds'] / lt['eval']['sample_seconds']:.2f}x faster, FID {lt['eval']['fid'] / px['eval']['fid']:.2f}x; "
              f"autoencoder: {ev['seconds'] / 60:.1f} min, test PSNR {ev['psnr']:.2f} dB, rFID {ev.get('rfid', float('nan')):.2f}, "
              f"classifier accuracy on reconstructions {ev.get('acc_reconstructions', float('nan')):.1%}")
    (out / "results.json").write_text(json.dumps({"minutes": args.minutes, "n": args.n, "rows": rows, "autoencoders": aes}, indent=2))


if __name__ == "__main__":
    main()
