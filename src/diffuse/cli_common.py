"""What every `diffuse` command module shares: the typer app, the shared flag definitions and the progress bar.
Command modules import this; nothing here imports them (so the command modules form no import cycle)."""

from __future__ import annotations

import contextlib
import sys

import typer

from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="diffuse: train, sample and evaluate diffusion models.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: against diffusers (pip install -e '.[bench]'), and reconstruction baselines.")
app.add_typer(bench_app, name="bench")


class _bar:
    """A tqdm progress bar on stderr that appears with the first update, so an early error stays one line."""

    def __init__(self, total: int | None, desc: str, unit: str = "it"):
        self.args, self.bar = dict(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=True, file=sys.stderr), None

    def update(self, n: int = 1) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(**self.args)
        self.bar.update(n)

    def __enter__(self) -> "_bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


class _train_bar:
    """A trainer's progress bar on stderr, fed the trainer's log records ({"step", "seconds", "total_steps",
    "total_seconds", and the figures named in ``show``}): counts steps for a --steps budget, seconds for --minutes.
    It appears with the first record, so an early error stays one line."""

    def __init__(self, desc: str, show: dict[str, tuple[str, str]]):
        self.desc, self.show, self.bar = desc, show, None  # show: postfix name -> (record key, format spec)

    def __call__(self, rec: dict) -> None:
        if self.bar is None:
            from tqdm import tqdm

            total = rec["total_steps"] or int(rec["total_seconds"])
            self.bar = tqdm(total=total, desc=self.desc, unit="step" if rec["total_steps"] else "s", dynamic_ncols=True, file=sys.stderr)
        self.bar.n = rec["step"] if rec["total_steps"] else min(int(rec["seconds"]), self.bar.total)
        self.bar.set_postfix(**{name: format(rec[key], spec) for name, (key, spec) in self.show.items()})
        self.bar.refresh()

    def __enter__(self) -> "_train_bar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def json_safe_stdout():
    """While a --json command works, anything a library prints (pyfluidsynth announces its library when $CI is set)
    goes to stderr, so stdout carries the one JSON object alone."""
    return contextlib.redirect_stdout(sys.stderr)


# Sampling flags shared by sample, eval and synth (one definition each).
_SAMPLER = typer.Option(None, help="ddpm | ddim | euler | heun | dpmpp_2m | consistency (default: dpmpp_2m; consistency for a distilled run)")
_STEPS = typer.Option(None, help="sampler steps, heun costs 2 evaluations per step (default: 10; a distilled run's own, 2)")
_SCHEDULE = typer.Option("karras", help="karras (no wasted step at sigma_min) | edm (Karras Eq. 5 exactly) | vp (DDPM timesteps)")
_GUIDANCE = typer.Option(None, help="classifier-free guidance strength w: 1 = none, 0 = unconditional, >1 = stronger (default 3 for conditional models)")
_NEAREST = typer.Option(True, "--nearest-caption/--raw-prompt",
                        help="text models: condition on each prompt's nearest training caption (printed), or on the raw prompt")
_SEED = typer.Option(0, help="seed: image i starts from noise seeded by (seed, i)")
_BATCH = typer.Option(256, help="images per forward batch")
_PRECISION = typer.Option("auto", help="auto | bf16 | fp32")
_DEVICE = typer.Option("auto", help="auto (cuda if available) | cpu | cuda | cuda:N")
_CHECKPOINT_MINUTES = typer.Option(2.0, help="also checkpoint every M minutes (every trainer), so a kill loses at most that much")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but torch sees no CUDA GPU")
    return dev
