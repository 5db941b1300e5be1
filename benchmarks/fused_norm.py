"""Is a fused GroupNorm + SiLU worth having on the CPU? The whole training step, eager against fused, in one process.

    python benchmarks/fused_norm.py [--reps 7] [--precision fp32|bf16]

The step is `diffuse bench throughput`'s (diffuse.bench.train_step: the Fashion-MNIST U-Net, batch 128, forward,
backward, fused AdamW, EMA). "fused" replaces both GroupNorm -> (AdaGN) -> SiLU chains of every residual block of the U-Net
by a torch.compile'd region (Inductor generates a single C++ loop nest for the normalisation and the
activation, forward and backward). The issue's bar: keep a fused path only if the whole step is >= 1.15x faster.
Eager and fused steps alternate, so machine noise hits both; the medians and their ratio are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from diffuse.bench import train_step
from diffuse.nets import unet


def gn_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float) -> torch.Tensor:
    return F.silu(F.group_norm(x, groups, weight, bias, eps))


def gn_mod_silu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor,
                groups: int, eps: float) -> torch.Tensor:
    return F.silu(F.group_norm(x, groups, weight, bias, eps) * (1 + scale) + shift)


def fused_forward(f1, f2):
    """ResBlock.forward (nets/unet.py) with its two norm -> (AdaGN) -> SiLU chains as compiled regions."""
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        n1, n2 = self.norm1, self.norm2
        h = self.conv1(f1(x, n1.weight, n1.bias, n1.num_groups, n1.eps))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(self.drop(f2(h, n2.weight, n2.bias, scale, shift, n2.num_groups, n2.eps)))
        return self.skip(x) + h

    return forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    a = ap.parse_args()
    eager = train_step("ours", a.precision)
    original = unet.ResBlock.forward
    patched = fused_forward(torch.compile(gn_silu, dynamic=False), torch.compile(gn_mod_silu, dynamic=False))
    unet.ResBlock.forward = patched
    fused = train_step("ours", a.precision)
    t0 = time.perf_counter()
    fused(), fused()  # compile (forward and backward graphs) outside the timing
    compile_s = time.perf_counter() - t0
    unet.ResBlock.forward = original
    eager(), eager()
    times = {"eager": [], "fused": []}
    for _ in range(a.reps):
        for name, step in (("eager", eager), ("fused", fused)):
            unet.ResBlock.forward = original if name == "eager" else patched
            t = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t)
    unet.ResBlock.forward = original
    e, f = statistics.median(times["eager"]), statistics.median(times["fused"])
    print(f"| precision | eager s/step | fused s/step | speed-up | compile s |\n|---|---|---|---|---|\n"
          f"| {a.precision} | {e:.3f} | {f:.3f} | {e / f:.3f}x | {compile_s:.0f} |")


if __name__ == "__main__":
    main()
