"""Training the KL autoencoder of latent diffusion (Rombach et al. 2022, Sec. 3.1), then measuring it.

Loss per image: mean |x - x_hat| + kl_weight * KL(q(z|x) || N(0, I)) / pixels, which is LDM's objective
(sum of L1 + kl_weight * sum of KL, kl_weight = 1e-6) divided by the pixel count. Optional adversarial term
(``adv_weight > 0``): a small PatchGAN discriminator with the hinge loss (Esser et al. 2021, VQGAN, Sec. 3.2),
switched on after ``adv_start`` steps, weighted by ``adv_weight`` times VQGAN's adaptive weight (the ratio of the
reconstruction and adversarial gradient norms at the decoder's last layer, Eq. 7). The LPIPS perceptual term of LDM needs downloaded VGG weights and is
left out.

After the last step: per-channel latent mean/std over the training set (the scale normalisation, stored in
AE/config.json) and the test-split report: PSNR, the domain classifier's accuracy on reconstructions next to
its accuracy on the originals, and rFID (reconstructions against originals in the classifier's feature space).

    AE/config.json, AE/model.safetensors, AE/state/state.safetensors (resume), AE/metrics.jsonl, AE/reconstructions.png
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..codecs.autoencoder import AE_FORMAT, AE_PRESETS, CONV, AEConfig, Autoencoder, ae_config_from, fingerprint, read_ae_config
from ..checkpoint import load_into, load_optimizer, load_tensors, open_log, refuse_non_finite, save_tensors, write_json
from ..data import ImageDataset, batch_index, load_dataset, resize_dataset, resize_images, step_generator, to_model_space, to_uint8
from ..errors import UserError
from ..images import save_grid
from ..typed import from_json
from .config import check_finite, lr_at
from .rundir import CheckpointClock, RunLock, check_checkpoint_minutes, resume_overrides, start_mode
from .stop import StopOnSignal


@dataclass
class AETrainConfig:
    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None  # resize the data to this size (e.g. 64 for the latent-diffusion speed setting)
    out: str = "runs/ae-digits"
    preset: str | None = None  # f2 | f4 | f8 | f4p (default: f2 for images up to 16 pixels, f4 up to 32, else f8; f4p for log-mels)
    overrides: dict = field(default_factory=dict)
    kl_weight: float = 1e-6
    adv_weight: float = 0.0
    adv_start: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    lr_decay: float = 0.0  # the share of the budget, at its end, over which the learning rate falls linearly to 0
    steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    checkpoint_minutes: float | None = 2.0  # also checkpoint when this much time passed since the last one
    max_nan_steps: int = 10

    def validate(self) -> None:
        checks = [
            (self.preset is None or self.preset in AE_PRESETS, f"--preset must be one of {', '.join(AE_PRESETS)}, got {self.preset!r}"),
            (self.kl_weight >= 0, f"--kl-weight must be >= 0, got {self.kl_weight}"),
            (self.adv_weight >= 0, f"--adv-weight must be >= 0, got {self.adv_weight}"),
            (self.batch_size > 0, f"--batch-size must be a positive integer, got {self.batch_size}"),
            (self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.lr_decay < 1, f"--lr-decay is a share of the budget in [0, 1), got {self.lr_decay}"),
            (self.steps is None or self.steps > 0, f"--steps must be a positive integer, got {self.steps}"),
            (self.minutes is None or self.minutes > 0, f"--minutes must be positive, got {self.minutes}"),
            (self.image_size is None or self.image_size >= 4, f"--image-size must be >= 4, got {self.image_size}"),
            (min(self.log_every, self.checkpoint_every) > 0, "--log-every and --checkpoint-every must be positive"),
            (self.adv_start >= 0 and self.warmup_steps >= 0, "--adv-start and --warmup-steps must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        check_checkpoint_minutes(self.checkpoint_minutes)
        check_finite(self)


class PatchDiscriminator(nn.Module):
    """Two stride-2 4x4 convolutions with LeakyReLU -> a logit per patch (PatchGAN, Isola et al. 2017), in the
    items' rank (2-D for images and log-mels)."""

    def __init__(self, in_channels: int, ch: int = 32, rank: int = 2):
        super().__init__()
        conv = CONV[rank]
        self.net = nn.Sequential(conv(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 conv(ch, 2 * ch, 4, 2, 1), nn.GroupNorm(8, 2 * ch), nn.LeakyReLU(0.2),
                                 conv(2 * ch, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _model_config(cfg: AETrainConfig, ds: ImageDataset) -> AEConfig:
    """Square images keep the old record (image_size); other items (log-mels, clips) name their axes in ``shape``.
    Clips are coded frame by frame (``per_frame``), the preset chosen by the frame's side."""
    c, *axes = ds.shape
    square = len(axes) == 2 and axes[0] == axes[1] and not ds.images.is_floating_point()
    clips = (ds.modality or {}).get("name") == "video"
    side = min(axes[1:] if clips else axes)
    # f4p for log-mels and other float items (AudioLDM compresses a mel by 4 on each axis)
    name = cfg.preset or ("f4p" if ds.images.is_floating_point() else "f2" if side <= 16 else "f4" if side <= 32 else "f8")
    size = {"image_size": axes[0]} if square else {"shape": tuple(axes)}
    try:
        return AEConfig(**{**AE_PRESETS[name], **size, "in_channels": c, **({"per_frame": True} if clips else {}), **cfg.overrides})
    except (TypeError, ValueError) as e:
        raise UserError(f"bad autoencoder settings: {e}") from None


def train_autoencoder(cfg: AETrainConfig, resume: bool = False, progress: Callable[[dict], None] | None = None,
                      log: Callable[[str], None] = print, report: bool = True) -> dict:
    """Train (or resume) the autoencoder in ``cfg.out``; returns the evaluation report (``report=False``: the test
    PSNR and L1 only, no domain classifier). Ctrl-C saves and returns."""
    if not resume:
        cfg.validate()  # every flag checked before the disk is touched
    with RunLock(Path(cfg.out), create=not resume):
        return _train_autoencoder(cfg, resume, progress, log, report)


def _train_autoencoder(cfg: AETrainConfig, resume: bool, progress: Callable[[dict], None] | None,
                       log: Callable[[str], None], report: bool = True) -> dict:
    out = Path(cfg.out)
    mode = start_mode(out, resume, what="autoencoder")
    if mode != "fresh":
        saved = read_ae_config(out)
        cfg = replace(from_json(AETrainConfig, saved.get("train"), f"{out / 'config.json'}: train"), **resume_overrides(cfg))
    if cfg.steps is None and cfg.minutes is None:
        cfg.steps = 2000
    cfg.validate()
    ds = load_dataset(cfg.data, "train", cfg.data_dir, cfg.image_size)
    mcfg = _model_config(cfg, ds)
    if mode != "fresh" and ae_config_from(saved.get("model"), out / "config.json") != mcfg:
        raise UserError(f"{out / 'config.json'} describes a different autoencoder than this version builds from it")
    torch.manual_seed(cfg.seed)
    ae = Autoencoder(mcfg)
    disc = PatchDiscriminator(mcfg.in_channels, rank=mcfg.frame_config.rank)  # a per-frame one judges frames
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.9), weight_decay=0.0)
    doc = {"format": AE_FORMAT, "model": asdict(mcfg), "train": asdict(cfg)}
    step, seconds = 0, 0.0
    if mode == "resume":
        step, seconds = _load_state(out, ae, disc, opt, opt_d, mcfg)
    else:
        if mode == "fresh":
            write_json(out / "config.json", doc)
        _save_state(out, ae, disc, opt, opt_d, mcfg, 0, 0.0)  # step 0: from here on a killed run resumes
    clock = CheckpointClock(cfg.checkpoint_every, cfg.checkpoint_minutes)
    pixels = math.prod(mcfg.frame_config.item_shape)  # per frame: a step's items are single frames (below)
    flat = (lambda v: v[:, :, 0]) if mcfg.per_frame else (lambda v: v)  # the discriminator's view of a batch
    t0, acc, nan_streak = time.monotonic() - seconds, [], 0
    metrics = open_log(out / "metrics.jsonl")
    try:
        with StopOnSignal() as stop:
            while not stop.requested:
                if (cfg.steps is not None and step >= cfg.steps) or (cfg.minutes is not None and time.monotonic() - t0 >= 60 * cfg.minutes):
                    break
                x = to_model_space(ds.images[batch_index(len(ds), cfg.batch_size, step, cfg.seed)])  # [B, C, H, W]
                if mcfg.per_frame:  # one frame of each clip, as a 1-frame clip: a clip's frames are near-copies
                    t = torch.randint(x.shape[2], (len(x),), generator=step_generator(cfg.seed, step, stream=6))
                    x = x[torch.arange(len(x)), :, t][:, :, None]  # [B, C, 1, H, W]
                g = step_generator(cfg.seed, step, stream=5)
                lr = lr_at(cfg, step, time.monotonic() - t0)  # warm-up, then constant or a linear fall to 0
                for group in (*opt.param_groups, *opt_d.param_groups):
                    group["lr"] = lr
                x_hat, kl = ae(x, g)
                rec = (x - x_hat).abs().mean()
                loss = rec + cfg.kl_weight * kl.mean() / pixels
                adv = cfg.adv_weight > 0 and step >= cfg.adv_start
                if adv:  # generator side of the hinge GAN, with VQGAN's adaptive weight (Esser et al. 2021, Eq. 7)
                    g_loss = -disc(flat(x_hat)).mean()
                    last = ae.dec_out[-1].weight
                    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
                    g_adv = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
                    lam = (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(max=1e4).detach()
                    loss = loss + cfg.adv_weight * lam * g_loss
                if not math.isfinite(float(loss.detach())):
                    nan_streak += 1
                    if nan_streak >= cfg.max_nan_steps:
                        raise UserError(f"autoencoder loss was NaN/inf for {nan_streak} steps in a row at step {step}; stopped. "
                                        f"The last checkpoint in {out} is kept: try a lower --lr, then --resume")
                    step += 1
                    continue
                nan_streak = 0
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0, foreach=True)
                opt.step()
                if adv:  # discriminator: hinge loss, real vs reconstructed
                    d_loss = F.relu(1 - disc(flat(x))).mean() + F.relu(1 + disc(flat(x_hat.detach()))).mean()
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    opt_d.step()
                step += 1
                acc.append(float(rec.detach()))
                if step % cfg.log_every == 0:
                    rec_ = {"step": step, "l1": sum(acc) / len(acc), "kl": float(kl.detach().mean()), "lr": lr,
                            "seconds": time.monotonic() - t0}
                    metrics.write(json.dumps(rec_) + "\n")
                    metrics.flush()
                    acc = []
                    if progress is not None:
                        progress({**rec_, "total_steps": cfg.steps, "total_seconds": 60 * cfg.minutes if cfg.minutes else None})
                if clock.due(step):  # every N steps or M minutes
                    _save_state(out, ae, disc, opt, opt_d, mcfg, step, time.monotonic() - t0)
                    clock.saved()
            interrupted = stop.requested
    finally:
        metrics.close()
    _save_state(out, ae, disc, opt, opt_d, mcfg, step, time.monotonic() - t0)
    if interrupted:
        return {"interrupted": True, "step": step}
    ae.eval().requires_grad_(False)
    doc["latent"] = latent_stats(ae, ds)
    doc["eval"] = evaluate_autoencoder(ae, cfg, out, log, judge=report)
    doc["eval"].update(step=step, seconds=time.monotonic() - t0)
    write_json(out / "config.json", doc)
    return {"interrupted": False, **doc["eval"]}


def _save_state(out: Path, ae: Autoencoder, disc: nn.Module, opt, opt_d, mcfg: AEConfig, step: int, seconds: float) -> None:
    refuse_non_finite(step, out, autoencoder_weights=ae, discriminator_weights=disc)
    tensors = {f"ae.{k}": v for k, v in ae.state_dict().items()}
    tensors.update({f"disc.{k}": v for k, v in disc.state_dict().items()})
    groups = {}
    for name, o in (("opt", opt), ("optd", opt_d)):
        sd = o.state_dict()
        groups[name] = sd["param_groups"]
        for i, st in sd["state"].items():
            tensors.update({f"{name}.{i}.{k}": v for k, v in st.items()})
    meta = {"step": step, "seconds": seconds, "fingerprint": fingerprint(mcfg), "param_groups": groups}
    save_tensors(out / "state" / "state.safetensors", tensors, meta)
    save_tensors(out / "model.safetensors", dict(ae.state_dict()), {"step": step, "fingerprint": fingerprint(mcfg)})


def _load_state(out: Path, ae: Autoencoder, disc: nn.Module, opt, opt_d, mcfg: AEConfig) -> tuple[int, float]:
    path = out / "state" / "state.safetensors"
    tensors, meta = load_tensors(path, "autoencoder training state")
    if meta.get("fingerprint") != fingerprint(mcfg):
        raise UserError(f"{path} was saved by a different autoencoder than {out / 'config.json'} describes")
    load_into(ae, {k[3:]: v for k, v in tensors.items() if k.startswith("ae.")}, path)
    load_into(disc, {k[5:]: v for k, v in tensors.items() if k.startswith("disc.")}, path)
    groups = meta.get("param_groups")
    if not (isinstance(groups, dict) and isinstance(meta.get("step"), int) and isinstance(meta.get("seconds"), (int, float))):
        raise UserError(f"{path}: its step / optimizer record is damaged")
    for name, o in (("opt", opt), ("optd", opt_d)):
        load_optimizer(o, tensors, name, groups.get(name), path)
    return int(meta["step"]), float(meta["seconds"])


@torch.no_grad()
def latent_stats(ae: Autoencoder, ds: ImageDataset, n: int = 10000, seed: int = 0) -> dict:
    """Per-channel mean and std of posterior samples z over (up to n) training images."""
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n]
    g = torch.Generator().manual_seed(seed + 1)
    zs = []
    for i in range(0, len(idx), 500):
        mean, logvar = ae.encode(to_model_space(ds.images[idx[i : i + 500]]))
        zs.append(mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g))
    z = torch.cat(zs).transpose(0, 1).flatten(1).double()  # [c, N*h*w]
    return {"mean": z.mean(1).tolist(), "std": z.std(1).clamp_min(1e-6).tolist(), "n": len(idx)}


@torch.no_grad()
def reconstruct(ae: Autoencoder, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """uint8 images -> uint8 reconstructions through the posterior mean."""
    out = [to_uint8(ae.decode(ae.encode(to_model_space(images[i : i + batch_size]))[0])) for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of uint8 images [N, C, H, W] (capped at 100 dB for identical images)."""
    mse = (a.double() - b.double()).square().flatten(1).mean(1)
    return (10 * torch.log10(255.0**2 / mse.clamp_min(255.0**2 * 1e-10)))


def evaluate_autoencoder(ae: Autoencoder, cfg: AETrainConfig, out: Path, log: Callable[[str], None] = print,
                         n: int = 2000, judge: bool = True) -> dict:
    """Test-split PSNR, domain-classifier accuracy on reconstructions vs originals, and rFID (``judge=False``: PSNR
    only); writes AE/reconstructions.png (originals above their reconstructions)."""
    from ..metrics.classifier import get_classifier, predict
    from ..metrics.fid import fid_from_features

    native_test = load_dataset(cfg.data, "test", cfg.data_dir)
    test = native_test.subset(torch.arange(min(n, len(native_test))))
    if test.images.is_floating_point() or test.modality is not None:
        return _evaluate_items(ae, cfg, test, out, log, judge)
    if cfg.image_size:
        test = resize_dataset(test, cfg.image_size)
    rec = reconstruct(ae, test.images)
    p = psnr(rec, test.images)
    report = {"psnr": float(p.mean()), "psnr_sem": float(p.std() / math.sqrt(len(p))), "n": len(test)}
    save_grid(out / "reconstructions.png", torch.cat([test.images[:16], rec[:16]]), ncol=16)
    if test.labels is not None and judge:
        clf, _ = get_classifier(load_dataset(cfg.data, "train", cfg.data_dir), native_test, log)
        size = native_test.shape[-1]
        f_real, p_real = predict(clf, resize_images(test.images, size))
        f_rec, p_rec = predict(clf, resize_images(rec, size))
        report.update(acc_originals=float((p_real == test.labels).float().mean()),
                      acc_reconstructions=float((p_rec == test.labels).float().mean()),
                      rfid=float(fid_from_features(f_rec, f_real)))
    return report


def _evaluate_items(ae: Autoencoder, cfg: AETrainConfig, test: ImageDataset, out: Path, log: Callable[[str], None],
                    judge: bool = True) -> dict:
    """The same report for items of another modality (log-mels, clips): PSNR over the model-space range [-1, 1],
    the modality's preview of originals above reconstructions, and its judge's accuracy and Frechet distance (for
    audio: what is heard, both sets through the vocoder)."""
    from ..metrics.fid import fid_from_features
    from ..metrics.judge import has_judge, judge_for
    from ..modalities import get_modality

    mod = get_modality(test.modality)
    items = to_model_space(test.images)  # clips are uint8 pixels; log-mels pass as they are
    rec = torch.cat([ae.decode(ae.encode(items[i : i + 250])[0]).clamp(-1, 1) for i in range(0, len(test), 250)])
    mse = (rec.double() - items.double()).square().flatten(1).mean(1)
    p = 10 * torch.log10(4.0 / mse.clamp_min(4e-10))
    report = {"psnr": float(p.mean()), "psnr_sem": float(p.std() / math.sqrt(len(p))), "n": len(test),
              "l1": float((rec - items).abs().mean())}
    save_grid(out / "reconstructions.png", mod.preview(torch.cat([items[:8], rec[:8]])), ncol=8)
    if test.labels is not None and judge and has_judge(mod, cfg.data):
        j = judge_for(mod, cfg.data, cfg.data_dir, log)
        f_real, p_real = j.score(items)
        f_rec, p_rec = j.score(rec)
        report.update(acc_originals=float((p_real == test.labels).float().mean()),
                      acc_reconstructions=float((p_rec == test.labels).float().mean()),
                      rfid=float(fid_from_features(f_rec, f_real)))
    return report
