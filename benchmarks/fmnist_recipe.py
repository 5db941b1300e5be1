"""Time to quality on Fashion-MNIST: our default recipe against diffusers' tuned recipe, same wall clock.

    pip install -e ".[bench]"
    python benchmarks/fmnist_recipe.py --minutes 10 --n 1000 --out runs/bench-fmnist

Both models are trained one after the other for the same minutes on this machine, class-conditional, then
sampled and scored with the same domain classifier (FID in its feature space against the test split, and
label accuracy). diffusers' recipe is the "tuned" one from the Foundation issue: UNet2DModel with 1.1M
params, attention at 7x7, DDPM epsilon loss, AdamW lr 1e-3, batch 128, no EMA, fp32, sampled with DDIM
50 steps. Ours is ``diffuse train --data fashion-mnist --cond class --minutes M``, sampled with our
default sampler and also with DDIM 50 for a like-for-like view. Prints a table and writes grids + JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from diffuse.data import get_batch, load_dataset
from diffuse.generate import SampleConfig
from diffuse.images import save_grid
from diffuse.metrics import evaluate_denoiser
from diffuse.model import load_model
from diffuse.precond import Precond, PrecondConfig
from diffuse.samplers import nfe as nfe_of
from diffuse.train import TrainConfig, train


class DiffusersEps(torch.nn.Module):
    """diffusers' UNet2DModel seen through our raw-network interface F(x_vp, t, labels) -> eps."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t, labels=None):
        return self.unet(x, t, class_labels=labels).sample


def diffusers_unet(num_classes: int):
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(24, 32, 64), layers_per_block=2,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       num_class_embeds=num_classes)


def train_diffusers(minutes: float, batch_size: int = 128, lr: float = 1e-3, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """diffusers' own training recipe (DDPMScheduler.add_noise, epsilon MSE, AdamW, no EMA), for a wall-clock budget."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    ds = load_dataset("fashion-mnist", "train")
    unet = diffusers_unet(ds.num_classes)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    t0, step = time.monotonic(), 0
    while time.monotonic() - t0 < minutes * 60:
        x0, labels = get_batch(ds, batch_size, step, seed)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (batch_size,))
        loss = F.mse_loss(unet(sched.add_noise(x0, noise, t), t, class_labels=labels).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    sec = time.monotonic() - t0
    info = {"steps": step, "images": step * batch_size, "seconds": sec, "img_per_s": step * batch_size / sec,
            "epochs": step * batch_size / len(ds), "params": sum(p.numel() for p in unet.parameters())}
    return unet.eval(), info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--n", type=int, default=1000, help="samples for FID and label accuracy")
    ap.add_argument("--out", default="runs/bench-fmnist")
    ap.add_argument("--skip-diffusers", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="reuse an existing run in OUT/ours instead of training")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, flush=True)  # noqa: E731
    rows = []

    run = out / "ours"
    if not args.reuse:
        log(f"training ours for {args.minutes} min ...")
        res = train(TrainConfig(data="fashion-mnist", cond="class", minutes=args.minutes, out=str(run), sample_every=10**9,
                                checkpoint_every=10**9))
        ours_info = {"steps": res.step, "images": res.nimg, "seconds": res.seconds, "img_per_s": res.nimg / res.seconds,
                     "epochs": res.nimg / 60000}
        (out / "ours_train.json").write_text(json.dumps(ours_info))
    else:
        ours_info = json.loads((out / "ours_train.json").read_text())
    model, mcfg = load_model(run)
    ours_info["params"] = sum(p.numel() for p in model.parameters())
    for scfg in (SampleConfig(), SampleConfig(guidance=1.0), SampleConfig(sampler="ddim", steps=50, guidance=1.0)):
        r = evaluate_denoiser(model, "fashion-mnist", None, mcfg.num_classes, args.n, scfg, log)
        save_grid(out / f"ours_{scfg.sampler}{scfg.steps}_w{r['sample_guidance']:g}.png", r.pop("images")[:100], r.pop("labels")[:100])
        rows.append({"model": "diffuse (ours)", "train": ours_info, "eval": r})

    if not args.skip_diffusers:
        log(f"training diffusers' tuned recipe for {args.minutes} min ...")
        unet, info = train_diffusers(args.minutes)
        save_file(unet.state_dict(), out / "diffusers_unet.safetensors")
        (out / "diffusers_train.json").write_text(json.dumps(info))
        den = Precond(DiffusersEps(unet), PrecondConfig(param="eps", noise_input="vp_t", beta_schedule="linear")).eval()
        # trained without label dropout, so no guidance (w = 1), sampled as the Foundation issue did: DDIM 50
        scfg = SampleConfig(sampler="ddim", steps=50, schedule="vp", spacing="leading", guidance=1.0)
        with torch.no_grad():
            r = evaluate_denoiser(den, "fashion-mnist", None, 10, args.n, scfg, log, shape=(1, 28, 28))
        save_grid(out / "diffusers_ddim50.png", r.pop("images")[:100], r.pop("labels")[:100])
        rows.append({"model": "diffusers UNet2DModel (tuned)", "train": info, "eval": r})

    print(f"\nFashion-MNIST, {args.minutes} min of training each on this machine, n={args.n} samples, "
          f"FID in the domain classifier's feature space (classifier test accuracy {rows[0]['eval']['classifier_test_accuracy']:.1%}; "
          f"real-data FID at this n: {rows[0]['eval']['fid_real']:.2f})\n")
    print("| model | params | img/s | epochs | sampler | NFE | guidance | FID | label acc |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, e = r["train"], r["eval"]
        nfe = nfe_of(e["sample_sampler"], e["sample_steps"]) * (1 if e["sample_guidance"] in (0, 1) else 2)
        print(f"| {r['model']} | {t['params'] / 1e6:.2f}M | {t['img_per_s']:.0f} | {t['epochs']:.2f} | {e['sample_sampler']} | {nfe} "
              f"| {e['sample_guidance']:g} | {e['fid']:.2f} | {e.get('label_accuracy', float('nan')):.1%} |")
    if not args.skip_diffusers:
        theirs = rows[-1]["eval"]
        for r in rows[:-1]:
            e = r["eval"]
            print(f"ratio vs diffusers ({e['sample_sampler']} {e['sample_steps']}, w={e['sample_guidance']:g}): "
                  f"FID theirs/ours {theirs['fid'] / e['fid']:.1f}x, label accuracy ours/theirs "
                  f"{e['label_accuracy'] / max(theirs['label_accuracy'], 1e-9):.2f}x")
    (out / "results.json").write_text(json.dumps({"minutes": args.minutes, "n": args.n, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
