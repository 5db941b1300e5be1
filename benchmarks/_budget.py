"""Shared by the same-budget benchmarks: train a run for a wall-clock budget (or reuse a finished one), then
measure it the same way for every contestant: params, forward GFLOP per sample, training img/s, FID and label
accuracy (domain-classifier features, test split), and seconds to sample the n images."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from diffuse.generate import SampleConfig
from diffuse.images import save_grid
from diffuse.metrics import evaluate_denoiser
from diffuse.model import load_model, read_run_config
from diffuse.train import TrainConfig, train


def train_or_reuse(cfg: TrainConfig, reuse: bool, log=print) -> dict[str, Any]:
    """Train cfg (``cfg.out``) unless ``reuse`` and a run is there; returns its training record."""
    run = Path(cfg.out)
    if reuse and (run / "model.safetensors").is_file():
        log(f"reusing {run}")
    else:
        log(f"training {run} for " + (f"{cfg.minutes} min ..." if cfg.minutes is not None else f"{cfg.steps} steps ..."))
        t0 = time.monotonic()
        train(cfg)
        log(f"  done in {time.monotonic() - t0:.0f} s" + (" (the budget excludes encoding the data to latents)" if cfg.latent else ""))
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in recs if "loss" in r]
    return {"steps": steps[-1]["step"], "images": steps[-1]["nimg"], "seconds": steps[-1]["seconds"],
            "img_per_s": statistics.median(r["img_per_s"] for r in steps[1:] or steps),
            "train": read_run_config(run)["train"]}


def gflop_per_sample(model: torch.nn.Module, shape: tuple[int, ...], cond: Any = None) -> float:
    """Forward FLOPs of one denoiser call per sample (torch.utils.flop_counter), in GFLOP."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, *shape)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x, torch.ones(2), cond)
    return fc.get_total_flops() / 2 / 1e9


def measure(run: Path, n: int, out_png: Path, log=print, scfg: SampleConfig | None = None) -> dict[str, Any]:
    """Params, GFLOP/sample, FID/accuracy of n samples at the default sampler (or ``scfg``), and the sampling seconds."""
    model, mcfg = load_model(run)
    labels = torch.zeros(2, dtype=torch.long) if mcfg.num_classes else None
    res = evaluate_denoiser(model, mcfg.data, mcfg.data_dir, mcfg.num_classes, n, scfg or SampleConfig(), log)
    save_grid(out_png, res.pop("images")[:100], res.pop("labels")[:100])
    codec = getattr(model, "codec", None)
    decode_gflop = 0.0
    if codec is not None:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            codec.decode(torch.randn(2, *mcfg.net_shape))
        decode_gflop = fc.get_total_flops() / 2 / 1e9
    return {"decode_gflop_per_sample": decode_gflop, "params": sum(p.numel() for p in model.net.parameters()),
            "ae_params": sum(p.numel() for p in codec.ae.parameters()) if codec else 0,
            "gflop_per_sample": gflop_per_sample(model, mcfg.net_shape, labels), "eval": res}


def contestant(cfg: TrainConfig, reuse: bool, n: int, out_png: Path, scfg: SampleConfig | None = None,
               **fields: Any) -> dict[str, Any]:
    """One row of a same-budget benchmark: train (or reuse) cfg, then measure it; ``fields`` label the row."""
    t0 = time.monotonic()
    info = train_or_reuse(cfg, reuse)
    info["wall_seconds"] = time.monotonic() - t0
    return {**fields, "train": info, **measure(Path(cfg.out), n, out_png, scfg=scfg)}
