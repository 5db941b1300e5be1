"""What a run directory holds about its model, and how to rebuild the denoiser from it.

    RUN/config.json        {"format", "model": ModelConfig, "train": TrainConfig}
    RUN/model.safetensors  EMA weights of the denoiser (what sampling uses)
"""

from __future__ import annotations

import contextlib

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_into, load_tensors, read_json
from .errors import UserError
from .nets import ARCHS, DiT, DiTConfig, UNet, UNetConfig, item_shape
from .precond import Precond, PrecondConfig

RUN_FORMAT = "diffuse-run/1"
# Network fields added after runs were already saved: left out of the fingerprint at their default value, so
# those runs still load (their fingerprint did not include them).
_LATER_PRECOND_FIELDS = {"frame_noise": 0.0}
_LATER_NET_FIELDS = {"unet": {"text_dim": 0, "lowres_factor": 0, "image_width": 0}, "dit": {"image_width": 0, "frames": 0, "temporal_patch": 1, "attention": "joint", "known_frames": False}}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a denoiser and interpret its inputs and outputs."""

    net: UNetConfig | DiTConfig = field(default_factory=UNetConfig)
    precond: PrecondConfig = field(default_factory=PrecondConfig)
    arch: str = "unet"
    cond: str = "none"  # none | class | text
    class_names: list[str] = field(default_factory=list)  # also kept by text models trained on labelled data
    task: str = "generate"  # generate | superres (conditioned on a 1/lowres_factor image)
    text_encoder: str = "minilm"
    data: str = "digits"
    data_dir: str | None = None
    image_size: int | None = None  # the data was resized to this size for training
    # latent diffusion: {"fingerprint", "image_shape": [C, H, W], "source"} of the autoencoder copied to RUN/autoencoder/
    latent: dict[str, Any] | None = None
    # the modality record (modalities/): what a sample is and how it is read and written; None: images
    modality: dict[str, Any] | None = None
    # text models: the prompts `sample` uses when given none (one per class); empty: from the class names
    prompts: list[str] = field(default_factory=list)
    # a distilled run (train/distill.py): {"sigma_min", "guidance" (built in), "steps" (its default), "sigmas" ({"2": [the
    # searched intermediate sigmas], ...}), "start" (the 1-step start), "starts" ({"2": sigma, ...}), "teacher", ...}; its
    # denoiser is then a consistency function (precond.py)
    consistency: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.cond == "class" else 0

    @property
    def conditional(self) -> bool:
        """Whether classifier-free guidance applies (a class or text model)."""
        return self.cond in ("class", "text")

    @property
    def image_shape(self) -> tuple[int, ...]:
        """(C, H, W) of generated images (decoded ones, for a latent model); (C, T, H, W) of clips."""
        if self.latent is not None:
            return tuple(self.latent["image_shape"])  # type: ignore[return-value]
        return self.net_shape

    @property
    def net_shape(self) -> tuple[int, ...]:
        """(C, H, W), or (C, T, H, W) for video, that the network itself works on: latents for a latent model, else
        the data's model space."""
        return item_shape(self.net)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str = "model config") -> "ModelConfig":
        """The config from its JSON (RUN/config.json's "model"), every field's type checked (typed.py)."""
        from .typed import from_json

        if not isinstance(d, dict):
            raise UserError(f"{where} must be a JSON object, got {type(d).__name__}")
        net_cls = DiTConfig if d.get("arch") == "dit" else UNetConfig
        net = from_json(net_cls, d.get("net", {}), f"{where}: net")
        pre = from_json(PrecondConfig, d.get("precond", {}), f"{where}: precond")
        return from_json(cls, d, where, net=net, precond=pre)

    def fingerprint(self) -> str:
        """A short hash of the architecture, stored in weight files to catch a checkpoint from another model."""
        later = _LATER_NET_FIELDS.get(self.arch, {})
        net = {k: v for k, v in asdict(self.net).items() if not (k in later and v == later[k])}
        pre = {k: v for k, v in asdict(self.precond).items() if not (k in _LATER_PRECOND_FIELDS and v == _LATER_PRECOND_FIELDS[k])}
        arch = {"arch": self.arch, "net": net, "precond": pre}
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _no_init():
    """Weight initialisers as no-ops, for the meta-device pass that only counts bytes: on meta tensors torch runs
    ``normal_``/``uniform_`` through its Python reference ops, whose first call imports torch._dynamo (1.2 s of every
    `diffuse sample`, benchmarks/first_image.py)."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *a, **k: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def build_denoiser(cfg: ModelConfig) -> Precond:
    """The network wrapped in its preconditioning: a module implementing D(x, sigma, cond) -> x0_hat. The network
    is first built on the meta device (no memory), so a config whose weights cannot fit, or that describes no
    buildable network, is one UserError line."""
    if cfg.arch not in ARCHS:
        raise UserError(f"unknown model architecture {cfg.arch!r}; this version has: {', '.join(ARCHS)}")
    boundary = float(cfg.consistency["sigma_min"]) if cfg.consistency else 0.0
    make = lambda: Precond(DiT(cfg.net) if cfg.arch == "dit" else UNet(cfg.net), cfg.precond, boundary)  # noqa: E731
    try:
        with torch.device("meta"), _no_init():
            nbytes = sum(t.numel() * t.element_size() for t in make().state_dict().values())
        from .memory import check_fits

        check_fits(3 * nbytes, f"a {cfg.arch} of {nbytes / 4e6:.0f}M parameters", hint="its config describes a network too large")
        model = make()
        model.consistency = cfg.consistency  # generate() reads the distilled run's sampler, steps and sigmas here
        return model
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, IndexError) as e:
        raise UserError(f"the model config describes no network this version can build ({str(e).splitlines()[0][:160]})") from None


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run, checked for format."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    cfg = read_json(run_dir / "config.json", "run config")
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise UserError(f"{run_dir / 'config.json'} is not a diffuse run config (format {cfg.get('format') if isinstance(cfg, dict) else None!r})")
    model = cfg.get("model")
    if isinstance(model, dict) and "modality" in model:  # files the record names inside the run (an audio run's vocoder)
        from .modalities import bind_run

        cfg["model"] = {**model, "modality": bind_run(model["modality"], run_dir.resolve())}
    return cfg


def load_model(run_dir: Path, device: str | torch.device = "cpu") -> tuple[Precond, ModelConfig]:
    """Rebuild the denoiser of a run and load its EMA weights; one-line errors for every bad case."""
    run_dir = Path(run_dir)
    cfg = ModelConfig.from_dict(read_run_config(run_dir).get("model"), f"{run_dir / 'config.json'}: model")
    tensors, meta = load_tensors(run_dir / "model.safetensors", "model weights")
    if meta.get("fingerprint") not in (None, cfg.fingerprint()):
        raise UserError(f"{run_dir / 'model.safetensors'} was saved by a different model than {run_dir / 'config.json'} describes")
    model = build_denoiser(cfg)
    load_into(model.net, tensors, run_dir / "model.safetensors")
    model = model.to(device).eval().requires_grad_(False)
    if cfg.latent is not None:
        attach_codec(model, run_codec(run_dir, cfg, device))
    return model, cfg


def run_codec(run_dir: Path, cfg: ModelConfig, device: str | torch.device = "cpu"):
    """The autoencoder a latent run was trained with (RUN/autoencoder/), checked against the run's record."""
    from .codecs.autoencoder import load_codec

    codec = load_codec(Path(run_dir) / "autoencoder", device)
    if codec.fingerprint != cfg.latent["fingerprint"] or tuple(codec.latent_shape) != cfg.net_shape:
        raise UserError(f"{Path(run_dir) / 'autoencoder'} is not the autoencoder this run was trained with "
                        f"(latent {tuple(codec.latent_shape)} vs the model's {cfg.net_shape})")
    return codec


def attach_codec(model: Precond, codec) -> Precond:
    """Give a latent denoiser its autoencoder: ``generate`` then decodes samples and encodes img2img inputs.
    A plain attribute, not a sub-module, so the denoiser's parameters and state dict stay the network's."""
    model.__dict__["codec"] = codec
    return model
