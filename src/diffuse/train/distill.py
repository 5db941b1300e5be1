"""Consistency distillation (``diffuse distill``): a trained run becomes an ordinary run that samples in 1-4 steps.

Song et al. 2023 (consistency distillation, CD) with the choices of iCT (Song & Dhariwal 2024):
- The student f is the teacher's network behind the boundary parameterization of precond.py: f(x, sigma_min) = x
  exactly. It starts as the teacher, where f is one Euler step of the teacher's ODE down to sigma_min.
- Each step draws x0 and a pair of neighbours sigma_i > sigma_{i+1} of an N-point Karras grid (i drawn from iCT's
  discretised lognormal), puts x = x0 + sigma_i n, takes one Heun step of the teacher from sigma_i to sigma_{i+1},
  and pulls f(x, sigma_i) towards the stop-gradient f(x_heun, sigma_{i+1}): pseudo-Huber distance (iCT's
  c = 0.00054 sqrt(dim)), weighted 1 / (sigma_i - sigma_{i+1}).
- Guidance is built in: the teacher steps along the classifier-free-guided ODE (strength w), so the student samples
  that ODE's ends at one evaluation per step, with no unconditional pass.
- ``method="ct"`` is consistency tuning instead (ECT, Geng et al. 2025; iCT's consistency training started from the
  trained network): no teacher, the target's input is the same x0 moved to sigma_{i+1} along the same noise
  (x0 + sigma_{i+1} n, an unbiased one-sample estimate of the ODE step). It costs about half a CD step, but it learns
  the unguided ODE (guidance 1). Measured against CD on the same budget (README "Few-step sampling").
- Samples come from the EMA of the student; the intermediate sigmas for 2 and 4 steps are chosen afterwards by a small
  search (consistency_search.py) and stored in the run, whose config.json carries the ``consistency`` record.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import torch

from .. import schedules
from ..checkpoint import load_into, open_log, write_json
from ..data import batch_index, load_dataset, step_generator
from ..errors import UserError
from ..generate import DEFAULT_GUIDANCE, DEFAULT_TEXT_GUIDANCE, autocast, use_bf16
from ..guidance import cfg as cfg_wrap
from ..guidance import class_null
from ..model import RUN_FORMAT, ModelConfig, build_denoiser, load_model, read_run_config, run_codec
from ..noise import color
from ..precond import Precond
from .batches import Batches
from .latent_cache import cached_posterior
from .config import TrainConfig
from .ema import ema_beta, ema_update
from .state import load_state, memory_layout, save_state
from .rundir import CheckpointClock, RunLock, check_checkpoint_minutes, start_mode
from .stop import StopOnSignal

P_MEAN, P_STD = -1.1, 2.0  # iCT's lognormal over the grid's noise levels


@dataclass
class DistillConfig:
    teacher: str = ""
    out: str = ""
    minutes: float | None = None
    steps: int | None = None  # total, also across --resume
    batch_size: int | None = None  # None: the teacher's
    lr: float = 5e-4  # measured on the 10-minute Fashion-MNIST model, 10 minutes each: 2e-4, 5e-4, 1e-3 -> 5e-4 (README)
    guidance: float | None = None  # built into the student; None: the teacher's sampling default (3 for class/text runs)
    grid: int = 18  # N, the Karras grid the teacher steps along (one Heun step between neighbours)
    ema_halflife_kimg: float = 2.0
    seed: int = 0
    precision: str = "auto"
    checkpoint_every: int = 1000
    checkpoint_minutes: float | None = 2.0
    log_every: int = 25
    search_n: int = 500  # samples per candidate in the sigma search
    method: str = "cd"  # cd: consistency distillation (the teacher's Heun step) | ct: consistency tuning (no teacher)

    def check(self) -> None:
        bad = [(self.minutes is None and self.steps is None, "give a budget: --minutes M or --steps S"),
               (self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0), f"--minutes must be > 0, got {self.minutes}"),
               (self.steps is not None and self.steps <= 0, f"--steps must be a positive integer, got {self.steps}"),
               (self.batch_size is not None and self.batch_size <= 0, f"--batch-size must be a positive integer, got {self.batch_size}"),
               (not (math.isfinite(self.lr) and self.lr > 0), f"--lr must be > 0, got {self.lr}"),
               (self.guidance is not None and not (math.isfinite(self.guidance) and self.guidance >= 0), f"--guidance must be >= 0, got {self.guidance}"),
               (not 3 <= self.grid <= 1000, f"--grid must be from 3 to 1000, got {self.grid}"),
               (not (math.isfinite(self.ema_halflife_kimg) and self.ema_halflife_kimg > 0), f"--ema-kimg must be > 0, got {self.ema_halflife_kimg}"),
               (self.search_n < 2, f"--search-n must be at least 2, got {self.search_n}"),
               (self.method not in ("cd", "ct"), f"--method must be cd or ct, got {self.method!r}"),
               (self.method == "ct" and self.guidance not in (None, 1.0),
                "--method ct learns the unguided ODE (it has no teacher to guide): leave --guidance out, or use --method cd")]
        for failed, msg in bad:
            if failed:
                raise UserError(msg)
        check_checkpoint_minutes(self.checkpoint_minutes)
        if self.precision not in ("auto", "bf16", "fp32"):
            raise UserError(f"unknown precision {self.precision!r}; choose auto, bf16 or fp32")


@dataclass
class DistillResult:
    run_dir: Path
    step: int
    seconds: float
    interrupted: bool
    search: dict


def grid_sigmas(model: Precond, n: int) -> torch.Tensor:
    """The N noise levels of the teacher's ODE the distillation steps between, decreasing, sigma_max .. sigma_min. [N]"""
    lo, hi = model.sigma_range
    return schedules.karras_sigmas(n, lo, hi)[:-1].float()  # karras_sigmas(n): n levels, then 0


def pair_probs(grid: torch.Tensor) -> torch.Tensor:
    """iCT's discretised lognormal: how often each neighbour pair (grid[i], grid[i + 1]) is drawn. [N - 1]"""
    cdf = lambda s: torch.erf((s.double().log() - P_MEAN) / (math.sqrt(2) * P_STD))  # noqa: E731
    p = (cdf(grid[:-1]) - cdf(grid[1:])).clamp(min=1e-12)
    return (p / p.sum()).float()


def heun_step(teacher: Callable, x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, cond) -> torch.Tensor:
    """One Heun step of the probability-flow ODE dx/dsigma = (x - D(x)) / sigma from t to r (> 0), per item. [B, ...]"""
    view = (-1,) + (1,) * (x.ndim - 1)
    tv, rv = t.view(view), r.view(view)
    d1 = (x - teacher(x, t, cond)) / tv
    x_e = x + (rv - tv) * d1
    d2 = (x_e - teacher(x_e, r, cond)) / rv
    return x + (rv - tv) * 0.5 * (d1 + d2)


def consistency_loss(student: Precond, teacher: Callable | None, x0: torch.Tensor, cond, t: torch.Tensor, r: torch.Tensor,
                     noise: torch.Tensor) -> torch.Tensor:
    """The per-item loss: pseudo-Huber(f(x_t, t) - stopgrad f(x_r, r)) / (t - r), x_r = heun(x_t -> r) along the
    teacher's ODE (CD), or x0 + r n without a teacher (``teacher=None``: consistency tuning). [B]"""
    view = (-1,) + (1,) * (x0.ndim - 1)
    x_t = x0 + t.view(view) * noise
    with torch.no_grad():
        x_r = heun_step(teacher, x_t, t, r, cond) if teacher is not None else x0 + r.view(view) * noise
        target = student(x_r, r, cond)
    pred = student(x_t, t, cond)
    c = 0.00054 * math.sqrt(x0[0].numel())
    dist = ((pred.float() - target.float()).pow(2).flatten(1).sum(1) + c * c).sqrt() - c
    return dist / (t - r)


def default_guidance(mcfg: ModelConfig) -> float:
    """The teacher's own sampling default: the strength the student builds in unless --guidance says otherwise."""
    if not mcfg.conditional:
        return 1.0
    return DEFAULT_TEXT_GUIDANCE if mcfg.cond == "text" else DEFAULT_GUIDANCE


def _copy_teacher_files(teacher: Path, run: Path) -> None:
    """What sampling a run needs besides its weights and config: the autoencoder of a latent run, the neural vocoder
    of an audio run, a text run's captions."""
    for folder in ("autoencoder", "vocoder"):  # a latent run's autoencoder; an audio run's neural vocoder
        if (teacher / folder).is_dir():
            shutil.copytree(teacher / folder, run / folder, dirs_exist_ok=True)
    for f in [*teacher.glob("captions*.json"), *teacher.glob("captions.safetensors")]:
        shutil.copy2(f, run / f.name)


def distill(cfg: DistillConfig, resume: bool = False, progress: Callable[[dict], None] | None = None,
            device: str | torch.device = "cpu", log: Callable[[str], None] | None = None) -> DistillResult:
    """Distil (or go on distilling) ``cfg.teacher`` into the run ``cfg.out``. Ctrl-C / SIGTERM save and return."""
    cfg.check()
    run, device = Path(cfg.out), torch.device(device)
    log = log or (lambda s: print(s, file=sys.stderr))
    with RunLock(run, create=not resume):
        return _distill(cfg, run, resume, progress, device, log)


def _distill(cfg: DistillConfig, run: Path, resume: bool, progress, device: torch.device, log) -> DistillResult:
    mode = start_mode(run, resume, what="run")
    if mode != "fresh":
        saved = read_run_config(run)
        if not isinstance(saved.get("distill"), dict):
            raise UserError(f"{run} is not a distilled run (its config.json has no distill record); continue it with diffuse train --resume")
        budget = {k: getattr(cfg, k) for k in ("minutes", "steps") if getattr(cfg, k) is not None}
        from ..typed import from_json

        cfg = replace(from_json(DistillConfig, saved["distill"], f"{run / 'config.json'}: distill"), **budget, out=str(run))
        cfg.check()
    teacher_dir = Path(cfg.teacher)
    if teacher_dir.resolve() == run.resolve():
        raise UserError("--out must be a new directory, not the teacher run itself")
    teacher_model, tcfg = load_model(teacher_dir, device)
    if tcfg.consistency:
        raise UserError(f"{teacher_dir} is a distilled run already; distil its teacher ({tcfg.consistency.get('teacher')}) instead")
    if tcfg.task != "generate":
        raise UserError(f"{teacher_dir} is a {tcfg.task} run; distillation is for generative runs")
    tsaved = read_run_config(teacher_dir)
    tcfg_train = TrainConfig.from_saved(tsaved.get("train"), teacher_dir / "config.json", {}).resolved()
    w = cfg.guidance if cfg.guidance is not None else (1.0 if cfg.method == "ct" else default_guidance(tcfg))
    if w != 1.0 and not tcfg.conditional:
        raise UserError("--guidance needs a conditional teacher; this one is unconditional")
    cfg = replace(cfg, guidance=w, batch_size=cfg.batch_size or tcfg_train.batch_size)
    ds = load_dataset(tcfg.data, "train", tcfg.data_dir, tcfg.image_size)
    codec = run_codec(teacher_dir, tcfg, device) if tcfg.latent is not None else None
    text = None
    if tcfg.cond == "text":
        from ..text.bank import training_text

        text = training_text(ds, tcfg_train)
    nc = tcfg.num_classes
    batch_index(len(ds), cfg.batch_size, 0, cfg.seed)  # a batch larger than the data is refused before anything is written
    latents = cached_posterior(codec, ds.images, use_bf16(cfg.precision, device), say=log) if codec is not None else None
    batches = Batches(ds, cfg.batch_size, cfg.seed, False, latents, text, nc)
    mcfg = replace(tcfg, consistency={"sigma_min": teacher_model.sigma_range[0], "guidance": w, "steps": 2, "sigmas": {},
                                      "teacher": str(teacher_dir.resolve()), "method": cfg.method, "grid": cfg.grid})
    if mode != "fresh":
        mcfg = replace(mcfg, consistency={**mcfg.consistency, **(saved["model"].get("consistency") or {})})
    layout = memory_layout(mcfg.net_shape)  # as the trainer keeps them: 1.13x faster a distillation step than contiguous here (fmnist U-Net, batch 128)
    teacher_model = teacher_model.to(memory_format=layout)
    student = build_denoiser(mcfg).to(device).to(memory_format=layout)
    load_into(student.net, teacher_model.net.state_dict(), teacher_dir / "model.safetensors")
    student.eval()  # dropout off: f and its target see the same network (gradients still flow)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    teacher = cfg_wrap(teacher_model, w, class_null(nc)) if tcfg.conditional else teacher_model
    if cfg.method == "ct":
        teacher = None
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr, betas=(0.9, 0.999), **({"fused": True} if device.type in ("cpu", "cuda") else {}))
    step, nimg, seconds = 0, 0, 0.0
    if mode == "resume":
        meta = load_state(run, student, ema, opt, mcfg.fingerprint())
        step, nimg, seconds = int(meta["step"]), int(meta["nimg"]), float(meta["seconds"])
    else:
        if mode == "fresh":
            _copy_teacher_files(teacher_dir, run)
        _write_config(run, mcfg, tsaved, cfg)
        save_state(run, student, ema, opt, 0, 0, 0.0, mcfg.fingerprint())
    grid = grid_sigmas(teacher_model, cfg.grid)
    probs = pair_probs(grid)
    bf16 = use_bf16(cfg.precision, device)
    clock = CheckpointClock(cfg.checkpoint_every, cfg.checkpoint_minutes)
    stop = StopOnSignal().__enter__()
    t_start, loss_acc, n_acc, interrupted = time.monotonic() - seconds, 0.0, 0, False
    logf = open_log(run / "metrics.jsonl")
    b = cfg.batch_size
    try:
        while True:
            if (cfg.steps is not None and step >= cfg.steps) or (cfg.minutes is not None and time.monotonic() - t_start >= 60 * cfg.minutes):
                break
            if stop.requested:
                interrupted = True
                break
            x0, labels = batches.data(step)
            g = step_generator(cfg.seed, step, stream=5)
            i = torch.multinomial(probs, b, replacement=True, generator=g)  # [B]
            noise = color(torch.randn(x0.shape, generator=g), mcfg.precond.frame_noise).to(device).contiguous(memory_format=layout)
            x0 = x0.to(device).contiguous(memory_format=layout)
            cond = batches.cond(step, x0, labels, g, slice(0, b), 0.0, 0.0).to(device)
            with autocast(device, bf16):
                loss = consistency_loss(student, teacher, x0, cond, grid[i].to(device), grid[i + 1].to(device), noise).mean()
            if not math.isfinite(float(loss.detach())):
                raise UserError(f"the distillation loss was NaN/inf at step {step}; the last good checkpoint in {run} is kept: "
                                f"try a lower --lr, then --resume")
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step, nimg = step + 1, nimg + b
            ema_update(ema, student, ema_beta(b, nimg, cfg.ema_halflife_kimg * 1000))
            loss_acc, n_acc = loss_acc + float(loss.detach()), n_acc + 1
            if step % cfg.log_every == 0 or step == cfg.steps:
                rec = {"step": step, "nimg": nimg, "loss": loss_acc / n_acc, "seconds": time.monotonic() - t_start}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                loss_acc, n_acc = 0.0, 0
                if progress is not None:
                    progress({**rec, "total_steps": cfg.steps, "total_seconds": cfg.minutes * 60 if cfg.minutes else None})
            if clock.due(step):
                save_state(run, student, ema, opt, step, nimg, time.monotonic() - t_start, mcfg.fingerprint())
                clock.saved()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        logf.close()
        stop.__exit__()
    seconds = time.monotonic() - t_start
    save_state(run, student, ema, opt, step, nimg, seconds, mcfg.fingerprint())
    search: dict = {}
    if not interrupted:
        from .consistency_search import search_sigmas

        search = search_sigmas(ema, mcfg, cfg.search_n, cfg.seed, log)
        mcfg.consistency.update(sigmas=search.get("sigmas", {}), search=search.get("table", []),
                                **{key: search[key] for key in ("start", "starts") if key in search})
        _write_config(run, mcfg, tsaved, cfg)
    return DistillResult(run, step, seconds, interrupted, search)


def _write_config(run: Path, mcfg: ModelConfig, teacher_saved: dict, cfg: DistillConfig) -> None:
    """The run's config.json: the teacher's model (with the consistency record) and training record, and ours."""
    from ..modalities import unbind_run

    model = mcfg.to_dict()  # the teacher's record was bound to the teacher's directory when read; this run has copies
    model["modality"] = unbind_run(model.get("modality"))
    write_json(run / "config.json", {"format": RUN_FORMAT, "model": model, "train": teacher_saved.get("train"),
                                     "distill": asdict(cfg)})

