"""`diffuse bench restore`: diffusion solvers against classical reconstructions on the same measurements.

For each task (operator) a validation split (the first ``val`` test images, seed 0) tunes the TV weight lambda and the
DPS step zeta; then every method reconstructs ``n`` further test images for each of ``seeds`` seeds (a seed draws the
measurement noise, the MRI lines and the solver's noise). Figures per method, means over images and seeds: PSNR and
SSIM (scikit-image, data range 1), the data-consistency residual ||A x - y|| / ||y||, the domain classifier's accuracy
on the reconstructions, network evaluations and seconds per image, and for posterior samplers (K >= 2) the calibration
of the std map: the share of pixels with |error| < 2 std.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch

from .baselines import psnr, tv, zero_filled
from .io import OperatorSpec
from .operators import Operator
from .restore import RestoreConfig, nfe, restore

# name -> (operator spec, measurement noise sigma_y): the six tasks on 28 x 28 images
TASKS: dict[str, OperatorSpec] = {
    "inpaint": OperatorSpec("inpaint", sigma_y=0.01),
    "superres4": OperatorSpec("superres", factor=4, sigma_y=0.01),
    "blur": OperatorSpec("blur", blur_sigma=1.5, sigma_y=0.01),
    "mri4": OperatorSpec("mri", acceleration=4, sigma_y=0.01),
    "mri8": OperatorSpec("mri", acceleration=8, sigma_y=0.01),
    "ct8": OperatorSpec("ct", angles=8, sigma_y=0.01),
}
TV_LAMBDAS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
DPS_ZETAS = (1.0, 3.0, 10.0)


@dataclass
class BenchConfig:
    n: int = 200
    seeds: int = 3
    val: int = 32
    samples: int = 2
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    solvers: dict[str, int] = field(default_factory=lambda: {"ddrm": 50, "dps": 50, "diffpir": 20, "dc": 20})  # solver -> steps
    # per-task step overrides: CT's 8 views leave DDRM's many weakly measured coefficients to the prior; more steps help
    # there (measured on the validation images: 24.5 dB at 20 steps, 25.8 at 50, 26.3 at 100, 27.4 at 200)
    task_steps: dict[str, dict[str, int]] = field(default_factory=lambda: {"ct8": {"ddrm": 200}})


def _ssim(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    from skimage.metrics import structural_similarity

    return torch.tensor([structural_similarity(a[0].numpy(), b[0].numpy(), data_range=1.0) for a, b in zip(x, t)])


def _with_seed(spec: OperatorSpec, seed: int) -> OperatorSpec:
    return replace(spec, seed=seed)


def run_task(model: Any, judge: Any, task: str, truth_val: torch.Tensor, truth: torch.Tensor, labels: torch.Tensor,
             cfg: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Every method on one task: {"tuned": {...}, "methods": {name: figures}, "figure": rows of images for the first few}."""
    shape = tuple(truth.shape[1:])
    spec = TASKS[task]
    solvers = {**cfg.solvers, **{k: v for k, v in cfg.task_steps.get(task, {}).items() if k in cfg.solvers}}

    def measure(x: torch.Tensor, seed: int) -> tuple[Operator, torch.Tensor]:
        op = _with_seed(spec, seed).build(shape)
        return op, op.measure(x, torch.Generator().manual_seed(10_000 + seed))

    op, y = measure(truth_val, 0)
    tuned = {"tv_lambda": max(TV_LAMBDAS, key=lambda lam: float(psnr(tv(op, y, lam), truth_val).mean()))}
    if "dps" in solvers:
        def dps_psnr(z: float) -> float:
            r = restore(model, op, y, RestoreConfig("dps", solvers["dps"], 1, z, seed=0)).mean(0)
            return float(psnr(r, truth_val).mean())
        tuned["dps_zeta"] = max(DPS_ZETAS, key=dps_psnr)
    log(f"  tuned on {len(truth_val)} validation images: {tuned}")

    methods: dict[str, Callable[[Operator, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor | None]]] = {
        "zero-filled": lambda op, y, s: (zero_filled(op, y), None),
        "tv": lambda op, y, s: (tv(op, y, tuned["tv_lambda"]), None),
    }
    if spec.name == "ct":
        methods["fbp"] = lambda op, y, s: (op.fbp(y).clamp(0, 1), None)
    costs = {"zero-filled": 0, "tv": 0, "fbp": 0}
    for solver, steps in solvers.items():
        strength = tuned.get("dps_zeta") if solver == "dps" else None
        rc = RestoreConfig(solver, steps, cfg.samples, strength)

        def solve(op, y, s, rc=rc):
            rc.seed = s
            k = restore(model, op, y, rc)
            return k.mean(0), k.std(0)  # Bessel-corrected: K is small

        methods[f"{solver}-{steps}"] = solve
        costs[f"{solver}-{steps}"] = nfe(rc) * cfg.samples
    rows: dict[str, dict[str, list]] = {m: {"psnr": [], "ssim": [], "residual": [], "correct": [], "calibration": [], "seconds": []}
                                        for m in methods}
    figure: dict[str, torch.Tensor] = {}
    for seed in range(cfg.seeds):
        op, y = measure(truth, seed)
        if seed == 0:
            figure["truth"], figure["measurement"] = truth[:8], op.view(y[:8]).clamp(0, 1)
        for name, fn in methods.items():
            t0 = time.monotonic()
            rec, std = fn(op, y, seed)
            r = rows[name]
            r["seconds"].append((time.monotonic() - t0) / len(truth))
            r["psnr"].append(psnr(rec, truth))
            r["ssim"].append(_ssim(rec, truth))
            r["residual"].append(op.residual(rec, y))
            r["correct"].append((judge.score(rec * 2 - 1)[1] == labels).float())
            if std is not None:
                r["calibration"].append(((rec - truth).abs() < 2 * std).float().flatten(1).mean(1))
            if seed == 0:
                figure[name] = rec[:8]
                if std is not None:
                    figure[f"{name} std"] = std[:8] / std[:8].amax((1, 2, 3), keepdim=True).clamp_min(1e-8)
            log(f"  seed {seed} {name}: PSNR {float(r['psnr'][-1].mean()):.2f}")
    out = {}
    for name, r in rows.items():
        per_seed = [float(p.mean()) for p in r["psnr"]]
        out[name] = {"psnr": float(np.mean(per_seed)), "psnr_seed_std": float(np.std(per_seed)),
                     "ssim": float(torch.cat(r["ssim"]).mean()), "residual": float(torch.cat(r["residual"]).mean()),
                     "classifier_accuracy": float(torch.cat(r["correct"]).mean()), "nfe": costs[name],
                     "seconds_per_image": float(np.median(r["seconds"])),
                     "calibration": float(torch.cat(r["calibration"]).mean()) if r["calibration"] else None}
    return {"tuned": tuned, "methods": out, "figure": figure}


def run(run_dir: str, cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole benchmark on a run trained on Fashion-MNIST (or any image dataset with a test split and labels)."""
    from ..data import load_dataset
    from ..metrics.judge import judge_for
    from ..modalities import modality_of
    from ..model import load_model

    model, mcfg = load_model(run_dir)
    test = load_dataset(mcfg.data, "test", mcfg.data_dir, mcfg.image_size)
    if len(test) < cfg.val + cfg.n:
        raise ValueError(f"the test split has {len(test)} images; --val {cfg.val} + --n {cfg.n} need more")
    judge = judge_for(modality_of(mcfg), mcfg.data, mcfg.data_dir, log=lambda m: None)
    x = test.images.float() / 255
    truth_val, truth, labels = x[: cfg.val], x[cfg.val : cfg.val + cfg.n], test.labels[cfg.val : cfg.val + cfg.n]
    results = {}
    for task in cfg.tasks:
        log(f"{task}:")
        results[task] = run_task(model, judge, task, truth_val, truth, labels, cfg, log)
    return results


def table(results: dict[str, Any]) -> str:
    """A markdown table: one row per task and method."""
    lines = ["| task | method | PSNR (dB) | SSIM | residual | classifier acc. | NFE / image | s / image | \\|err\\| < 2 std |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, res in results.items():
        for name, m in res["methods"].items():
            cal = "" if m["calibration"] is None else f"{100 * m['calibration']:.1f}%"
            lines.append(f"| {task} | {name} | {m['psnr']:.2f} ± {m['psnr_seed_std']:.2f} | {m['ssim']:.3f} | {m['residual']:.3f} | "
                         f"{100 * m['classifier_accuracy']:.1f}% | {m['nfe']} | {m['seconds_per_image']:.3f} | {cal} |")
    return "\n".join(lines)


def save_figure(path: Any, figure: dict[str, torch.Tensor]) -> None:
    """One row per entry (truth, measurement, each method, std maps), 8 images each, upscaled 2x."""
    from ..images import make_grid, save_png

    rows = torch.cat([(t.clamp(0, 1) * 255).round().to(torch.uint8) for t in figure.values()])
    save_png(path, make_grid(rows, ncol=len(next(iter(figure.values()))), scale=2))


def run_benchmark_to(run_dir: str, cfg: BenchConfig, out: Any, log: Callable[[str], None] = print) -> tuple[dict[str, Any], str]:
    """``run``, then OUT/restore_<task>.png, OUT/restore.json and OUT/restore.md; returns the results and the table."""
    import json
    from pathlib import Path

    res = run(run_dir, cfg, log)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for task, r in res.items():
        save_figure(out / f"restore_{task}.png", r.pop("figure"))
    md = table(res)
    (out / "restore.json").write_text(json.dumps({"config": cfg.__dict__, "results": res}, indent=1))
    (out / "restore.md").write_text(md + "\n")
    return res, md
