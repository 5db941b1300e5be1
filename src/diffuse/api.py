"""The public Python API: load a run, sample from it, edit with it. The CLI's `sample`, the web page and the HTTP API
(serve/) all call it.

    import diffuse
    run = diffuse.load("runs/fmnist")
    out = run.sample(n=16, label="sneaker", guidance=3, seed=1)
    out.items()            # the modality's objects: PIL images, or float32 waveforms for audio
    out.save("grid.png")   # what `diffuse sample --out` writes; PNGs carry their parameters
    run.edit(out.items()[0], strength=0.5, seed=2)

Sample i of a call starts from noise seeded by (seed, first + i), so a single sample is reproduced by its own
parameters (``Samples.item_params``), which every PNG written here carries in a text chunk (``read_params``).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import UserError

PARAMS_KEY = "diffuse"  # the PNG text chunk holding a sample's parameters (JSON); A1111 calls its chunk "parameters"
ImageLike = Any  # a PIL image, a uint8 array [H, W] / [H, W, C] / [N, H, W, C], PNG bytes, or a file path


@dataclass
class Samples:
    """Samples from ``Run.sample``: model-space ``x`` [N, *shape] and what made them."""

    x: torch.Tensor
    run: "Run"
    params: dict[str, Any]  # JSON-able: what ``run.sample(**params)`` takes to make these again (edits: and the init)
    labels: torch.Tensor | None = None
    prompts: list[str] | None = None  # the prompt of each sample
    notes: list[str] = field(default_factory=list)  # what prompts were mapped to (nearest training captions)

    def __len__(self) -> int:
        return len(self.x)

    def items(self) -> list[Any]:
        """One object per sample: PIL images for image runs, float32 waveforms for audio runs."""
        return self.run.modality.items(self.x)

    def previews(self) -> torch.Tensor:
        """uint8 pictures [N, C, H, W]: the images, or spectrograms of audio."""
        return self.run.modality.preview(self.x)

    def item_params(self, i: int) -> dict[str, Any]:
        """The parameters that make sample i alone: ``run.sample(**samples.item_params(i))``."""
        p = {**self.params, "n": 1, "first": self.params.get("first", 0) + i}
        if self.prompts is not None:
            p["prompt"] = self.prompts[i]
        if self.labels is not None:
            p["label"] = int(self.labels[i])
        return p

    def save(self, out: str | Path) -> str:
        """Write all samples as ``diffuse sample --out`` does (the suffix picks the format); returns what was written."""
        from .modalities import Meta

        rows = None
        if self.labels is not None:
            rows = self.labels
        elif self.prompts is not None:
            rows = torch.tensor([sorted(set(self.prompts)).index(p) for p in self.prompts])
        meta = Meta(self.labels, self.prompts, rows, self.run.config.class_names, self.params)
        return self.run.modality.write(self.x, Path(out), meta)

    def save_items(self, folder: str | Path, stem: str = "sample") -> list[Path]:
        """One file per sample in ``folder`` (PNG with its parameters, or WAV); returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{stem}_{i:03d}{self.run.modality.item_suffix}" for i in range(len(self))]
        self.run.modality.write_items(self.x, paths, [self.item_params(i) for i in range(len(self))])
        return paths


class Run:
    """A trained run directory, loaded once: its denoiser, its config and its modality."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        from .model import ModelConfig, load_model, read_run_config
        from .modalities import modality_of

        self.path = Path(path)
        read_run_config(self.path)  # a missing or foreign run is one UserError line
        self.model, self.config = load_model(self.path, device)
        self.modality = modality_of(self.config)
        self.device = torch.device(device)
        assert isinstance(self.config, ModelConfig)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def cond(self) -> str:
        """``none``, ``class`` or ``text``."""
        return self.config.cond

    @property
    def class_names(self) -> list[str]:
        return list(self.config.class_names)

    @property
    def task(self) -> str:
        """``generate``, or ``superres`` (the run upsamples a low-res image: ``upscale``)."""
        return self.config.task

    def defaults(self) -> dict[str, Any]:
        """The sampler, steps and guidance this run samples with when a call names none."""
        from .generate import SampleConfig

        cfg = SampleConfig().for_model(self.model)
        return {"sampler": cfg.sampler, "steps": cfg.steps,
                "guidance": cfg.carried_guidance(self.config.conditional, self.cond == "text")}

    def label_index(self, label: int | str | None) -> int | None:
        """A class index from an index or a class name."""
        if label is None or isinstance(label, (int, np.integer)):
            return None if label is None else int(label)
        names = [c.lower() for c in self.config.class_names]
        if str(label).lower() not in names:
            raise UserError(f"unknown class {label!r}; this run has {', '.join(self.config.class_names) or 'no classes'}")
        return names.index(str(label).lower())

    def sample(self, n: int = 1, *, prompt: str | Sequence[str] | None = None, negative_prompt: str | None = None,
               label: int | str | None = None, sampler: str | None = None, steps: int | None = None,
               guidance: float | None = None, seed: int = 0, first: int = 0, schedule: str = "karras",
               nearest_caption: bool = True, init: ImageLike | None = None, strength: float = 1.0,
               mask: ImageLike | None = None, resample: int = 1, batch_size: int = 256, precision: str = "auto",
               on_step: Callable[[int, int], None] | None = None,
               guidance_interval: tuple[float, float] | None = None,
               apg: str | Sequence[float] | None = None) -> Samples:
        """n samples. Text runs take ``prompt`` (one, or a list the samples cycle through) and ``negative_prompt``
        (it replaces the empty prompt in guidance); class runs take ``label`` (index or name; default i mod classes).
        ``sampler``/``steps``/``guidance`` default to the run's (``defaults()``). ``init`` (+ ``strength``) is img2img,
        with ``mask`` (white = keep) inpainting; for a super-resolution run ``init`` is the low-res image.
        ``on_step(done, total)`` reports progress; an exception raised in it stops sampling. ``guidance_interval``
        ``(lo, hi)`` applies guidance only at lo < sigma <= hi. ``apg`` ``(eta[, rescale[, momentum]])`` swaps CFG's
        update for adaptive projected guidance (guidance.Projection)."""
        from .generate import SampleConfig, parse_interval, parse_projection
        from .sampling_inputs import conditions

        if not isinstance(n, int) or n <= 0:
            raise UserError(f"n must be a positive integer, got {n!r}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        negative = negative_prompt.strip() if isinstance(negative_prompt, str) and negative_prompt.strip() else None
        scfg = SampleConfig(sampler=sampler, steps=steps, schedule=schedule, guidance=guidance, seed=seed,
                            batch_size=batch_size, precision=precision, guidance_interval=parse_interval(guidance_interval),
                            apg=parse_projection(apg))
        c_img = self.config.image_shape[0]
        init_t = None if init is None else self._input(init, c_img, "init image")
        mask_t = None if mask is None else self._input(mask, 1, "mask")
        c = conditions(self.config, n, self.label_index(label), prompts, None, init_t, strength, mask_t, resample, self.path,
                       nearest_caption, self.modality, negative=negative)
        x = self.generate(c, scfg, 0, c.n, first, on_step)
        params = self.params(scfg, c.n, first, schedule, prompts, negative, label,
                             None if init is None else "(an input image, not stored)", strength, mask is not None)
        labels = c.labels
        prompts_each = None if c.prompts is None else [c.prompts[i] for i in c.prompt_rows.tolist()]
        return Samples(x, self, params, labels, prompts_each, c.notes)

    def params(self, scfg: Any, n: int, first: int, schedule: str, prompts: Sequence[str] | None, negative: str | None,
               label: int | str | None, init: str | None = None, strength: float = 1.0, mask: Any = None) -> dict[str, Any]:
        """The JSON record of a sampling call (what PNGs carry; ``sample_kwargs`` turns it back into arguments)."""
        params = {"run": self.name, "n": n, "seed": scfg.seed, "first": first, "schedule": schedule, **self.resolved(scfg)}
        if prompts:
            params["prompt"] = list(prompts) if len(prompts) > 1 else prompts[0]
        if negative is not None:
            params["negative_prompt"] = negative
        if label is not None:
            params["label"] = self.label_index(label)
        if init is not None:
            params.update(init=init, strength=strength, mask=mask)
        return params

    def edit(self, init: ImageLike, *, strength: float = 0.6, mask: ImageLike | None = None, **kwargs: Any) -> Samples:
        """img2img (``strength`` 0 keeps ``init``, 1 ignores it) or, with ``mask`` (white = keep), inpainting; the
        other arguments are ``sample``'s."""
        return self.sample(init=init, strength=strength, mask=mask, **kwargs)

    def upscale(self, lowres: ImageLike, **kwargs: Any) -> Samples:
        """Super-resolution runs: upsample ``lowres`` (1/factor of the run's size)."""
        if self.task != "superres":
            raise UserError(f"{self.name} is not a super-resolution run")
        return self.sample(init=lowres, **kwargs)

    def remake(self, source: str | Path | bytes | dict[str, Any], **overrides: Any) -> Samples:
        """Sample again from what made a PNG (its path or bytes) or a parameter dict (``Samples.params``), with
        ``overrides`` (e.g. ``seed=``, ``steps=``) changed; edits need their init passed again."""
        params = source if isinstance(source, dict) else read_params(source)
        return self.sample(**{**sample_kwargs(params), **overrides})

    def generate(self, c: Any, scfg: Any, lo: int, hi: int, first: int = 0,
                 on_step: Callable[[int, int], None] | None = None,
                 progress: Callable[[int], None] | None = None, shape: tuple[int, ...] | None = None,
                 consistency: bool = True) -> torch.Tensor:
        """Samples lo .. hi - 1 of the checked conditions ``c`` (sampling_inputs.Conditions) in model space; the CLI
        shards a set over ranks with it. ``first`` numbers the samples' noise from there."""
        from .generate import generate, superres

        scfg.validate(self.config.conditional)
        if c.lowres is not None:
            return superres(self.model, c.lowres[lo:hi], scfg, consistency, progress=progress)
        return generate(self.model, hi - lo, scfg, c.slice_labels(lo, hi), progress=progress, offset=first + lo,
                        text=c.slice_text(lo, hi), edit=c.slice_edit(lo, hi), shape=shape,
                        negative=c.slice_negative(lo, hi), on_step=on_step)

    def resolved(self, scfg: Any) -> dict[str, Any]:
        """The sampler, steps and guidance a SampleConfig comes to on this run (its defaults filled in)."""
        cfg = scfg.for_model(self.model)
        out = {"sampler": cfg.sampler, "steps": cfg.steps,
               "guidance": cfg.carried_guidance(self.config.conditional, self.cond == "text")}
        if cfg.guidance_interval is not None:
            out["guidance_interval"] = list(cfg.guidance_interval)
        if cfg.apg is not None:
            out["apg"] = [cfg.apg.eta, cfg.apg.rescale, cfg.apg.momentum]
        return out

    def _input(self, obj: ImageLike, channels: int, what: str) -> torch.Tensor:
        return as_images(obj, channels, what)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, modality={self.modality.name}, cond={self.cond}, task={self.task})"


def load(run: str | Path, device: str | torch.device = "cpu") -> Run:
    """Load a trained run directory (``diffuse train --out RUN``)."""
    return Run(run, device)


def as_images(obj: ImageLike, channels: int, what: str = "image") -> torch.Tensor:
    """uint8 [N, channels, H, W] from a PIL image, a uint8 array ([H, W], [H, W, C] or [N, H, W, C]), encoded image
    bytes or a file path; too large, corrupt or wrongly typed inputs are one UserError line."""
    from .images import read_images

    if isinstance(obj, (str, Path)):
        return read_images(Path(obj), channels, what)
    return torch.from_numpy(as_pixels(obj, channels, what)).permute(0, 3, 1, 2).contiguous()


def as_pixels(obj: ImageLike, channels: int, what: str = "image") -> np.ndarray:
    """``as_images`` without torch (Pillow and numpy only; not paths): uint8 [N, H, W, channels]."""
    from .images import MAX_INPUT_PIXELS, read_image

    if isinstance(obj, (bytes, bytearray)):
        arr = read_image(io.BytesIO(bytes(obj)), channels == 1, what)  # type: ignore[arg-type]
    elif hasattr(obj, "mode") and hasattr(obj, "size"):  # a PIL image
        w, h = obj.size
        if w * h > MAX_INPUT_PIXELS:
            raise UserError(f"{what} is {w}x{h} pixels; at most {MAX_INPUT_PIXELS:,} are read")
        arr = np.asarray(obj.convert("L" if channels == 1 else "RGB"))
    elif isinstance(obj, (np.ndarray, torch.Tensor)):
        arr = np.array(obj)  # a copy: the caller's array may be read-only or change later
        if arr.dtype != np.uint8:
            raise UserError(f"{what}: expected a uint8 array, got {arr.dtype}")
    else:
        raise UserError(f"{what}: expected a PIL image, a uint8 array, image bytes or a path, got {type(obj).__name__}")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] * arr.shape[2] > MAX_INPUT_PIXELS:
        raise UserError(f"{what}: expected [H, W], [H, W, C] or [N, H, W, C] pixels, got shape {list(arr.shape)}")
    if arr.shape[-1] != channels:
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
        if channels == 1 and arr.shape[-1] == 3:
            arr = np.round(arr @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[..., None]
        elif channels == 3 and arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        if arr.shape[-1] != channels:
            raise UserError(f"{what}: expected {channels} channel(s), got {arr.shape[-1]}")
    return np.ascontiguousarray(arr)


def read_params(png: str | Path | bytes) -> dict[str, Any]:
    """The parameters a PNG written by diffuse carries (``run.sample(**params)`` remakes it; edits need their init)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(png) if isinstance(png, bytes) else Path(png)) as im:
            text = getattr(im, "text", {}).get(PARAMS_KEY)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise UserError(f"cannot read {png if not isinstance(png, bytes) else 'the PNG'}: {e}") from None
    if text is None:
        raise UserError("this PNG carries no diffuse parameters")
    try:
        params = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"the PNG's diffuse parameters are not JSON: {e}") from None
    if not isinstance(params, dict):
        raise UserError("the PNG's diffuse parameters are not a JSON object")
    return params


def sample_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``Run.sample`` among stored parameters (drops the record-only keys)."""
    keep = ("n", "prompt", "negative_prompt", "label", "sampler", "steps", "guidance", "seed", "first", "schedule",
            "guidance_interval", "apg")
    return {k: params[k] for k in keep if k in params}
