"""``diffuse restore``: reconstruct images from linear measurements with a trained run as the prior (inverse/)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .cli_common import _BATCH, _DEVICE, _PRECISION, _SEED, _bar, _device, app, bench_app
from .errors import UserError


@app.command()
def restore(
    run: str = typer.Argument(..., help="the trained run whose model is the prior"),
    operator: str = typer.Option(..., help="inpaint | superres | blur | mri | ct"),
    out: str = typer.Option(..., help="FILE.npz (reconstruction, std, measurement, operator) or FILE.png (a grid)"),
    input: Optional[str] = typer.Option(None, "--input", help="images to measure: .png, .npz ('images' uint8 [N, H, W(, C)]) or DICOM .dcm"),
    measurements: Optional[str] = typer.Option(None, help="real measurements instead: an .npz with 'measurement' (+ 'mask' for mri / inpaint)"),
    solver: str = typer.Option("auto", help="auto (ddrm where the operator has an SVD, else dps) | ddrm | dps | diffpir | dc"),
    steps: Optional[int] = typer.Option(None, help="solver steps (default: the solver's, ddrm 20, dps 100, diffpir / dc 50)"),
    samples: int = typer.Option(1, help="K posterior samples: the output is their mean, with their per-pixel std"),
    strength: Optional[float] = typer.Option(None, help="the solver's knob: dps zeta, diffpir lambda, ddrm eta (default: the solver's)"),
    sampler: Optional[str] = typer.Option(None, help="the sampler dps, diffpir and dc step (default ddpm)"),
    acceleration: float = typer.Option(4.0, help="mri: undersampling factor R (> 1)"),
    factor: int = typer.Option(4, help="superres: the downsampling factor"),
    blur_sigma: float = typer.Option(1.5, help="blur: Gaussian width in pixels"),
    angles: int = typer.Option(16, help="ct: number of views over 180 degrees"),
    mask: Optional[str] = typer.Option(None, help="inpaint: a PNG, white = known (default: the centre half is unknown)"),
    sigma_y: float = typer.Option(0.0, help="measurement noise level (images in [0, 1]) to simulate and to assume"),
    mask_seed: int = typer.Option(0, help="mri: seed of the random k-space lines"),
    seed: int = _SEED,
    batch_size: int = _BATCH,
    precision: str = _PRECISION,
    device: str = _DEVICE,
) -> None:
    """Measure --input with an operator (or read real --measurements) and reconstruct it with the run as the prior."""
    import torch

    from .inverse.io import OperatorSpec, read_measurements, read_truth, write_result
    from .inverse.restore import RestoreConfig, image_shape
    from .inverse.restore import restore as run_restore
    from .inverse.solvers import SOLVERS
    from .model import load_model

    if (input is None) == (measurements is None):
        raise UserError("give exactly one of --input (images to measure) and --measurements (a measurement file)")
    if Path(out).suffix not in (".png", ".npz"):
        raise UserError(f"--out must end in .png or .npz, got {out}")
    if solver != "auto" and solver not in SOLVERS:
        raise UserError(f"unknown solver {solver!r}; choose auto or one of {', '.join(SOLVERS)}")
    spec = OperatorSpec(operator, acceleration, factor, blur_sigma, angles, sigma_y, mask, mask_seed)
    spec.validate()
    cfg = RestoreConfig(solver="dps" if solver == "auto" else solver, steps=steps, samples=samples, strength=strength, sampler=sampler,
                        seed=seed, batch_size=batch_size, precision=precision)
    cfg.validate()
    model, _ = load_model(Path(run), _device(device))
    shape = image_shape(model)
    truth, no_channel = None, False
    if input is not None:
        truth, no_channel, note = read_truth(Path(input), shape)
        if note:
            typer.echo(note, err=True)
        op = spec.build(shape)
        y = op.measure(truth, torch.Generator().manual_seed(seed))
    else:
        op, y, no_channel = read_measurements(Path(measurements), spec, shape)
    if solver == "auto":
        cfg.solver = "ddrm" if op.svd() is not None and getattr(model, "codec", None) is None else "dps"
    with _bar(samples * len(y), f"restore ({cfg.solver})", "image") as bar:
        recs = run_restore(model, op, y, cfg, progress=bar.update)
    typer.echo(write_result(Path(out), op, y, recs, truth, no_channel))
    if truth is not None:
        from .inverse.baselines import psnr

        typer.echo(f"PSNR against the input: {float(psnr(recs.mean(0), truth).mean()):.2f} dB (mean over {len(truth)} images)")


@bench_app.command("restore")
def bench_restore(
    run: str = typer.Argument(..., help="a run trained on Fashion-MNIST (or an image dataset with a labelled test split)"),
    out: str = typer.Option("runs/bench-restore", help="folder for restore.json, restore.md and one figure per task"),
    n: int = typer.Option(200, help="test images per seed"),
    seeds: int = typer.Option(3, help="seeds (measurement noise, MRI lines, solver noise)"),
    val: int = typer.Option(32, help="validation images (before the test ones) that tune TV's lambda and DPS's zeta"),
    samples: int = typer.Option(2, help="posterior samples K per image"),
    tasks: str = typer.Option("inpaint,superres4,blur,mri4,mri8,ct8", help="comma-separated tasks"),
    json_out: bool = typer.Option(False, "--json", help="print the results as JSON"),
) -> None:
    """Diffusion solvers against zero-filled, TV and (CT) filtered back-projection: PSNR, SSIM, residual, classifier
    accuracy, NFE, seconds and std calibration per task (the script benchmarks/restore.py runs the same)."""
    import json

    from .inverse.bench import TASKS, BenchConfig, run_benchmark_to

    chosen = [t.strip() for t in tasks.split(",") if t.strip()]
    bad = [t for t in chosen if t not in TASKS]
    if bad or not chosen:
        raise UserError(f"unknown task(s) {', '.join(bad) or '(none)'}; choose from {', '.join(TASKS)}")
    if min(n, seeds, val, samples) < 1:
        raise UserError("--n, --seeds, --val and --samples must be positive integers")
    cfg = BenchConfig(n=n, seeds=seeds, val=val, samples=samples, tasks=chosen)
    res, md = run_benchmark_to(run, cfg, Path(out), log=lambda m: typer.echo(m, err=True))
    typer.echo(json.dumps(res, indent=1) if json_out else md)
