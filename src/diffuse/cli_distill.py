"""``diffuse distill``: a trained run -> a run that samples in 1-4 steps (train/distill.py)."""

from __future__ import annotations

from typing import Optional

import typer

from .cli_common import _CHECKPOINT_MINUTES, _DEVICE, _PRECISION, _device, _train_bar, app


@app.command()
def distill(
    run: str = typer.Argument(..., help="the trained run to distil (the teacher)"),
    out: str = typer.Option(..., help="the new run directory (a run like any other: sample, eval, synth, edit)"),
    minutes: Optional[float] = typer.Option(None, help="wall-clock budget in minutes (total, also across --resume)"),
    steps: Optional[int] = typer.Option(None, help="distillation steps (total, also across --resume)"),
    guidance: Optional[float] = typer.Option(None, help="guidance built into the student (default: the teacher's, 3 for class and text runs)"),
    batch_size: Optional[int] = typer.Option(None, help="batch size (default: the teacher's)"),
    lr: float = typer.Option(5e-4, help="Adam learning rate"),
    grid: int = typer.Option(18, help="N, the Karras grid of noise levels the teacher's Heun steps join"),
    ema_kimg: float = typer.Option(2.0, help="EMA half-life of the sampled weights, in thousands of images"),
    search_n: int = typer.Option(500, help="samples per candidate in the search for the 2- and 4-step noise levels"),
    method: str = typer.Option("cd", help="cd: consistency distillation (the teacher's guided Heun steps) | ct: consistency "
                                           "tuning (ECT: no teacher calls, about twice the steps, unguided)"),
    seed: int = typer.Option(0),
    precision: str = _PRECISION,
    checkpoint_every: int = typer.Option(1000, help="checkpoint every N steps"),
    checkpoint_minutes: float = _CHECKPOINT_MINUTES,
    resume: bool = typer.Option(False, help="continue the distillation in --out where it stopped"),
    device: str = _DEVICE,
) -> None:
    """Consistency distillation: the student learns to jump to the end of the teacher's (guided) ODE in one call."""
    from .train.distill import DistillConfig
    from .train.distill import distill as run_distill

    cfg = DistillConfig(teacher=run, out=out, minutes=minutes, steps=steps, batch_size=batch_size, lr=lr, guidance=guidance,
                        grid=grid, ema_halflife_kimg=ema_kimg, seed=seed, precision=precision, checkpoint_every=checkpoint_every,
                        checkpoint_minutes=checkpoint_minutes, search_n=search_n, method=method)
    with _train_bar("distill", {"loss": ("loss", ".4f"), "step": ("step", "")}) as progress:
        res = run_distill(cfg, resume=resume, progress=progress, device=_device(device))
    state = "interrupted; resume with --resume" if res.interrupted else "done"
    best = res.search.get("sigmas", {}) if res.search else {}
    typer.echo(f"{state}: step {res.step}, {res.seconds:.0f} s. Weights: {res.run_dir / 'model.safetensors'}; "
               f"sample with: diffuse sample {res.run_dir} --steps 2" + (f" (searched sigmas: {best})" if best else ""))
