"""Modalities: the only code that knows what a sample is (C x H x W pixels, mels x frames of audio, ...).

A modality is a small record named in ``RUN/config.json`` ("model" -> "modality": {"name": ..., its settings}).
It maps data to and from model space, reads inputs and writes outputs, and draws a preview picture. Sampling,
training, editing and guidance work on model-space tensors and never branch on the modality.

    mod = modality_of(mcfg)
    x = generate(model, n, cfg, ...)          # model space [n, *shape]
    mod.write(x, out, Meta(labels, prompts))  # PNG grid / npz; WAVs + spectrogram / npz; GIF / MP4 / npz
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from .audio import AudioModality
from .base import Meta, Modality  # noqa: F401
from .image import ImageModality
from .video import VideoModality

RECORDS = {"image": ImageModality, "audio": AudioModality, "video": VideoModality}


def get_modality(spec: Any) -> Modality:
    """The modality a run's record names; a missing record is the image modality (runs from before modalities)."""
    spec = {"name": "image"} if spec is None else spec
    if not isinstance(spec, dict) or spec.get("name") not in RECORDS:
        raise UserError(f"unknown modality record {spec!r}: this version knows {', '.join(RECORDS)}")
    return RECORDS[spec["name"]].from_spec(spec)


def bind_run(spec: Any, run_dir: Any) -> Any:
    """A modality record read from ``run_dir``/config.json, bound to that directory (Modality.bind_run); anything
    else as it is (get_modality judges it)."""
    if isinstance(spec, dict) and spec.get("name") in RECORDS:
        return RECORDS[spec["name"]].bind_run(spec, run_dir)
    return spec


def unbind_run(spec: Any) -> Any:
    """``bind_run`` undone, for writing a record into another run's config.json (distill)."""
    if isinstance(spec, dict) and spec.get("name") in RECORDS:
        return RECORDS[spec["name"]].unbind_run(spec)
    return spec


def modality_of(mcfg: Any) -> Modality:
    """The modality of a ModelConfig."""
    return get_modality(getattr(mcfg, "modality", None))
