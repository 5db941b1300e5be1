"""What `diffuse sample` conditions on, read and checked before any sampling: labels, prompts, an init image,
a mask, a low-res image. Every bad input is one UserError line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data import to_model_space
from .errors import UserError
from .generate import prompt_cond, round_robin_labels
from .images import read_images
from .model import ModelConfig


def _check_size(images: torch.Tensor, size: int, what: str, path: Path | torch.Tensor) -> None:
    if tuple(images.shape[-2:]) != (size, size):
        where = "" if isinstance(path, torch.Tensor) else f" {path}"
        raise UserError(f"{what}{where} is {images.shape[-1]}x{images.shape[-2]}, but this model needs {size}x{size}")


def _images(source: Path | torch.Tensor, channels: int, what: str) -> torch.Tensor:
    """uint8 [N, C, H, W] from a file, or a tensor already read (checked for its channel count)."""
    if not isinstance(source, torch.Tensor):
        return read_images(source, channels, what)
    if source.ndim != 4 or source.dtype != torch.uint8 or source.shape[1] != channels:
        raise UserError(f"{what}: expected uint8 images [N, {channels}, H, W], got {source.dtype} {list(source.shape)}")
    return source


@dataclass
class Conditions:
    n: int
    labels: torch.Tensor | None = None
    text: dict | None = None
    prompt_rows: torch.Tensor | None = None  # prompt index of each sample
    prompts: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # what the prompts were mapped to (text/retrieval.py)
    edit: object | None = None  # editing.Edit
    lowres: torch.Tensor | None = None  # [n, C, h, w] in [-1, 1]
    negative: object | None = None  # text models: the negative prompt's condition (TextRows of n rows)
    negative_prompt: str | None = None

    def slice_labels(self, lo: int, hi: int):
        return self.labels[lo:hi] if self.labels is not None else None

    def slice_text(self, lo: int, hi: int):
        return None if self.text is None else self.text.shard(lo, hi)

    def slice_negative(self, lo: int, hi: int):
        return None if self.negative is None else self.negative.shard(lo, hi)

    def slice_edit(self, lo: int, hi: int):
        from .editing import Edit

        e = self.edit
        if e is None or (lo == 0 and hi == self.n):
            return e
        cut = lambda t: t if t is None or len(t) == 1 else t[lo:hi]  # noqa: E731
        return Edit(cut(e.init), e.strength, cut(e.mask), e.resample)


def conditions(mcfg: ModelConfig, n: int, label: int | None, prompts: list[str], prompts_file: Path | None,
               init: Path | torch.Tensor | None, strength: float, mask: Path | torch.Tensor | None, resample: int,
               run: Path | None = None, nearest_caption: bool = True, mod=None, shape: tuple[int, ...] | None = None,
               keep: tuple[tuple[float, float], ...] | None = None, negative: str | None = None) -> Conditions:
    """Everything `sample` conditions on, checked against the model. Text models condition on each prompt's
    nearest training caption of ``run`` (text/retrieval.py) unless ``nearest_caption`` is off. ``mod`` (the run's
    modality) reads ``init`` at ``shape`` (the shape sampled, default the model's); ``keep`` = (a, b): keep the
    init's spans [a, b) of the last axis (fractions of its length) and generate the rest (audio continuation and
    inpainting in time). ``init`` and ``mask`` are files, or tensors already read (the Python API): the init as uint8
    [N, C, H, W] images, the mask as uint8 [N, 1, H, W] (255 = keep). ``negative``: a text model's negative prompt."""
    from .modalities import modality_of

    mod = mod or modality_of(mcfg)
    shape = tuple(shape or mcfg.image_shape)
    if prompts_file is not None:
        if not Path(prompts_file).is_file():
            raise UserError(f"prompts file not found: {prompts_file}")
        prompts = prompts + [line.strip() for line in Path(prompts_file).read_text().splitlines() if line.strip()]
        if not prompts:
            raise UserError(f"{prompts_file} holds no prompts")
    c_img, size = mcfg.image_shape[0], mcfg.image_shape[-1]
    from .memory import check_items

    check_items(n, shape, f"{n} samples", "ask for fewer at a time (--n)")  # before anything of size n exists
    if prompts and mcfg.cond != "text":
        raise UserError(f"--prompt needs a text-conditional model (train with --cond text); this one is cond={mcfg.cond}")
    if label is not None and mcfg.cond == "text":
        raise UserError("--label is for class models; this text model takes --prompt")
    if mcfg.task == "superres":
        if init is None:
            raise UserError("this is a super-resolution model: pass the low-res image with --init")
        if mask is not None or strength != 1.0 or prompts:
            raise UserError("a super-resolution model takes only --init (the low-res image)")
        f = mcfg.net.lowres_factor
        lr = _images(init, c_img, "low-res image")
        _check_size(lr, size // f, "low-res image", init)
        lr = to_model_space(lr)
        return Conditions(n=len(lr) if len(lr) > 1 else n, lowres=lr if len(lr) > 1 else lr.expand(n, -1, -1, -1))
    out = Conditions(n=n)
    if mcfg.cond == "text":
        given = bool(prompts)
        if not prompts:
            if not mcfg.class_names:
                raise UserError("this is a text model: give --prompt TEXT (or --prompts FILE)")
            from .text.captions import default_prompts

            prompts = default_prompts(mcfg)
        texts = prompts
        from .text.retrieval import snap_prompts, training_bank

        # a training caption (every snapped prompt is one) is conditioned on its encoding from training, the run's
        # caption bank, without loading the encoder
        bank = training_bank(run, mcfg) if run is not None else None
        if run is not None and given:  # the default prompts are training captions already
            texts, out.notes = snap_prompts(prompts, run, mcfg, nearest_caption, bank)
        out.text, out.prompt_rows = prompt_cond(texts, n, mcfg.text_encoder, bank)
        out.prompts = prompts
        if negative is not None:
            neg = [negative]
            if run is not None:
                neg, lines = snap_prompts(neg, run, mcfg, nearest_caption, bank)
                out.notes += [f"negative {line}" for line in lines]
            out.negative = prompt_cond(neg, n, mcfg.text_encoder, bank)[0]
            out.negative_prompt = negative
    else:
        if negative is not None:
            raise UserError(f"--negative-prompt needs a text model; this one is cond={mcfg.cond}")
        out.labels = round_robin_labels(n, mcfg.num_classes, label)
    if mask is not None and init is None:
        raise UserError("--mask needs --init (the image to inpaint)")
    if keep is not None and init is None:
        raise UserError("--keep-seconds and --inpaint-seconds need --init (the clip to continue or repair)")
    if init is None:
        if strength != 1.0 or resample != 1:
            raise UserError("--strength and --resample need --init")
        return out
    from .editing import Edit

    implied = None  # the keep mask the init's kind implies (a still image for a video model: its first frame)
    if isinstance(init, torch.Tensor):
        x = to_model_space(_images(init, c_img, "init image"))
    else:
        x, implied = mod.read_init(init, shape)  # model space [N, *shape]
    if tuple(x.shape[1:]) != shape:
        raise UserError(f"init {init} is {'x'.join(map(str, x.shape[2:]))}, but this model needs {'x'.join(map(str, shape[1:]))}")
    if len(x) not in (1, n):
        raise UserError(f"--init holds {len(x)} images; give one, or --n {len(x)}")
    m = None
    if mask is not None:
        mk = _images(mask, 1, "mask")
        _check_size(mk, size, "mask", mask)
        if len(mk) not in (1, len(x)):
            raise UserError(f"--mask holds {len(mk)} masks for {len(x)} images")
        m = mk.float() / 255
    if m is None and keep is None:
        m = implied
    if keep is not None:
        t = shape[-1]
        m = torch.zeros(1, 1, *shape[1:])
        for a, b in keep:
            m[..., round(a * t) : round(b * t)] = 1.0
    out.edit = Edit(x, strength, m, resample)
    return out


def write_samples(out: Path, x: torch.Tensor, c: Conditions, mod, class_names: list[str] | None = None,
                  params: dict | None = None) -> str:
    """Model-space samples written by the run's modality (a PNG grid or .npz of images; WAVs, a spectrogram grid or
    .npz of audio), with labels or prompts."""
    from .modalities import Meta

    rows = c.labels if c.labels is not None else c.prompt_rows
    prompts = None if c.prompts is None else [c.prompts[i] for i in c.prompt_rows.tolist()]
    return mod.write(x, out, Meta(c.labels, prompts, rows, class_names, params))


def time_mask(total: float | None, keep_seconds: float | None, inpaint: str | None) -> tuple[tuple[float, float], ...] | None:
    """The spans of --init to keep, as fractions of the clip: [0, S) for --keep-seconds S, everything but [A, B) for
    --inpaint-seconds A:B."""
    if keep_seconds is None and inpaint is None:
        return None
    if total is None:
        raise UserError("--keep-seconds and --inpaint-seconds are for audio models")
    if keep_seconds is not None and inpaint is not None:
        raise UserError("give --keep-seconds or --inpaint-seconds, not both")
    if keep_seconds is not None:
        if not 0 < keep_seconds < total:
            raise UserError(f"--keep-seconds must be in (0, {total:g}) for {total:g} s clips, got {keep_seconds}")
        return ((0.0, keep_seconds / total),)
    try:
        a, b = (float(v) for v in inpaint.split(":"))
    except ValueError:
        raise UserError(f"--inpaint-seconds takes A:B (seconds, e.g. 0.3:0.6), got {inpaint!r}") from None
    if not 0 <= a < b <= total:
        raise UserError(f"--inpaint-seconds A:B needs 0 <= A < B <= {total:g} for {total:g} s clips, got {inpaint}")
    return ((0.0, a / total), (b / total, 1.0))
