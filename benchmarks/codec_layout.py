"""The autoencoder's memory layout on the CPU: channels-last (what `autoencoder.Autoencoder` keeps) against the plain
NCHW layout it used before, side by side in one process, on real test items: the training set's one-off encoding
(`LatentCodec.posterior`), the decoding that sampling ends with, and one training step (forward, backward, AdamW).

    python benchmarks/codec_layout.py runs/ae-moving8 [--n 1000] [--repeats 3]

Prints the median seconds of each layout, their ratio, and the largest difference between the two layouts' latents
(they differ only by the order of floating-point sums)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from diffuse.codecs.autoencoder import load_codec, read_ae_config  # noqa: E402
from diffuse.data import load_dataset, to_model_space  # noqa: E402


def set_layout(codec, layout: torch.memory_format) -> None:
    codec.ae.layout = layout
    codec.ae.to(memory_format=layout)


def timed(fn, repeats: int) -> float:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ae", type=Path, help="a trained autoencoder directory")
    ap.add_argument("--n", type=int, default=1000, help="test items (a clip counts each of its frames)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    train_cfg = read_ae_config(args.ae)["train"]
    cfg = load_codec(args.ae).ae.cfg
    x = to_model_space(load_dataset(train_cfg["data"], "test", train_cfg.get("data_dir")).images[: args.n])
    frames = x.shape[0] * (x.shape[2] if cfg.per_frame else 1)
    results, latents = {}, {}
    for name in ("NCHW", "channels-last"):
        codec = load_codec(args.ae)  # fresh weights for each layout (the training steps below move them)
        if name == "NCHW":
            set_layout(codec, torch.contiguous_format)
        latents[name] = codec.posterior(x)[0]
        z = latents[name][:500]
        enc = timed(lambda: codec.posterior(x), args.repeats)
        dec = timed(lambda: codec.decode(z), args.repeats)
        ae = codec.ae.train().requires_grad_(True)
        opt = torch.optim.AdamW(ae.parameters(), lr=1e-5)
        batch = x[:64, :, :1] if cfg.per_frame else x[:64]

        def step():
            x_hat, kl = ae(batch, torch.Generator().manual_seed(0))
            loss = (x_hat - batch).abs().mean() + 1e-6 * kl.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        step()
        train = timed(lambda: [step() for _ in range(5)], args.repeats) / 5
        codec.ae.eval().requires_grad_(False)
        results[name] = (enc, dec, train)
        print(f"{name:14s} encode {frames} frames {enc:6.2f} s   decode {len(z) * (z.shape[2] if cfg.per_frame else 1)} "
              f"{dec:6.2f} s   train step (64) {train:6.3f} s", flush=True)
    a, b = results["NCHW"], results["channels-last"]
    print(f"speed-up of channels-last: encode {a[0] / b[0]:.2f}x, decode {a[1] / b[1]:.2f}x, train step {a[2] / b[2]:.2f}x")
    print(f"largest latent difference between the layouts: {(latents['NCHW'] - latents['channels-last']).abs().max():.2e}")
    print(f"(torch {torch.__version__}, {torch.get_num_threads()} threads, AMX {torch.cpu._is_amx_tile_supported()})")


if __name__ == "__main__":
    main()
