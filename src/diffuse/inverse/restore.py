"""Reconstruction with a trained run as the prior: K posterior samples of images [0, 1] from a measurement y.

    recs = restore(model, op, y, RestoreConfig(solver="dps", samples=4))   # [K, N, C, H, W]
    mean, std = recs.mean(0), recs.std(0)

Conditional runs are used in their unconditional mode (guidance 0: the label of a measured image is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..cond import Cond
from ..errors import UserError
from ..generate import SampleConfig, autocast, initial_noise, sigma_schedule, use_bf16
from ..guidance import cfg as cfg_wrap
from ..guidance import class_null
from ..samplers import get_sampler
from .operators import Operator
from .solvers import Problem, ddrm, dps, get_solver


@dataclass
class RestoreConfig:
    """How to solve: ``solver`` (solvers.SOLVERS), ``steps`` (None: the solver's default), ``samples`` K posterior draws,
    ``strength`` the solver's knob (DPS zeta, DiffPIR lambda, DDRM eta; None: its default), ``sampler`` for the wrapper
    solvers (None: the solver's default)."""

    solver: str = "dps"
    steps: int | None = None
    samples: int = 1
    strength: float | None = None
    sampler: str | None = None
    seed: int = 0
    batch_size: int = 64
    precision: str = "auto"

    def validate(self) -> None:
        get_solver(self.solver)
        if not 1 <= self.samples <= 1000:
            raise UserError(f"--samples must be from 1 to 1000, got {self.samples}")
        if self.steps is not None and not 1 <= self.steps <= 10_000:
            raise UserError(f"--steps must be from 1 to 10000, got {self.steps}")
        if self.strength is not None and not (self.strength >= 0 and self.strength < float("inf")):
            raise UserError(f"--strength must be a finite number >= 0, got {self.strength}")
        if self.sampler is not None and self.solver == "ddrm":
            raise UserError("--sampler does not apply to --solver ddrm (DDRM is its own sampler)")
        if self.batch_size <= 0:
            raise UserError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.sampler is not None:
            get_sampler(self.sampler)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise UserError(f"unknown precision {self.precision!r}; choose auto, bf16 or fp32")
        if not -(2**31) <= self.seed < 2**31:
            raise UserError(f"--seed must be within +-2^31, got {self.seed}")


def image_shape(model: Any) -> tuple[int, int, int]:
    """(C, H, W) of the images a run makes (decoded, for a latent run)."""
    codec = getattr(model, "codec", None)
    return tuple(codec.image_shape) if codec is not None else (model.net.cfg.out_channels, *model.net.cfg.hw)


def check_operator(op: Operator, model: Any) -> None:
    shape = image_shape(model)
    if tuple(op.shape) != tuple(shape):
        raise UserError(f"the {op.name} operator measures {'x'.join(map(str, op.shape))} images but this model makes "
                        f"{'x'.join(map(str, shape))}")


def unconditional(model: Any, n: int, device: torch.device) -> tuple[Callable, Cond | None]:
    """The model's unconditional denoiser and the condition to pass it (none for an unconditional run)."""
    k = model.net.cfg.num_classes
    if k:
        return cfg_wrap(model, 0.0, class_null(k)), Cond(labels=torch.zeros(n, dtype=torch.long, device=device))
    if getattr(model.net.cfg, "text_dim", 0):
        from ..generate import prompt_cond
        from ..text.bank import index_cond

        text, _ = prompt_cond(["an image"], n)  # any prompt: guidance 0 drops it
        return cfg_wrap(model, 0.0, class_null(0)), Cond(text=index_cond(text, slice(0, n))).to(device)
    return model, None


@torch.no_grad()
def restore(model: Any, op: Operator, y: torch.Tensor, cfg: RestoreConfig,
            progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """K posterior samples [K, N, C, H, W] in [0, 1] of the images behind measurements y [N, ...] (op.measure's units).
    Sample k of image i starts from noise seeded by (seed, k, i), so a sample does not depend on the batch size."""
    cfg.validate()
    solver = get_solver(cfg.solver)
    codec = getattr(model, "codec", None)
    solver.check(op, codec is not None)
    check_operator(op, model)
    device = next(model.parameters()).device
    n = len(y)
    scfg = SampleConfig(sampler=cfg.sampler or solver.sampler or "euler", steps=cfg.steps or solver.steps,
                        precision=cfg.precision).for_model(model)
    sigmas = sigma_schedule(model, scfg)
    knob = solver.knob_default if cfg.strength is None else cfg.strength
    y_m = op.to_model_space(y)
    decode = None
    if codec is not None:
        decode = codec.decode_differentiable
    net_shape = (model.net.cfg.out_channels, *model.net.cfg.hw)
    bf16 = use_bf16(cfg.precision, device)
    out = torch.empty(cfg.samples, n, *image_shape(model))
    den, cond_all = unconditional(model, min(n, cfg.batch_size), device)  # built once (a text run encodes its prompt once)
    for k in range(cfg.samples):
        for start in range(0, n, cfg.batch_size):
            rows = slice(start, min(n, start + cfg.batch_size))
            b = rows.stop - rows.start
            cond = None if cond_all is None else cond_all.index(slice(0, b))
            prob = Problem(op, y_m[rows].to(device), 2 * op.sigma_y, decode)
            z = initial_noise(cfg.seed * 1009 + k, start, b, net_shape).to(device) * float(sigmas[0])
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + k * 104_729 + start)
            with autocast(device, bf16):
                if solver.kind == "sampler":
                    x = ddrm(den, z, sigmas, prob=prob, cond=cond, generator=gen, eta=knob)
                elif solver.kind == "stepper":
                    x = dps(get_sampler(scfg.sampler), den, z, sigmas, prob=prob, zeta=knob, cond=cond, generator=gen)
                else:
                    x = get_sampler(scfg.sampler)(solver.wrap(den, prob, knob), z, sigmas, cond=cond, generator=gen)
            if codec is not None:
                x = codec.decode(x)
            out[k, rows] = ((x.float().cpu() + 1) / 2).clamp(0, 1)
            if progress is not None:
                progress(b)
    return out


def nfe(cfg: RestoreConfig) -> int:
    """Network evaluations per posterior sample (a DPS evaluation also costs one backward pass)."""
    from ..samplers import nfe as sampler_nfe

    solver = get_solver(cfg.solver)
    steps = cfg.steps or solver.steps
    return steps if solver.sampler is None else sampler_nfe(cfg.sampler or solver.sampler, steps)
