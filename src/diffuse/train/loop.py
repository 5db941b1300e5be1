"""The training loop: batch -> sigma ~ p_train -> weighted denoising loss -> AdamW -> EMA, with atomic
checkpoints, exact resume, a wall-clock budget, sample grids and metrics.jsonl.

    RUN/config.json, RUN/model.safetensors (EMA), RUN/state/state.safetensors (raw weights, EMA, AdamW,
    step; no RNG state is needed because every random draw is seeded by (seed, step)), RUN/samples/,
    RUN/metrics.jsonl
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .. import schedules
from ..checkpoint import atomic_write_bytes, open_log, write_json
from ..data import ImageDataset, batch_index, load_dataset, step_generator, to_model_space
from ..errors import UserError
from ..generate import SampleConfig, autocast, generate, use_bf16
from ..images import save_grid
from ..losses import denoising_loss
from ..noise import color
from ..modalities import Modality, modality_of
from ..modalities.audio import run_vocoder_dir, with_run_vocoder
from ..model import RUN_FORMAT, ModelConfig, attach_codec, build_denoiser, read_run_config
from ..nets import dit_preset, preset
from ..nets.unet import PRESETS
from ..text.bank import training_text
from ..text.retrieval import save_training_captions
from ..precond import Precond, PrecondConfig
from . import dist as D
from .batches import Batches, item_weights
from .latent_cache import cached_posterior
from .state import load_state, memory_layout, save_state
from .config import TrainConfig, lr_at
from .ema import ema_beta, ema_update
from .rundir import CheckpointClock, RunLock, resume_overrides, start_mode
from .stop import StopOnSignal


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    nimg: int
    seconds: float
    interrupted: bool
    last_loss: float


def model_config_for(cfg: TrainConfig, ds: ImageDataset, latent_shape: tuple[int, ...] | None = None,
                     latent_source: str | None = None) -> ModelConfig:
    """The model a training config asks for, shaped to the dataset (or to the autoencoder's latents)."""
    c, *frames, h, w = ds.shape  # frames: [T] of clips, [] otherwise
    if cfg.cond == "class" and ds.num_classes < 2:
        raise UserError(f"--cond class needs a labelled dataset with at least 2 classes; {ds.name} has {ds.num_classes}")
    if cfg.cond == "text" and ds.num_classes < 2 and cfg.captions is None:
        raise UserError(f"--cond text needs class names to caption ({ds.name} has none) or a --captions file")
    if cfg.task == "superres" and h % cfg.superres_factor:
        raise UserError(f"image size {h} is not divisible by --superres-factor {cfg.superres_factor}")
    names = ds.class_names if cfg.cond in ("class", "text") else []
    extra: dict = {"num_classes": len(names) if cfg.cond == "class" else 0}
    if cfg.cond == "text":
        from ..text.encoder import encoder_dim

        extra["text_dim"] = encoder_dim(cfg.text_encoder)
    if cfg.task == "superres":
        extra["lowres_factor"] = cfg.superres_factor
    net_c, *net_frames, size, width = latent_shape if latent_shape else (c, *frames, h, w)
    if latent_shape:
        # latents are already small: one token / pixel per latent position; per-frame latents of clips: 2x2 patches of
        # one frame (no tubelets across frames; README "Video")
        extra.update(patch_size=2, temporal_patch=1) if frames else extra.update(patch_size=1)
    if width != size:
        extra["image_width"] = width
    if frames:
        if cfg.arch != "dit" or cfg.flip:
            raise UserError(f"{ds.name} holds clips: train them with --model dit (spacetime patches), "
                            "without --flip (it would reverse the motion the labels name)")
        extra["frames"] = net_frames[0]
        extra["known_frames"] = bool(cfg.frame_mask)
    elif cfg.frame_mask or cfg.frame_noise:
        raise UserError(f"--frame-mask and --frame-noise are for video data; {ds.name} holds {'images' if ds.modality is None else ds.modality['name']}")
    elif {"attention", "temporal_patch"} & set(cfg.net_overrides):
        raise UserError(f"--attention and --temporal-patch are for video data; {ds.name} holds {'images' if ds.modality is None else ds.modality['name']}")
    extra.update(image_size=size, in_channels=net_c, out_channels=net_c, **cfg.net_overrides)
    try:
        if cfg.arch == "dit":
            net = dit_preset(cfg.preset, **extra)
        else:
            lowest = size
            for _ in range(2):
                lowest = (lowest + 1) // 2
            name = "base" if cfg.preset is None else cfg.preset
            attn = {} if "attn_resolutions" in PRESETS.get(name, {}) else {"attn_resolutions": (lowest,)}
            net = preset(name, **attn, **extra)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad --model {cfg.arch} settings: {e}") from None
    pre = PrecondConfig(param=cfg.param, noise_input="log_sigma" if cfg.param == "edm" else "vp_t",  # type: ignore[arg-type]
                        beta_schedule=cfg.beta_schedule, zero_terminal_snr=cfg.zero_terminal_snr,  # type: ignore[arg-type]
                        frame_noise=cfg.frame_noise, sigma_data=cfg.sigma_data)
    latent = {"fingerprint": None, "image_shape": [c, *frames, h, w], "source": latent_source or cfg.latent} if latent_shape else None
    prompts = [caps[int(g)][0] for caps, g in [(ds.captions[0], ds.captions[1][(ds.labels == k).nonzero()[0, 0]])
                                                 for k in range(ds.num_classes)]] if cfg.cond == "text" and ds.captions else []
    return ModelConfig(net=net, precond=pre, arch=cfg.arch, cond=cfg.cond, class_names=names, data=cfg.data, data_dir=cfg.data_dir,
                       task=cfg.task, text_encoder=cfg.text_encoder, image_size=cfg.image_size, latent=latent,
                       modality=ds.modality, prompts=prompts)


def _latent_dir(cfg: TrainConfig, mode: str, run: Path, d: D.Dist) -> tuple[TrainConfig, Path | None]:
    """The autoencoder directory of a latent run (the run's own copy unless fresh; ``--latent auto``: the cached one,
    trained first if need be, its time taken off ``--minutes``), and the config with that budget; else None."""
    if not cfg.uses_latent:
        return cfg, None
    if mode != "fresh":
        return cfg, run / "autoencoder"
    if cfg.latent != "auto":
        return cfg, Path(cfg.latent)
    from .auto_latent import ensure_autoencoder

    found, failed = None, None
    if d.is_writer:
        try:
            found = ensure_autoencoder(cfg.data, cfg.data_dir, cfg.image_size, cfg.seed, cfg.minutes, cfg.steps)
        except UserError as e:
            failed = str(e)  # every rank stops with it, none waits forever
    where, spent, failed = D.gather(d, (str(found[0]) if found else "", found[1] if found else 0.0, failed))[0]  # rank 0's
    if failed:
        raise UserError(failed)
    path = Path(where)
    if cfg.minutes is not None and spent:
        left = max(cfg.minutes - spent / 60, 0.1)
        print(f"diffusion: {left:.2f} of the {cfg.minutes:g} minutes are left after the autoencoder", file=sys.stderr)
        cfg = replace(cfg, minutes=left)
    return cfg, path


def _codec(cfg: TrainConfig, ds: ImageDataset, latent_dir: Path | None, device: torch.device):
    """The autoencoder of a latent run, checked against the data; else None."""
    if latent_dir is None:
        return None
    from ..codecs.autoencoder import load_codec

    codec = load_codec(latent_dir, device)
    if tuple(codec.image_shape) != tuple(ds.shape):
        raise UserError(f"the autoencoder {latent_dir} takes {'x'.join(map(str, codec.image_shape))} items, but {ds.name} has "
                        f"{'x'.join(map(str, ds.shape))}: "
                        f"train one on this data (diffuse train-autoencoder), or match --image-size")
    return codec


def _sample_sigma(cfg: TrainConfig, abar: torch.Tensor, b: int, g: torch.Generator) -> torch.Tensor:
    if cfg.sigma_density == "lognormal":
        return schedules.sample_lognormal_sigma(b, cfg.p_mean, cfg.p_std, generator=g)
    return schedules.sample_vp_sigma(b, abar, generator=g)


def _checksum(model: Precond) -> float:
    """Sum of all weights in float64: equal on every rank when DDP keeps them in sync."""
    return float(sum(p.detach().double().sum() for p in model.parameters()))


def _save(run: Path, model: Precond, ema: Precond, opt: torch.optim.Optimizer, step: int, nimg: int, seconds: float, mcfg: ModelConfig,
          d: D.Dist) -> None:
    """The checkpoint (train/state.py), written by rank 0 alone. Every rank's weight checksum is recorded, so a
    desynchronised DDP run is visible in the checkpoint."""
    sums = D.gather(d, _checksum(model))
    if d.is_writer:
        save_state(run, model, ema, opt, step, nimg, seconds, mcfg.fingerprint(), world_size=d.world, rank_checksums=sums)


def train(cfg: TrainConfig, resume: bool = False, progress: Callable[[dict], None] | None = None,
          device: str | torch.device = "cpu") -> TrainResult:
    """Train (or resume) the run in ``cfg.out``. Ctrl-C / SIGTERM save a checkpoint and return cleanly.

    Under torchrun (WORLD_SIZE > 1) this is DDP: ``batch_size`` is the global batch, each rank takes its
    slice of every batch (and of its noise), so N ranks follow the same trajectory as one process with the
    same batch; rank 0 alone writes."""
    run = Path(cfg.out)
    d, device = D.setup(torch.device(device))
    if not resume:
        cfg = cfg.resolved()  # every flag checked before the disk is touched
    with RunLock(run, create=not resume) if d.is_writer else contextlib.nullcontext():
        return _train(cfg, run, resume, progress, d, device)


def _train(cfg: TrainConfig, run: Path, resume: bool, progress: Callable[[dict], None] | None, d: D.Dist,
           device: torch.device) -> TrainResult:
    mode = start_mode(run, resume)
    if mode != "fresh":  # the run's own configuration; a new budget (--steps / --minutes) may extend it
        saved = read_run_config(run)
        if saved.get("distill") is not None:
            raise UserError(f"{run} is a distilled run: continue it with diffuse distill --resume --out {run}")
        cfg = TrainConfig.from_saved(saved.get("train"), run / "config.json", resume_overrides(cfg)).resolved()
    if cfg.batch_size % d.world:
        raise UserError(f"--batch-size {cfg.batch_size} (the global batch) must be divisible by the {d.world} ranks")
    D.barrier(d)  # every rank has checked the run directory before rank 0 writes into it
    ds = load_dataset(cfg.data, "train", cfg.data_dir, cfg.image_size)
    if cfg.class_weights:
        item_weights(ds, cfg.class_weights)  # names no class of the data: refused before an autoencoder trains
    cfg, latent_dir = _latent_dir(cfg, mode, run, d)
    codec = _codec(cfg, ds, latent_dir, device)
    mcfg = model_config_for(cfg, ds, codec.latent_shape if codec else None, str(latent_dir) if latent_dir else None)
    say = (lambda m: print(m, file=sys.stderr)) if d.is_writer else (lambda m: None)
    vocoder = run_vocoder_dir(cfg.vocoder, cfg.data, mcfg.modality, say) if mode == "fresh" else None  # a resumed run has its copy
    if vocoder is not None:  # checked before the run directory is written
        mcfg.modality = with_run_vocoder(mcfg.modality, vocoder)
    if codec is not None:
        mcfg.latent["fingerprint"] = codec.fingerprint
        if mode != "fresh" and (saved["model"].get("latent") or {}).get("fingerprint") != codec.fingerprint:
            raise UserError(f"{run / 'autoencoder'} is not the autoencoder this run was trained with")
    if mode != "fresh" and ModelConfig.from_dict(saved.get("model")).fingerprint() != mcfg.fingerprint():
        raise UserError(f"{run / 'config.json'} describes a different model than this version builds from it")
    batch_index(len(ds), cfg.batch_size, 0, cfg.seed)  # a batch larger than the data is refused before anything is written
    torch.manual_seed(cfg.seed)
    layout = memory_layout(mcfg.net_shape)
    model = build_denoiser(mcfg).to(device).to(memory_format=layout)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    if codec is not None:
        attach_codec(ema, codec)  # the sample grids decode
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
                            **({"fused": True} if device.type in ("cpu", "cuda") else {}))
    net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if d.enabled else model
    bf16 = use_bf16(cfg.precision, device)
    nc = mcfg.num_classes
    b = cfg.batch_size
    abar = mcfg.precond.abar()  # the VP schedule, computed once (used by the uniform-t density)
    lo, hi = d.rank * (b // d.world), (d.rank + 1) * (b // d.world)  # this rank's slice of every global batch
    mod = modality_of(mcfg)
    grid_labels = _grid_rows(nc, mod).repeat(mod.grid_per_row or 10) if nc else None
    text = training_text(ds, cfg) if cfg.cond == "text" else None  # (bank, choices, group of each image)
    if text is not None and d.is_writer:  # for nearest-caption conditioning at sampling time (text/retrieval.py)
        save_training_captions(run, text[0])
    grid_extra = _grid_conditions(mcfg, ds, text, mod)
    latents = cached_posterior(codec, ds.images, bf16, write=d.is_writer, say=say) if codec is not None else None
    batches = Batches(ds, b, cfg.seed, cfg.flip, latents, text, nc, cfg.superres_factor if cfg.task == "superres" else 0,
                      cfg.frame_mask or 0.0, cfg.class_weights)
    step, nimg, seconds = 0, 0, 0.0
    clock = CheckpointClock(cfg.checkpoint_every, cfg.checkpoint_minutes)
    if mode == "resume":
        meta = load_state(run, model, ema, opt, mcfg.fingerprint())
        step, nimg, seconds = meta["step"], meta["nimg"], meta["seconds"]
    else:
        if mode == "restart" and d.is_writer:
            print(f"{run} was stopped before its first checkpoint: starting it from step 0 with its saved configuration",
                  file=sys.stderr)
        if mode == "fresh" and d.is_writer:
            if codec is not None:  # the run directory carries its autoencoder, so it stays self-contained
                for name in ("config.json", "model.safetensors"):
                    atomic_write_bytes(run / "autoencoder" / name, (latent_dir / name).read_bytes())
            if vocoder is not None:  # and its neural vocoder (modalities/audio.py: RUN_NEURAL_VOCODER)
                for name in ("vocoder.json", "vocoder.safetensors"):
                    atomic_write_bytes(run / "vocoder" / name, (vocoder / name).read_bytes())
            write_json(run / "config.json", {"format": RUN_FORMAT, "model": mcfg.to_dict(), "train": cfg.to_dict()})
        # the step-0 checkpoint: from here on a killed run resumes, and `sample` during training has weights to read
        _save(run, model, ema, opt, 0, 0, 0.0, mcfg, d)
    stop = StopOnSignal().__enter__()  # Ctrl-C / SIGTERM: finish the step, save, exit
    t_start, loss_acc, n_acc, nan_streak, last_loss = time.monotonic() - seconds, 0.0, 0, 0, float("nan")
    t_log, nimg_log = time.monotonic(), nimg
    log = open_log(run / "metrics.jsonl") if d.is_writer else None
    interrupted = False
    try:
        while True:
            elapsed = time.monotonic() - t_start
            if (cfg.steps is not None and step >= cfg.steps) or D.any_flag(d, cfg.minutes is not None and elapsed >= cfg.minutes * 60, device):
                break
            if D.any_flag(d, stop.requested, device):
                interrupted = True
                break
            x0, labels = batches.data(step)  # the global batch; this rank uses [lo:hi]
            g = step_generator(cfg.seed, step, stream=3)
            sigma = _sample_sigma(cfg, abar, b, g)[lo:hi].to(device)  # [B/world]
            noise = color(torch.randn(x0.shape, generator=g), mcfg.precond.frame_noise)[lo:hi].to(device)  # noise.py
            cond = batches.cond(step, x0, labels, g, slice(lo, hi), cfg.label_dropout, cfg.text_noise).to(device)
            x0 = x0[lo:hi].to(device).contiguous(memory_format=layout)  # [B/world, C, H, W] (or [B/world, C, T, H, W])
            if cfg.lr_decay > 0 and d.enabled:  # a time-keyed decay: every rank takes the same clock reading
                elapsed = float(D.mean(d, torch.tensor([elapsed], dtype=torch.float64, device=device)))
            lr = lr_at(cfg, step, elapsed)
            for group in opt.param_groups:
                group["lr"] = lr
            torch.manual_seed(cfg.seed * 1_000_003 + step + d.rank * 1_000_000_007)  # dropout draws: reproducible on resume
            with autocast(device, bf16):
                loss = denoising_loss(net, x0, sigma, cond, weighting=cfg.weighting, sigma_data=mcfg.precond.sigma_data,
                                      gamma=cfg.min_snr_gamma, noise=noise).mean()
            global_loss = float(D.mean(d, loss.detach()))  # every rank takes the same NaN decision
            if not math.isfinite(global_loss):
                nan_streak += 1
                opt.zero_grad(set_to_none=True)
                if nan_streak >= cfg.max_nan_steps:
                    raise UserError(f"loss was NaN/inf for {nan_streak} steps in a row at step {step}; stopped. The last good "
                                    f"checkpoint in {run} is kept: try a lower --lr, then --resume")
                step += 1
                continue
            nan_streak = 0
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip, foreach=True)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step, nimg = step + 1, nimg + b
            ema_update(ema, model, ema_beta(b, nimg, cfg.ema_halflife_kimg * 1000, cfg.ema_rampup_ratio))
            loss_acc, n_acc = loss_acc + global_loss, n_acc + 1
            if d.is_writer and (step % cfg.log_every == 0 or step == cfg.steps):
                now = time.monotonic()
                last_loss = loss_acc / n_acc
                rec = {"step": step, "nimg": nimg, "loss": last_loss, "lr": lr, "img_per_s": (nimg - nimg_log) / max(now - t_log, 1e-9),
                       "seconds": now - t_start}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                loss_acc, n_acc, t_log, nimg_log = 0.0, 0, now, nimg
                if progress is not None:
                    progress({**rec, "total_steps": cfg.steps, "total_seconds": cfg.minutes * 60 if cfg.minutes else None})
            if d.is_writer and step % cfg.sample_every == 0:
                _grid(run, ema, step, grid_labels, grid_extra, mod)
            if D.any_flag(d, clock.due(step), device):  # every N steps or M minutes; every rank decides alike
                _save(run, model, ema, opt, step, nimg, time.monotonic() - t_start, mcfg, d)
                clock.saved()
                _event(log, {"event": "checkpoint", "step": step})
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if log is not None:
            log.close()
        stop.__exit__()
    seconds = time.monotonic() - t_start
    _save(run, model, ema, opt, step, nimg, seconds, mcfg, d)
    if d.is_writer:
        with open(run / "metrics.jsonl", "a") as f:
            _event(f, {"event": "checkpoint", "step": step, "final": True})
        if not interrupted and step % cfg.sample_every:  # (a grid at this step exists already otherwise)
            _grid(run, ema, step, grid_labels, grid_extra, mod)
    D.barrier(d)
    return TrainResult(run, step, nimg, seconds, interrupted, last_loss)


def _event(log, rec: dict) -> None:
    if log is not None:
        log.write(json.dumps(rec) + "\n")
        log.flush()


def _grid_rows(n: int, mod: Modality) -> torch.Tensor:
    """The classes or prompts the periodic grid shows: all n, or ``mod.grid_rows`` of them spread evenly."""
    k = min(n, mod.grid_rows or n)
    return torch.linspace(0, n - 1, k).round().long() if k else torch.zeros(0, dtype=torch.long)


def _grid_conditions(mcfg: ModelConfig, ds: ImageDataset, text, mod: Modality) -> dict:
    """What the periodic sample grid is conditioned on: class prompts or captions for text models, and the
    downsampled first training images for super-resolution models (shown above their results)."""
    if text is not None:
        from ..generate import prompt_cond
        from ..text.captions import canonical_prompt

        prompts = mcfg.prompts or [canonical_prompt(c) for c in mcfg.class_names] or text[0].texts[:8]
        prompts = [prompts[i] for i in _grid_rows(len(prompts), mod).tolist()]
        cond, which = prompt_cond(prompts, (mod.grid_per_row or 8) * len(prompts), mcfg.text_encoder)
        return {"text": cond, "rows": which}
    if mcfg.task == "superres":
        x = to_model_space(ds.images[:32])
        return {"lowres": F.avg_pool2d(x, mcfg.net.lowres_factor)}
    return {}


def _grid(run: Path, ema: Precond, step: int, labels: torch.Tensor | None, extra: dict | None = None,
          mod: Modality | None = None) -> None:
    """The periodic sample grid: previews (images, spectrograms) of a few samples, one row per class or prompt."""
    extra = extra or {}
    if "text" in extra:
        x = generate(ema, len(extra["rows"]), SampleConfig(batch_size=256), text=extra["text"])
        save_grid(run / "samples" / f"step_{step:07d}.png", mod.preview(x), extra["rows"])
        return
    if "lowres" in extra:
        from ..generate import superres

        lr = extra["lowres"]
        x = superres(ema, lr, SampleConfig(batch_size=256))
        up = F.interpolate(lr, scale_factor=ema.net.cfg.lowres_factor, mode="nearest")
        save_grid(run / "samples" / f"step_{step:07d}.png", mod.preview(torch.cat([up, x])), ncol=len(lr))
        return
    n = len(labels) if labels is not None else 64
    x = generate(ema, n, SampleConfig(batch_size=n), labels)
    save_grid(run / "samples" / f"step_{step:07d}.png", mod.preview(x), labels)
