"""The modality interface and the metadata written beside samples."""

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
    params: dict[str, Any] | None = None  # how they were made (api.py), stored in PNGs


def write_npz(out: Path, arrays: dict[str, Any], meta: "Meta") -> None:
    """``arrays`` plus the samples' ``labels`` (int64) or ``prompts`` from ``meta``, as one compressed .npz written
    atomically (every record's .npz output)."""
    import io

    import numpy as np

    from ..checkpoint import atomic_write_bytes

    arrays = dict(arrays)
    if meta.labels is not None:
        arrays["labels"] = meta.labels.numpy().astype(np.int64)
    if meta.prompts is not None:
        arrays["prompts"] = np.array(meta.prompts)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(out, buf.getvalue())


def params_text(params: dict[str, Any] | None) -> dict[str, str] | None:
    """A PNG text chunk of generation parameters (api.PARAMS_KEY -> JSON)."""
    import json

    return None if params is None else {"diffuse": json.dumps(params, sort_keys=True)}


class Modality:
    """The interface every modality implements."""

    name = "?"
    out_help = ""
    metrics: tuple[str, ...] = ()  # what `diffuse eval --metrics` can score for this modality
    features: tuple[str, ...] = ("classifier",)  # the feature nets `diffuse eval --features` can use
    item_suffix = ""  # one sample's file in a synthetic dataset (synth)
    edits_pictures = False  # its inputs for editing (init, mask, low-res) are pictures: the page offers the image editors
    grid_rows: int | None = None  # classes or prompts in a training run's sample grid (None: all)
    grid_per_row: int | None = None  # samples per class or prompt there (None: 10 per class, 8 per prompt)

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

    def write_items(self, x: torch.Tensor, paths: list[Path], params: list[dict[str, Any]] | None = None) -> None:
        """One file per model-space sample (synth, the web page), each written atomically, with its parameters
        where the format holds text."""
        raise NotImplementedError

    def items(self, x: torch.Tensor) -> list[Any]:
        """One Python object per model-space sample (the Python API): a PIL image, a waveform, ..."""
        raise NotImplementedError

    def web_outputs(self, gr: Any) -> list[Any]:
        """The web page's output widgets for this modality (Gradio components, built inside the page's Blocks)."""
        raise NotImplementedError

    def web_values(self, x: torch.Tensor, files: list[Path], captions: list[str]) -> list[Any]:
        """The values of ``web_outputs`` for samples ``x``, written one per file in ``files`` (``write_items``)."""
        raise NotImplementedError

    def check_out(self, out: Path, n: int | None = None) -> None:
        """Refuse (one line) an output path this modality cannot write (for n samples, when known), before any sampling."""

    def duration(self, shape: tuple[int, ...]) -> float | None:
        """Seconds of a sample of ``shape``; None for modalities without time."""
        return None

    def read_init(self, path: Path, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An editing input as model-space [N, *shape], and the keep mask its kind implies (None: the whole input is a
        start for img2img; a video model's still image keeps only the first frame)."""
        return self.read(path, "init", shape), None

    def sample_shape(self, shape: tuple[int, ...], seconds: float | None, multiple: int, frames: int | None = None,
                     frame_multiple: int = 1) -> tuple[tuple[int, ...], str | None]:
        """The shape to sample for a requested duration (``multiple``: what the last axis must divide by) or frame
        count (``frame_multiple``: what it must divide by), and a line saying how it was rounded; modalities without
        time refuse both."""
        if seconds is not None:
            raise UserError(f"--seconds is for audio models; this one is {self.name}")
        if frames is not None:
            raise UserError(f"--frames is for video models; this one is {self.name}")
        return tuple(shape), None

    def set_output(self, fps: float | None = None) -> None:
        """Output settings of this use (``sample --fps``); modalities without frames refuse them."""
        if fps is not None:
            raise UserError(f"--fps is for video models; this one is {self.name}")

    @classmethod
    def bind_run(cls, spec: dict[str, Any], run_dir: Path) -> dict[str, Any]:
        """The record as read from ``run_dir``'s config.json, told where that run is when it names files inside it
        (audio: a run's own neural vocoder, ``RUN/vocoder``). Most records name none."""
        return spec

    @classmethod
    def unbind_run(cls, spec: dict[str, Any]) -> dict[str, Any]:
        """``bind_run`` undone: the record as a run's config.json holds it (for a run written from another's)."""
        return spec

    def set_vocoder(self, **settings) -> None:
        """Override the run's vocoder settings for this use (``sample --vocoder``, ``--vocoder-refine``); no vocoder
        here: refused."""
        flag = "--vocoder" if "name" in settings else "--vocoder-refine"
        raise UserError(f"{flag} is for audio runs; this one is {self.name}")
