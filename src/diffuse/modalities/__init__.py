"""Modalities: the only code that knows what a sample is (C x H x W pixels, mels x frames of audio, ...).

A modality is a small record named in ``RUN/config.json`` ("model" -> "modality": {"name": ..., its settings}).
It maps data to and from model space, reads inputs and writes outputs, and draws a preview picture. Sampling,
training, editing and guidance work on model-space tensors and never branch on the modality.

    mod = modality_of(mcfg)
    x = generate(model, n, cfg, ...)          # model space [n, *shape]
    mod.write(x, out, Meta(labels, prompts))  # PNG grid / npz, or WAVs + spectrogram / npz
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError


@dataclass
class Meta:
    """What a written set of samples carries beside the data: labels [N], the prompt of each sample, the class names,
    and the row (class or prompt) each sample goes in on a grid."""

    labels: torch.Tensor | None = None
    prompts: list[str] | None = None
    rows: torch.Tensor | None = None
    class_names: list[str] | None = None


class Modality:
    """The interface every modality implements."""

    name = "?"
    out_help = ""

    def spec(self) -> dict[str, Any]:
        """The JSON record that rebuilds this modality (stored in RUN/config.json)."""
        raise NotImplementedError

    def preview(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 pictures [N, C, H, W] of model-space samples: training grids, README, the web page."""
        raise NotImplementedError

    def write(self, x: torch.Tensor, out: Path, meta: Meta) -> str:
        """Write model-space samples to ``out`` (the suffix picks the format); returns a line saying what was written."""
        raise NotImplementedError

    def read(self, path: Path, what: str, shape: tuple[int, ...]) -> torch.Tensor:
        """An input file (editing's init) as model-space [N, *shape] (``shape``: what the model samples)."""
        raise NotImplementedError

    def check_out(self, out: Path) -> None:
        """Refuse (one line) an output path this modality cannot write, before any sampling."""

    def duration(self, shape: tuple[int, ...]) -> float | None:
        """Seconds of a sample of ``shape``; None for modalities without time."""
        return None

    def sample_shape(self, shape: tuple[int, ...], seconds: float | None, multiple: int) -> tuple[tuple[int, ...], str | None]:
        """The shape to sample for a requested duration (``multiple``: what the last axis must divide by), and a line
        saying how it was rounded; modalities without time refuse ``seconds``."""
        if seconds is not None:
            raise UserError(f"--seconds is for audio models; this one is {self.name}")
        return tuple(shape), None


def get_modality(spec: Any) -> Modality:
    """The modality a run's record names; a missing record is the image modality (runs from before modalities)."""
    from .audio import AudioModality
    from .image import ImageModality

    spec = {"name": "image"} if spec is None else spec
    if not isinstance(spec, dict) or spec.get("name") not in ("image", "audio"):
        raise UserError(f"unknown modality record {spec!r}: this version knows image and audio")
    return (AudioModality if spec["name"] == "audio" else ImageModality).from_spec(spec)


def modality_of(mcfg: Any) -> Modality:
    """The modality of a ModelConfig."""
    return get_modality(getattr(mcfg, "modality", None))


def require_image(mcfg: Any, command: str) -> None:
    """Refuse (one line) a command that this version has for image runs only."""
    mod = modality_of(mcfg)
    if mod.name != "image":
        raise UserError(f"`{command}` is for image runs in this version; this run is {mod.name} "
                        f"(for audio: diffuse sample, and benchmarks/audio_recipe.py for its metrics)")
