"""WAV files through soundfile (libsndfile): read any format it knows, resampled (librosa) to the model's rate and
mixed to mono; written as 16-bit PCM, atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from .deps import need
import torch

from ..errors import UserError

MAX_SECONDS = 600.0  # longer files are refused before decoding


def read_wav(path: Path, sample_rate: int, what: str = "audio file") -> torch.Tensor:
    """A mono float32 wave [samples] at ``sample_rate``; unreadable, empty, overlong or non-finite files are one
    UserError line."""
    sf = need("soundfile")

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        info = sf.info(str(path))
        if info.frames <= 0 or info.samplerate <= 0:
            raise UserError(f"{what} {path} holds no audio")
        if info.frames / info.samplerate > MAX_SECONDS:
            raise UserError(f"{what} {path} is {info.frames / info.samplerate:.0f} s long; at most {MAX_SECONDS:.0f} s are read")
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [samples, channels]
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise UserError(f"cannot read {what} {path}: not an audio file soundfile can decode ({str(e)[:120]})") from None
    y = data.mean(1)
    if not np.isfinite(y).all():
        raise UserError(f"{what} {path} holds non-finite samples (NaN or inf)")
    if sr != sample_rate:
        librosa = need("librosa")

        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def wav_bytes(wave: torch.Tensor | np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV of a float wave in [-1, 1]."""
    sf = need("soundfile")

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1, 1), sample_rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def write_wav(path: Path, wave: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Atomically write a mono WAV (checkpoint.atomic_write_bytes: a full disk is one error line, nothing half-written)."""
    from ..checkpoint import atomic_write_bytes

    atomic_write_bytes(Path(path), wav_bytes(wave, sample_rate))
