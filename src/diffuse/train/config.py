"""Training configuration and the recipes that fill in per-dataset defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..losses import WEIGHTINGS
from ..precond import PARAMETERIZATIONS
from .rundir import check_checkpoint_minutes


@dataclass
class TrainConfig:
    """One training run. ``None`` fields are filled from the dataset's recipe (``RECIPES``)."""

    data: str = "digits"
    data_dir: str | None = None
    cond: str = "none"  # none | class | text
    task: str = "generate"  # generate | superres
    captions: str | None = None  # text models on image folders: CSV/JSONL of file,text
    text_encoder: str = "minilm"
    text_noise: float = 0.3  # conditioning augmentation of text embeddings (text/bank.py: augment)
    superres_factor: int = 2
    out: str = "runs/digits"
    arch: str = "unet"  # unet | dit
    preset: str | None = None  # width/depth preset of the U-Net (nets/unet.py) or DiT (nets/dit.py)
    image_size: int | None = None  # resize the data to this size first (e.g. 64)
    latent: str | None = None  # an autoencoder directory (diffuse train-autoencoder): train on its latents; "auto":
    # train and cache one first (train/auto_latent.py); "none" (as None): on the data itself
    vocoder: str | None = "auto"  # audio: a neural vocoder directory (diffuse train-vocoder) the run carries and decodes
    # with; "auto": the one cached for the data, if any (modalities/audio.run_vocoder_dir); "none" / None: Griffin-Lim
    net_overrides: dict[str, Any] = field(default_factory=dict)
    # objective
    param: str = "edm"  # edm | eps | v | x0
    weighting: str | None = None  # defaults to the parameterization's natural loss
    sigma_density: str | None = None  # lognormal | vp
    p_mean: float | None = None  # lognormal noise levels: ln(sigma) ~ N(p_mean, p_std^2); default from the recipe (EDM's
    p_std: float | None = None  # -1.2, 1.2 for images)
    sigma_data: float = 0.5  # the data's standard deviation that EDM's preconditioning and loss weight assume
    beta_schedule: str = "linear"
    zero_terminal_snr: bool = False
    min_snr_gamma: float = 5.0
    label_dropout: float = 0.1  # also the caption dropout of text models
    # optimisation
    batch_size: int | None = None
    lr: float | None = None
    warmup_steps: int | None = None  # linear learning-rate warm-up (default from the recipe: 200, 50 for audio)
    lr_decay: float | None = None  # the share of the budget, at its end, over which the learning rate falls linearly
    # to 0 (warm-up, stable, decay: Hagele et al. 2024); 0 keeps it constant after the warm-up; default from the recipe
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_halflife_kimg: float | None = None
    ema_rampup_ratio: float = 0.05  # the half-life is at most this share of the images seen so far (EDM's ramp-up)
    flip: bool = False
    frame_mask: float | None = None  # video: share of clips trained with their first 1..T/2 frames given (image-to-video)
    frame_noise: float = 0.0  # video: the share of the noise's variance that every frame shares (noise.py; 0: white)
    class_weights: dict[str, float] = field(default_factory=dict)  # draw a class's items this many times as often
    # (train/batches.py; keys: class names or their first words); empty: every item once per epoch
    # budget and bookkeeping
    steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    precision: str = "auto"  # auto | bf16 | fp32
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    checkpoint_minutes: float | None = 2.0  # also checkpoint when this much time passed since the last one
    max_nan_steps: int = 10

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def uses_latent(self) -> bool:
        """Whether the run diffuses in an autoencoder's latents (a directory, or "auto")."""
        return self.latent not in (None, "none")

    @classmethod
    def from_saved(cls, saved: Any, source: Path, overrides: dict[str, Any] | None = None) -> "TrainConfig":
        """The config saved in RUN/config.json ("train"), every field's type checked, with ``overrides`` applied."""
        from ..typed import from_json

        cfg = from_json(cls, saved, f"{source}: train")
        if isinstance(saved, dict) and "lr_decay" not in saved:  # runs saved before the decay resume without one
            cfg = replace(cfg, lr_decay=0.0)
        return replace(cfg, **(overrides or {}))

    def resolved(self) -> "TrainConfig":
        """A copy with the recipe defaults filled in and every value checked (one-line errors)."""
        c = TrainConfig(**asdict(self))
        from ..data import modality_name

        recipe = RECIPES.get(c.data.split(":")[0]) or RECIPES.get(modality_name(c.data), RECIPES["_default"])
        if c.arch == "dit":  # transformers want a lower learning rate than the U-Net recipe's
            c.preset = recipe["dit_preset"] if c.preset is None else c.preset
            c.lr = recipe["dit_lr"] if c.lr is None else c.lr
        for k, v in recipe.items():
            if k not in ("default_steps", "dit_preset", "dit_lr", "latent_p_mean") and getattr(c, k) is None:
                setattr(c, k, v)
        if c.p_mean is None and c.uses_latent:  # latents of unit variance: more training at high noise
            c.p_mean = recipe.get("latent_p_mean")
        if c.frame_mask is None:
            c.frame_mask = 0.0
        if c.lr_decay is None:
            c.lr_decay = 0.0
        c.p_mean = -1.2 if c.p_mean is None else c.p_mean
        c.p_std = 1.2 if c.p_std is None else c.p_std
        if c.weighting is None:  # (None means "not given"; an empty string is a wrong value and is refused below)
            c.weighting = {"edm": "edm", "eps": "eps", "v": "v", "x0": "x0"}.get(c.param)
        if c.sigma_density is None:
            c.sigma_density = "lognormal" if c.param == "edm" else "vp"
        if c.steps is None and c.minutes is None:
            c.steps = recipe["default_steps"]
        c.validate()
        return c

    def validate(self) -> None:
        checks = [
            (self.param in PARAMETERIZATIONS, f"--param must be one of {', '.join(PARAMETERIZATIONS)}, got {self.param!r}"),
            (self.weighting in WEIGHTINGS, f"--weighting must be one of {', '.join(WEIGHTINGS)}, got {self.weighting!r}"),
            (self.sigma_density in ("lognormal", "vp"), f"--sigma-density must be lognormal or vp, got {self.sigma_density!r}"),
            (self.beta_schedule in ("linear", "cosine", "sigmoid"), f"--beta-schedule must be linear, cosine or sigmoid, got {self.beta_schedule!r}"),
            (self.cond in ("none", "class", "text"), f"--cond must be none, class or text, got {self.cond!r}"),
            (self.arch in ("unet", "dit"), f"--model must be unet or dit, got {self.arch!r}"),
            (not self.uses_latent or self.task == "generate", "--latent is for --task generate (super-resolution runs on pixels)"),
            (not self.uses_latent or not self.flip, "--flip is not available with --latent (latents are encoded once, unflipped)"),
            (self.image_size is None or self.image_size >= 4, f"--image-size must be >= 4, got {self.image_size}"),
            (self.task in ("generate", "superres"), f"--task must be generate or superres, got {self.task!r}"),
            (self.superres_factor >= 2, f"--superres-factor must be >= 2, got {self.superres_factor}"),
            (self.task != "superres" or self.cond == "none", "--task superres is conditioned on the low-res image only: use --cond none"),
            (self.captions is None or self.cond == "text", "--captions is for --cond text"),
            (self.steps is None or self.steps > 0, f"--steps must be a positive integer, got {self.steps}"),
            (self.minutes is None or self.minutes > 0, f"--minutes must be positive, got {self.minutes}"),
            (self.batch_size is not None and self.batch_size > 0, f"--batch-size must be a positive integer, got {self.batch_size}"),
            (self.lr is not None and self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (0 <= self.label_dropout < 1, f"--label-dropout must be in [0, 1), got {self.label_dropout}"),
            (self.p_mean is None or -10 <= self.p_mean <= 10, f"--p-mean must be in [-10, 10] (ln sigma), got {self.p_mean}"),
            (self.p_std is None or 0 < self.p_std <= 5, f"--p-std must be positive and at most 5, got {self.p_std}"),
            (0.01 <= self.sigma_data <= 100, f"--sigma-data is the data's standard deviation, in [0.01, 100], got {self.sigma_data}"),
            (self.frame_mask is None or 0 <= self.frame_mask < 1, f"--frame-mask must be in [0, 1), got {self.frame_mask}"),
            (0 <= self.frame_noise < 1, f"--frame-noise is a share of the noise's variance in [0, 1), got {self.frame_noise}"),
            (self.text_noise >= 0, f"--text-noise must be >= 0, got {self.text_noise}"),
            (self.warmup_steps is not None and self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}"),
            (0 <= self.lr_decay < 1, f"--lr-decay is a share of the budget in [0, 1), got {self.lr_decay}"),
            (self.grad_clip >= 0, f"--grad-clip must be >= 0, got {self.grad_clip}"),
            (self.ema_halflife_kimg is not None and self.ema_halflife_kimg >= 0, f"--ema-kimg must be >= 0, got {self.ema_halflife_kimg}"),
            (0 < self.ema_rampup_ratio <= 1, f"--ema-rampup is a share of the images seen, in (0, 1], got {self.ema_rampup_ratio}"),
            (min(self.log_every, self.sample_every, self.checkpoint_every) > 0, "--log-every, --sample-every and --checkpoint-every must be positive"),
            (self.precision in ("auto", "bf16", "fp32"), f"--precision must be auto, bf16 or fp32, got {self.precision!r}"),
            *[(type(v) is int and v >= 1, f"--{k.replace('_', '-')} must be a positive integer, got {v!r}")
              for k, v in self.net_overrides.items() if k in ("patch_size", "temporal_patch")],
            (type(d := self.net_overrides.get("dropout", 0.0)) in (int, float) and 0 <= d < 1, f"--dropout must be in [0, 1), got {d!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        check_checkpoint_minutes(self.checkpoint_minutes)
        check_finite(self)
        from .batches import check_class_weights

        check_class_weights(self.class_weights)  # the names are checked against the data when it loads


def lr_at(cfg: Any, step: int, seconds: float) -> float:
    """The learning rate of ``step``, ``seconds`` into the run: a linear warm-up over ``warmup_steps``, then constant,
    then (with ``lr_decay`` > 0) a linear fall to 0 over the last ``lr_decay`` of the budget, in time for --minutes and
    in steps for --steps (whichever is further along when both are set). ``cfg`` is a diffusion or autoencoder
    training config (both have lr, warmup_steps, lr_decay, minutes and steps)."""
    lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps or 0, 1))
    if not cfg.lr_decay:
        return lr
    done = max(seconds / (cfg.minutes * 60) if cfg.minutes else 0.0, step / cfg.steps if cfg.steps else 0.0)
    return lr * min(1.0, max(0.0, 1.0 - done) / cfg.lr_decay)


def check_finite(cfg: Any) -> None:
    """Every float setting of a config dataclass is a finite number (a NaN or inf flag is refused, not trained on)."""
    for k, v in asdict(cfg).items():
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"--{k.replace('_', '-')} must be a finite number, got {v}")


# Per-dataset defaults, then per modality (a folder of audio files takes "audio"). The Fashion-MNIST recipe is the one
# benchmarks/fmnist_recipe.py measures.
RECIPES: dict[str, dict[str, Any]] = {
    "digits": dict(preset="tiny", dit_preset="tiny", dit_lr=2e-3, batch_size=128, lr=2e-3, ema_halflife_kimg=20.0, warmup_steps=200, default_steps=1500),
    "fashion-mnist": dict(preset="fmnist", dit_preset="fmnist", dit_lr=1e-3, batch_size=128, lr=2e-3, ema_halflife_kimg=20.0, warmup_steps=200, default_steps=20000),
    # audio: 10 minutes are 550-1,150 steps on a 2-core CPU, so a short warm-up, a short EMA and batch 32: it learns
    # more per second than 64 (family 69% / pitch 84% on the log-mels against 50% / 42%) and 16 (66% / 63%)
    # (benchmarks/audio_recipe.py --mels-only, README "Audio"); on the log-mels: --latent auto (3 of the 10 minutes to
    # an autoencoder) lost pitch (README "Audio")
    # (the notes take this modality's recipe, as every audio data set does)
    # the learning rate falls to 0 over the last 30% of the budget: family 94% / pitch 94% on the log-mels of named
    # notes against 84% / 98% held constant (2,013 and 2,047 steps on an AMX CPU, README "Audio")
    "audio": dict(preset="audio", dit_preset="audio", dit_lr=1e-3, batch_size=32, lr=2e-3, ema_halflife_kimg=10.0, warmup_steps=50,
                  lr_decay=0.3, default_steps=20000),
    # video (moving Fashion-MNIST, data/moving.py): 8 x 32 x 32 clips as 4 x 4 x 4 tubelets (benchmarks/video_recipe.py)
    # latent video: --p-mean 0 gave 69% class / 91% direction against 58% / 61% at EDM's -1.2 (README "Video")
    "video": dict(preset="base", dit_preset="video", dit_lr=1e-3, batch_size=32, lr=2e-3, ema_halflife_kimg=10.0, warmup_steps=100,
                  frame_mask=0.25, latent_p_mean=0.0, default_steps=20000),
    "_default": dict(preset="base", dit_preset="S", dit_lr=2e-4, batch_size=64, lr=1e-3, ema_halflife_kimg=50.0, warmup_steps=200, default_steps=20000),
}
