"""What a run directory holds about its model, and how to rebuild the denoiser from it.

    RUN/config.json        {"format", "model": ModelConfig, "train": TrainConfig}
    RUN/model.safetensors  EMA weights of the denoiser (what sampling uses)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_into, load_tensors, read_json
from .errors import UserError
from .nets import UNet, UNetConfig
from .precond import Precond, PrecondConfig

RUN_FORMAT = "diffuse-run/1"
# U-Net fields added after runs were already saved: left out of the fingerprint at their default value, so
# those runs still load (their fingerprint did not include them).
_LATER_NET_FIELDS = {"text_dim": 0, "lowres_factor": 0}


@dataclass
class ModelConfig:
    """Everything needed to rebuild a denoiser and interpret its inputs and outputs."""

    net: UNetConfig = field(default_factory=UNetConfig)
    precond: PrecondConfig = field(default_factory=PrecondConfig)
    arch: str = "unet"
    cond: str = "none"  # none | class | text
    class_names: list[str] = field(default_factory=list)  # also kept by text models trained on labelled data
    task: str = "generate"  # generate | superres (conditioned on a 1/lowres_factor image)
    text_encoder: str = "minilm"
    data: str = "digits"
    data_dir: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.cond == "class" else 0

    @property
    def conditional(self) -> bool:
        """Whether classifier-free guidance applies (a class or text model)."""
        return self.cond in ("class", "text")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of generated images."""
        return (self.net.out_channels, self.net.image_size, self.net.image_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        try:
            d = dict(d)
            net, pre = UNetConfig(**d.pop("net")), PrecondConfig(**d.pop("precond"))
            return cls(net=net, precond=pre, **d)
        except (TypeError, KeyError, ValueError) as e:
            raise UserError(f"model config is not one this version understands ({e})") from None

    def fingerprint(self) -> str:
        """A short hash of the architecture, stored in weight files to catch a checkpoint from another model."""
        net = {k: v for k, v in asdict(self.net).items() if not (k in _LATER_NET_FIELDS and v == _LATER_NET_FIELDS[k])}
        arch = {"arch": self.arch, "net": net, "precond": asdict(self.precond)}
        return hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:16]


def build_denoiser(cfg: ModelConfig) -> Precond:
    """The network wrapped in its preconditioning: a module implementing D(x, sigma, cond) -> x0_hat."""
    if cfg.arch != "unet":
        raise UserError(f"unknown model architecture {cfg.arch!r}; this version has: unet")
    return Precond(UNet(cfg.net), cfg.precond)


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """config.json of a run, checked for format."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    cfg = read_json(run_dir / "config.json", "run config")
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise UserError(f"{run_dir / 'config.json'} is not a diffuse run config (format {cfg.get('format') if isinstance(cfg, dict) else None!r})")
    return cfg


def load_model(run_dir: Path, device: str | torch.device = "cpu") -> tuple[Precond, ModelConfig]:
    """Rebuild the denoiser of a run and load its EMA weights; one-line errors for every bad case."""
    run_dir = Path(run_dir)
    cfg = ModelConfig.from_dict(read_run_config(run_dir)["model"])
    tensors, meta = load_tensors(run_dir / "model.safetensors", "model weights")
    if meta.get("fingerprint") not in (None, cfg.fingerprint()):
        raise UserError(f"{run_dir / 'model.safetensors'} was saved by a different model than {run_dir / 'config.json'} describes")
    model = build_denoiser(cfg)
    load_into(model.net, tensors, run_dir / "model.safetensors")
    return model.to(device).eval().requires_grad_(False), cfg
