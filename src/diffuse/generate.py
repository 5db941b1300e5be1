"""Sampling from a trained denoiser: sigma schedule -> guidance wrapper -> sampler -> model-space samples, which the
run's modality (modalities/) turns into images, sounds, ... and writes."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable

import torch

from . import schedules
from .cond import Cond
from .data import to_uint8
from .errors import UserError
from .guidance import cfg as cfg_wrap
from .guidance import Projection, class_null
from .noise import color, sampler_noise
from .precond import Precond
from .samplers import get_sampler

if TYPE_CHECKING:
    from .editing import Edit
    from .text.bank import CaptionBank, TextRows


# Default classifier-free guidance for conditional models, chosen from a sweep on the Fashion-MNIST recipe
# (see README, Benchmarks): it raised label accuracy and lowered FID there.
DEFAULT_GUIDANCE = 3.0
# Text models: benchmarks/text_adherence.py (held-out prompts through their nearest training captions, w in 0..5):
# the lowest FID among the w with >= 80% adherence is at w = 3 (2.78; 87.7%); w = 5 ties on FID (2.79; 90.2%).
# On raw prompts (--raw-prompt) w = 5 was best on both (README, Text-to-image).
DEFAULT_TEXT_GUIDANCE = 3.0
# More sampling steps than this buy nothing (FID is flat from 50 on, README "Sampler quality") and the schedule
# itself would not fit in memory far above it.
MAX_STEPS = 10_000


def _numbers(value: Any, counts: range) -> tuple[float, ...]:
    """``"A,B,..."`` or a sequence as floats, as many as ``counts`` allows (TypeError or ValueError otherwise)."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    if len(parts) not in counts:
        raise ValueError
    return tuple(float(v) for v in parts)


def parse_interval(value: Any) -> tuple[float, float] | None:
    """``"LO,HI"`` (``--guidance-interval``) or a pair (``Run.sample(guidance_interval=)``) as two floats;
    SampleConfig.validate checks their values."""
    if value is None:
        return None
    try:
        lo, hi = _numbers(value, range(2, 3))
    except (TypeError, ValueError):
        raise UserError(f"--guidance-interval (guidance_interval) must be LO,HI, two numbers (e.g. 0.3,5), got {value!r}") from None
    return lo, hi


def parse_projection(value: Any) -> Projection | None:
    """``"ETA[,RESCALE[,MOMENTUM]]"`` (``--apg``), a sequence of up to three numbers or a Projection
    (``Run.sample(apg=)``) as adaptive projected guidance's settings (guidance.Projection), checked."""
    if value is None:
        return None
    try:
        return (value if isinstance(value, Projection) else Projection(*_numbers(value, range(1, 4)))).check()
    except (TypeError, ValueError) as e:
        why = f": {e}" if str(e) else ""
        raise UserError(f"--apg (apg) must be ETA[,RESCALE[,MOMENTUM]] (e.g. 0 or 0,4,-0.5), got {value!r}{why}") from None


@dataclass
class SampleConfig:
    """How to sample. ``guidance`` follows the convention in guidance.py: 1 = no guidance, 0 = unconditional.
    ``schedule``: ``karras`` (rho = 7 over the model's sigma range, no wasted evaluation at sigma_min; see
    schedules.karras_sampling_sigmas), ``edm`` (Karras et al. Eq. 5 exactly, ending at sigma_min) or ``vp`` (the DDPM training timesteps,
    ``spacing`` leading / trailing / linspace)."""

    # from `diffuse bench quality` on the 10-minute Fashion-MNIST model (README, "Sampler quality"): DPM-Solver++(2M)
    # at 10 steps scored FID 1.50, against 1.56 at 250 steps, with the karras schedule below
    sampler: str | None = None  # None: dpmpp_2m, or consistency for a distilled run (for_model)
    steps: int | None = None  # None: 10, or the distilled run's own step count
    schedule: str = "karras"
    spacing: str = "leading"
    guidance: float | None = None  # None: DEFAULT_GUIDANCE for conditional models, 1 (none) otherwise
    seed: int = 0
    batch_size: int = 256
    precision: str = "auto"
    churn: float = 0.0  # Heun only: EDM's S_churn (stochasticity); 0 is the deterministic Algorithm 1
    guidance_interval: tuple[float, float] | None = None  # guide only at lo < sigma <= hi (guidance.cfg)
    apg: Projection | None = None  # adaptive projected guidance in place of CFG's update (guidance.Projection)
    built_in_guidance: float | None = None  # set by for_model for a distilled run: the guidance its network applies itself

    def validate(self, conditional: int | bool) -> None:
        """Check every field; ``conditional``: the model takes labels or text (a class count also works)."""
        if self.sampler is not None:
            get_sampler(self.sampler)
        if self.steps is not None and not 0 < self.steps <= MAX_STEPS:
            raise UserError(f"--steps must be an integer from 1 to {MAX_STEPS}, got {self.steps}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise UserError(f"unknown precision {self.precision!r}; choose auto, bf16 or fp32")
        if self.batch_size <= 0:
            raise UserError(f"--batch-size must be a positive integer, got {self.batch_size}")
        if self.schedule not in ("karras", "edm", "vp"):
            raise UserError(f"unknown schedule {self.schedule!r}; choose karras, edm or vp")
        if self.guidance is not None and self.guidance != 1.0 and not conditional:
            raise UserError("--guidance needs a conditional model; this one is unconditional")
        if not math.isfinite(self.churn) or (self.guidance is not None and not math.isfinite(self.guidance)):
            raise UserError(f"--churn and --guidance must be finite numbers, got {self.churn} and {self.guidance}")
        if self.churn < 0 or (self.churn > 0 and self.sampler != "heun"):
            raise UserError(f"--churn must be >= 0 and is for --sampler heun only, got {self.churn} with {self.sampler}")
        if self.guidance is not None and self.guidance < 0:
            raise UserError(f"--guidance must be >= 0, got {self.guidance}")
        if self.guidance_interval is not None:
            lo, hi = self.guidance_interval
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
                raise UserError(f"--guidance-interval must be LO,HI with 0 <= LO < HI (noise levels sigma), got {lo:g},{hi:g}")
        shaping = [f for f, v in (("--guidance-interval", self.guidance_interval), ("--apg", self.apg)) if v is not None]
        if shaping and self.guidance_for(conditional) == 1.0:  # (a distilled run's built-in guidance: for_model refuses)
            raise UserError(f"{shaping[0]} shapes classifier-free guidance, and "
                            + ("this model is unconditional" if not conditional else "--guidance 1 applies none")
                            + ": it would change nothing" + (" (give --guidance W other than 1)" if conditional else ""))

    def for_model(self, model: Any) -> "SampleConfig":
        """This config with the model's defaults in place of None: DPM-Solver++(2M) at 10 steps, or for a distilled run
        (``model.consistency``, distill.py) the consistency sampler at its own step count, its guidance built in."""
        c = getattr(model, "consistency", None)
        if not c:
            return replace(self, sampler=self.sampler or "dpmpp_2m", steps=self.steps or 10)
        built_in = float(c.get("guidance", 1.0))
        if self.guidance_interval is not None or self.apg is not None:
            raise UserError(f"this run was distilled with guidance {built_in:g} built in at every noise level: "
                            f"{'--guidance-interval' if self.guidance_interval is not None else '--apg'} does not apply to it")
        if self.guidance is not None and self.guidance != built_in:
            raise UserError(f"this run was distilled with guidance {built_in:g} built in: leave --guidance out "
                            f"(or distill the teacher again with --guidance {self.guidance:g})")
        return replace(self, sampler=self.sampler or "consistency", steps=self.steps or int(c.get("steps", 2)), built_in_guidance=built_in)

    def guidance_for(self, conditional: int | bool, text: bool = False) -> float:
        """The guidance strength the sampling wrapper applies for a conditional (labels, or ``text``) or unconditional
        model: none (1) on top of a distilled run's built-in guidance."""
        if self.built_in_guidance is not None:
            return 1.0
        if self.guidance is not None:
            return self.guidance
        if not conditional:
            return 1.0
        return DEFAULT_TEXT_GUIDANCE if text else DEFAULT_GUIDANCE

    def carried_guidance(self, conditional: int | bool, text: bool = False) -> float:
        """The guidance the samples carry, for reports: a distilled run's built-in strength, else ``guidance_for``."""
        return self.built_in_guidance if self.built_in_guidance is not None else self.guidance_for(conditional, text)


def sigma_schedule(model: Precond, cfg: SampleConfig) -> torch.Tensor:
    """The sampling sigmas [steps + 1] (ending in 0) for this model (``cfg`` resolved by ``for_model``); a distilled
    run's consistency sampler starts at its chosen level and takes the intermediate sigmas its distillation searched
    for, where it stored some."""
    record = getattr(model, "consistency", None) or {}
    stored = record.get("sigmas", {}).get(str(cfg.steps))
    if cfg.sampler == "consistency" and stored is not None and cfg.schedule == "karras":
        return torch.tensor([consistency_start(model, cfg.steps), *stored, 0.0], dtype=torch.float64)
    if cfg.schedule == "vp":
        if cfg.steps > model.cfg.T:
            raise UserError(f"--steps {cfg.steps} exceeds the {model.cfg.T} timesteps of the VP schedule")
        return schedules.vp_discrete_sigmas(cfg.steps, model.cfg.abar(), cfg.spacing)  # type: ignore[arg-type]
    lo, hi = model.sigma_range
    if cfg.sampler == "consistency" and record:  # other step counts ramp from a searched start too
        hi = consistency_start(model, cfg.steps)
    if cfg.schedule == "edm":
        return schedules.karras_sigmas(cfg.steps, lo, hi)
    return schedules.karras_sampling_sigmas(cfg.steps, lo, hi)


def consistency_start(model: Precond, steps: int = 1) -> float:
    """The noise level a distilled run's consistency sampler starts from at ``steps`` steps: the level its search chose
    for that step count ("starts"), else the one of the nearest searched count below it (3 steps start where 2 do),
    else the 1-step start ("start"; older runs have no "starts", the oldest neither), else sigma_max. Starting below
    sigma_max is sound where the data's spread is small beside it: the marginal there is still close to pure noise,
    and the student was trained on it far more often."""
    lo, hi = model.sigma_range
    record = getattr(model, "consistency", None) or {}
    starts = record.get("starts") or {}
    if not isinstance(starts, dict) or not all(isinstance(k, str) and k.isdigit() for k in starts):
        raise UserError(f"the run's consistency record has bad starts {starts!r}; it must map step counts to sigmas")
    below = [k for k in starts if int(k) <= steps]
    start = starts[max(below, key=int)] if below else record.get("start", hi)
    if not (isinstance(start, (int, float)) and not isinstance(start, bool) and math.isfinite(start) and lo < start <= hi):
        raise UserError(f"the run's consistency record has a bad start sigma {start!r}; it must be a number in ({lo:g}, {hi:g}]")
    return float(start)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether bf16 autocast is the fast path: on CUDA with bf16 support, and on CPUs with AMX tiles
    (without AMX, this CPU path runs bf16 convolutions slower than float32)."""
    if precision not in ("auto", "bf16", "fp32"):
        raise UserError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast context on ``device``, or a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def check_prompts(prompts: list[str]) -> None:
    if not prompts:
        raise UserError("no prompts given")
    for p in prompts:
        if not p.strip():
            raise UserError("empty prompt: give each --prompt some text")


def prompt_cond(prompts: list[str], n: int, encoder: str = "minilm", bank: "CaptionBank | None" = None
                ) -> tuple["TextRows", torch.Tensor]:
    """The text condition of n samples cycling through ``prompts`` (sample i gets prompt i mod P), and the prompt
    index of each sample [n]. Each distinct prompt is encoded once and held once (TextRows), whatever n is; where
    ``bank`` (a run's encoded training captions) holds every prompt, its rows are used and the encoder is not loaded."""
    from .text.bank import CaptionBank, TextRows

    check_prompts(prompts)
    if bank is None or not set(prompts) <= set(bank.texts):
        bank = CaptionBank.build(prompts, encoder, cache=False)
    which = torch.arange(n) % len(prompts)
    return TextRows(bank.cond(bank.index(prompts)), which), which


def check_sampling_memory(model: Precond, n: int, b: int, shape: tuple[int, ...], guided: bool, cond1, codec,
                          device: torch.device) -> None:
    """Refuse (one line) a request whose peak memory cannot fit: the network's traced activation peak at the batch
    it will see (doubled by guidance), the sampler's few copies of the batch, the decoder of a latent model, and
    the n float32 results held until they are written."""
    from . import memory

    nb = 2 * b if guided else b
    cond = Cond.of(cond1)._map(lambda t: t.expand(nb, *t.shape[1:]) if len(t) == 1 else t)
    x = torch.empty(nb, *shape, device="meta")
    peak = memory.forward_peak_bytes(model, x, torch.empty(nb, device="meta"), cond)
    if codec is not None:
        z = torch.empty(b, *shape, device="meta")
        peak = max(peak, memory.forward_peak_bytes(codec.ae, z, method="decode"))
        shape = codec.image_shape
    per_item = math.prod(shape)
    need = int(memory.OVERHEAD * peak) + 8 * 4 * b * per_item + 2 * 4 * n * per_item
    memory.check_fits(need, f"sampling {n} items of shape {'x'.join(map(str, shape))} in batches of {b}", device,
                      "lower --batch-size, or ask for fewer at a time (--n)")


def initial_noise(seed: int, first: int, n: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Starting noise of images first .. first + n - 1: image i from its own generator seeded by (seed, i)."""
    return torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + first + i)) for i in range(n)])


def round_robin_labels(n: int, num_classes: int, label: int | None = None) -> torch.Tensor | None:
    """Labels for n samples: all ``label``, or i mod num_classes; None for an unconditional model."""
    if num_classes == 0:
        if label is not None:
            raise UserError("--label needs a class-conditional model; this one is unconditional")
        return None
    if label is not None and not 0 <= label < num_classes:
        raise UserError(f"--label {label} is out of range: this model has classes 0..{num_classes - 1}")
    return torch.full((n,), label) if label is not None else torch.arange(n) % num_classes


@torch.no_grad()
def generate(model: Precond, n: int, cfg: SampleConfig, labels: torch.Tensor | None = None,
             progress: Callable[[int], None] | None = None, shape: tuple[int, ...] | None = None,
             num_classes: int | None = None, offset: int = 0, text: dict | None = None,
             edit: "Edit | None" = None, negative: "TextRows | None" = None,
             on_step: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """n samples in model space, float32 [n, C, H, W] on the CPU (decoded from latents for a latent model; images in
    [-1, 1], log-mels for audio: the modality writes them). Sample i starts from noise seeded by (seed, i), so deterministic
    samplers give the same image i whatever the batch size; stochastic ones also draw per-batch noise.
    Conditions: ``labels`` [n] for class models, ``text`` (a text condition of n rows, see ``prompt_cond``) for
    text models. ``edit`` (editing.py) turns sampling into img2img, inpainting or super-resolution.
    ``shape`` (C, H, W) and ``num_classes`` default to those of our networks (U-Net or DiT; latents for a latent model,
    which decodes them through ``model.codec``); pass them for other networks.
    ``offset`` numbers the images from there (a rank's shard of a larger set draws that set's noise).
    ``negative`` (text models; a text condition of n rows, as ``text``): the negative prompt, which takes the place of
    the dropped text in the unconditional branch of guidance. ``on_step(done, total)`` is called after every sampler
    step (the web page's progress; an exception raised there stops sampling)."""
    from .text.bank import index_cond

    if num_classes is None:
        num_classes = model.net.cfg.num_classes
    conditional = bool(num_classes) or text is not None
    cfg.validate(conditional)
    cfg = cfg.for_model(model)
    if n <= 0:
        raise UserError(f"--n must be a positive integer, got {n}")
    device = next(model.parameters()).device
    from .nets import item_shape

    shape = tuple(shape or item_shape(model.net.cfg))  # (C, H, W), or (C, T, H, W) of clips
    sigmas = sigma_schedule(model, cfg)
    codec = getattr(model, "codec", None)  # latent models (model.attach_codec): sample latents, decode them
    if edit is not None:
        sigmas = edit.trim(sigmas)
        if codec is not None:
            edit = edit.in_latent_space(codec)
    if negative is not None and text is None:
        raise UserError("a negative prompt needs a text model")
    gw = cfg.guidance_for(True, text=text is not None) if (text is not None or num_classes) else 1.0
    if negative is not None and gw == 1.0:  # it stands in guidance's unconditional branch
        raise UserError("--negative-prompt acts through classifier-free guidance, and "
                        + (f"this run has its guidance ({cfg.built_in_guidance:g}) built in" if cfg.built_in_guidance is not None
                           else "--guidance 1 applies none") + ": it would change nothing")
    sampler = get_sampler(cfg.sampler)
    share = model.cfg.frame_noise  # the noise the model was trained on: white (0) or shared across frames (noise.py)
    bf16 = use_bf16(cfg.precision, device)
    guided = gw not in (0.0, 1.0)  # two forward passes a step (the memory check's batch)
    def cond_of(rows: slice) -> Cond:
        return Cond(index_cond(labels, rows), index_cond(text, rows)).to(device)

    check_sampling_memory(model, n, min(cfg.batch_size, n), shape, guided, cond_of(slice(0, 1)), codec, device)
    out = []
    steps = (len(sigmas) - 1) * (edit.resample if edit is not None and edit.mask is not None else 1)
    total, done = steps * math.ceil(n / cfg.batch_size), 0

    def step(_info: dict) -> None:
        nonlocal done
        done = min(done + 1, total)
        on_step(done, total)

    for start in range(0, n, cfg.batch_size):
        b = min(cfg.batch_size, n - start)
        first = offset + start
        z = color(initial_noise(cfg.seed, first, b, shape), share).to(device)  # [b, *shape]: the run's noise (noise.py)
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + first)
        rows = slice(start, start + b)
        cond = cond_of(rows)
        null = class_null(num_classes)
        if negative is not None:  # this batch's negative prompts replace the dropped text
            neg = Cond(text=index_cond(negative, rows)).to(device)
            null = lambda c, neg=neg: replace(c, text=neg.text)  # noqa: E731
        denoiser = cfg_wrap(model, gw, null, cfg.guidance_interval, cfg.apg) if gw != 1.0 or negative is not None else model
        with autocast(device, bf16):
            extra = {"s_churn": cfg.churn} if cfg.churn > 0 else {}
            if share:
                extra["noise_sampler"] = sampler_noise(share, gen)
            if on_step is not None:
                extra["callback"] = step
            if edit is None:
                x = sampler(denoiser, z * float(sigmas[0]), sigmas, cond=cond, generator=gen, **extra)
            else:
                x = edit.run(sampler, denoiser, z, sigmas, rows, cond=cond, generator=gen, **extra)
        if codec is not None:
            x = codec.decode(x) if edit is None else edit.finish(codec.decode(x), rows)
        out.append(x.float().cpu())
        if progress is not None:
            progress(b)
    return torch.cat(out)


def generate_uint8(*args, **kwargs) -> torch.Tensor:
    """``generate`` for image models, as uint8 [n, C, H, W]."""
    return to_uint8(generate(*args, **kwargs))


@torch.no_grad()
def superres(model: Any, lowres: torch.Tensor, cfg: Any, consistency: bool = True,
             progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Upsample lowres [N, C, h, w] in [-1, 1] with a super-resolution model (U-Net ``lowres_factor`` f):
    model space [N, C, f h, f w]. ``consistency`` projects every x0 estimate onto the low-res input."""
    from .editing import superres_consistency

    f = model.net.cfg.lowres_factor
    if not f:
        raise UserError("this model is not a super-resolution model (train one with --task superres)")
    size = model.net.cfg.image_size
    if tuple(lowres.shape[-2:]) != (size // f, size // f) or lowres.shape[1] != model.net.cfg.out_channels:
        raise UserError(f"this model upsamples {model.net.cfg.out_channels}x{size // f}x{size // f} images by {f}; "
                        f"got {tuple(lowres.shape[1:])}")
    device = next(model.parameters()).device
    cfg = cfg.for_model(model)
    sigmas = sigma_schedule(model, cfg)
    den = superres_consistency(model, f) if consistency else model
    sampler = get_sampler(cfg.sampler)
    c = model.net.cfg.out_channels
    check_sampling_memory(model, len(lowres), min(cfg.batch_size, len(lowres)), (c, size, size), False, Cond(lowres=lowres[:1]),
                          None, device)
    out = []
    for start in range(0, len(lowres), cfg.batch_size):
        lr = lowres[start : start + cfg.batch_size].to(device)
        z = initial_noise(cfg.seed, start, len(lr), (lr.shape[1], size, size)).to(device)
        gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + start)
        with autocast(device, use_bf16(cfg.precision, device)):
            x = sampler(den, z * float(sigmas[0]), sigmas, cond=Cond(lowres=lr), generator=gen)
        out.append(x.float().cpu())
        if progress is not None:
            progress(len(lr))
    return torch.cat(out)
