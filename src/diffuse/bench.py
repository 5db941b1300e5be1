"""Throughput benchmark: our U-Net against diffusers' UNet2DModel of the same shape, side by side.

    diffuse bench throughput [--json]        (also: python benchmarks/throughput.py)

Both networks get the same widths (32, 64, 128), two residual blocks per level, attention at 7x7,
GroupNorm with 8 groups, 28x28x1 inputs and 10 classes. Each measurement runs in a fresh subprocess
so that its peak RSS is its own: training img/s (forward, backward, AdamW, EMA) at batch 128,
inference img/s at batch 256, and seconds to sample 64 images with 50 network evaluations (DDIM).
Medians of repeated timings; the machine's matmul peaks are measured in the same run.
"""

from __future__ import annotations

import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch

WIDTHS = (32, 64, 128)


def _build(kind: str) -> torch.nn.Module:
    """The raw network F(x_in, c_noise, labels) for ``ours`` or ``diffusers``."""
    if kind == "ours":
        from .nets import UNet, UNetConfig

        return UNet(UNetConfig(image_size=28, channels=WIDTHS[0], mults=tuple(w // WIDTHS[0] for w in WIDTHS), num_blocks=2,
                               attn_resolutions=(7,), num_classes=10, dropout=0.0, groups=8))
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=WIDTHS, layers_per_block=2,
                       down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8, num_class_embeds=10)

    class Eps(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet

        def forward(self, x, c, labels=None):
            return self.unet(x, c, class_labels=labels).sample

    return Eps()


def _median_time(fn, reps: int, device: torch.device = torch.device("cpu")) -> float:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    fn()
    ts = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _model(kind: str, cpu: torch.device) -> torch.nn.Module:
    from .precond import Precond, PrecondConfig

    torch.manual_seed(0)
    if cpu.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    net = _build(kind).to(cpu, memory_format=torch.channels_last)
    return Precond(net, PrecondConfig(param="eps", noise_input="vp_t") if kind == "diffusers" else PrecondConfig()).to(cpu)


def train_step(kind: str, precision: str = "fp32", device: str = "cpu", b: int = 128) -> Callable[[], None]:
    """One training step of ``kind`` as the benchmark times it: forward, backward, fused AdamW, EMA, batch ``b``."""
    from .generate import autocast
    from .train.ema import ema_update

    cpu, bf16 = torch.device(device), precision == "bf16"
    model = _model(kind, cpu)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randn(b, 1, 28, 28, device=cpu).contiguous(memory_format=torch.channels_last)
    labels, sigma = torch.randint(0, 10, (b,), device=cpu), torch.rand(b, device=cpu) * 5 + 0.01

    def step() -> None:
        with autocast(cpu, bf16):
            loss = (model(x + sigma.view(-1, 1, 1, 1) * torch.randn_like(x), sigma, labels).float() - x).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema, model, 0.999)

    return step


def measure(kind: str, precision: str, what: str, reps: int = 5, device: str = "cpu") -> dict[str, Any]:
    """One measurement in this process: ``train``, ``infer`` or ``sample``, on ``device``."""
    from .generate import autocast
    from .samplers import ddim
    from .schedules import karras_sigmas

    bf16 = precision == "bf16"
    cpu = torch.device(device)  # the device everything runs on
    out: dict[str, Any] = {"model": kind, "precision": precision, "what": what}
    if what == "train":
        out["img_per_s"] = 128 / _median_time(train_step(kind, precision, device, 128), reps, cpu)
    elif what == "infer":
        model = _model(kind, cpu)
        b = 256
        x = torch.randn(b, 1, 28, 28, device=cpu).contiguous(memory_format=torch.channels_last)
        labels, sigma = torch.randint(0, 10, (b,), device=cpu), torch.ones(b, device=cpu)

        @torch.no_grad()
        def fwd():
            with autocast(cpu, bf16):
                model(x, sigma, labels)

        out["img_per_s"] = b / _median_time(fwd, reps, cpu)
    else:
        model = _model(kind, cpu).eval()
        sigmas = karras_sigmas(50, 0.01, 80.0)
        z, labels = torch.randn(64, 1, 28, 28, device=cpu), torch.arange(64, device=cpu) % 10

        def run():
            with autocast(cpu, bf16):
                ddim(model, z * float(sigmas[0]), sigmas, cond=labels)

        out["seconds_64_at_50_nfe"] = _median_time(run, max(1, reps // 2), cpu)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cpu.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def model_stats(kind: str) -> dict[str, float]:
    """Parameters and forward FLOPs per image (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = _build(kind)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.randn(1, 1, 28, 28), torch.ones(1), torch.tensor([1]))
    return {"params": sum(p.numel() for p in net.parameters()), "gflop_per_img": fc.get_total_flops() / 1e9}


def matmul_peak(dtype: torch.dtype, n: int = 2048, device: str = "cpu") -> float:
    """Measured GFLOP/s of an n x n matmul in ``dtype`` (median of 5)."""
    dev = torch.device(device)
    n = 8192 if dev.type == "cuda" else n
    a, b = torch.randn(n, n, dtype=dtype, device=dev), torch.randn(n, n, dtype=dtype, device=dev)
    return 2 * n**3 / _median_time(lambda: a @ b, 5, dev) / 1e9


def run_all(models: tuple[str, ...] = ("ours", "diffusers"), precisions: tuple[str, ...] = ("fp32", "bf16"),
            log=print, device: str = "cpu") -> dict[str, Any]:
    """Every (model, precision, measurement) in its own subprocess; returns the whole table."""
    res: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": device,
                           "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                           "amx": bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()),
                           "peak_gflops": {"fp32": matmul_peak(torch.float32, device=device), "bf16": matmul_peak(torch.bfloat16, device=device)},
                           "models": {m: model_stats(m) for m in models}, "rows": []}
    for m in models:
        for p in precisions:
            for w in ("train", "infer", "sample"):
                log(f"measuring {m} {p} {w} ...")
                r = subprocess.run([sys.executable, "-m", "diffuse.bench", m, p, w, device], capture_output=True, text=True)
                if r.returncode != 0:
                    raise RuntimeError(f"{m} {p} {w} failed: {r.stderr[-500:]}")
                res["rows"].append(json.loads(r.stdout.strip().splitlines()[-1]))
    return res


def table(res: dict[str, Any]) -> str:
    """Markdown table with the ratios ours/diffusers and the share of the measured matmul peaks reached."""
    rows = {(r["model"], r["precision"], r["what"]): r for r in res["rows"]}
    pk = res["peak_gflops"]
    lines = [f"{res.get('device_name', 'cpu')}, torch {res['torch']}, {res['threads']} threads, AMX: {res['amx']}; measured matmul peak fp32 {pk['fp32']:.0f} GFLOP/s, "
             f"bf16 {pk['bf16']:.0f} GFLOP/s", ""]
    for m, st in res["models"].items():
        lines.append(f"- {m}: {st['params'] / 1e6:.2f}M params, {st['gflop_per_img']:.3f} GFLOP/img forward")
    lines += ["", "| model | precision | train img/s | train GFLOP/s (3x fwd) | % fp32 / bf16 peak | infer img/s | 64 imgs @ 50 NFE (s) | peak RSS (MB) |",
              "|---|---|---|---|---|---|---|---|"]
    for (m, p, w), r in rows.items():
        if w != "train":
            continue
        g = res["models"][m]["gflop_per_img"] * 3 * r["img_per_s"]
        inf, smp = rows[(m, p, "infer")], rows[(m, p, "sample")]
        rss = max(r["peak_rss_mb"], inf["peak_rss_mb"], smp["peak_rss_mb"])
        lines.append(f"| {m} | {p} | {r['img_per_s']:.0f} | {g:.0f} | {100 * g / pk['fp32']:.0f}% / {100 * g / pk['bf16']:.0f}% | "
                     f"{inf['img_per_s']:.0f} | {smp['seconds_64_at_50_nfe']:.1f} | {rss:.0f} |")
    if any(k[0] == "diffusers" for k in rows):
        lines.append("")
        for p in ("fp32", "bf16"):
            for q in ("fp32", "bf16"):
                o, d = rows.get(("ours", p, "train")), rows.get(("diffusers", q, "train"))
                if o and d:
                    oi, di = rows[("ours", p, "infer")], rows[("diffusers", q, "infer")]
                    os_, ds = rows[("ours", p, "sample")], rows[("diffusers", q, "sample")]
                    lines.append(f"ours {p} / diffusers {q}: train {o['img_per_s'] / d['img_per_s']:.2f}x, infer "
                                 f"{oi['img_per_s'] / di['img_per_s']:.2f}x, sampling {ds['seconds_64_at_50_nfe'] / os_['seconds_64_at_50_nfe']:.2f}x faster")
    return "\n".join(lines)


if __name__ == "__main__":  # one measurement, printed as JSON (run_all's subprocess)
    print(json.dumps(measure(sys.argv[1], sys.argv[2], sys.argv[3], device=sys.argv[4] if len(sys.argv) > 4 else "cpu")))
