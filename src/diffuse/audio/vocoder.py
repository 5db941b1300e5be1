"""Vocoders: mel magnitudes -> waves, behind one small interface so a neural vocoder can replace Griffin-Lim.

The default inverts the mel filterbank (non-negative least squares, librosa.feature.inverse.mel_to_stft) and
recovers phase with fast Griffin-Lim (Perraudin et al. 2013; librosa.griffinlim). Its cost to quality is measured
as the "vocoder ceiling" (benchmarks/audio_recipe.py): real log-mels -> vocoder -> the same metrics as samples.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from .deps import need
import torch

from .mel import MelConfig


class Vocoder(Protocol):
    def __call__(self, mel: torch.Tensor, length: int) -> torch.Tensor:
        """mel magnitudes [N, n_mels, T] -> waves float32 [N, length]."""
        ...


class GriffinLim:
    """Mel -> linear magnitude (``inversion``: nnls, or the filterbank's pseudo-inverse clamped at 0, ~100x faster)
    -> ``n_iter`` iterations of fast Griffin-Lim (momentum 0.99)."""

    def __init__(self, cfg: MelConfig, n_iter: int = 32, inversion: str = "pinv"):
        if inversion not in ("nnls", "pinv"):
            raise ValueError(f"unknown mel inversion {inversion!r}")
        self.cfg, self.n_iter, self.inversion = cfg, n_iter, inversion

    def __call__(self, mel: torch.Tensor, length: int) -> torch.Tensor:
        librosa = need("librosa")

        c = self.cfg
        m = mel.detach().cpu().double().numpy()
        if self.inversion == "nnls":
            mag = librosa.feature.inverse.mel_to_stft(m, sr=c.sample_rate, n_fft=c.n_fft, fmax=c.fmax, power=1.0)
        else:
            fb = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmax=c.fmax)
            mag = np.maximum(np.einsum("fm,nmt->nft", np.linalg.pinv(fb), m), 0)
        t = mag.shape[-1]  # centred frames: T frames span (T - 1) hops; the last hop is padded with silence
        y = librosa.griffinlim(mag, n_iter=self.n_iter, hop_length=c.hop, n_fft=c.n_fft, length=(t - 1) * c.hop,
                               random_state=0)
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, max(0, length - y.shape[-1]))])[..., :length]
        return torch.from_numpy(np.clip(y, -1, 1).astype(np.float32))


VOCODERS = {"griffinlim": GriffinLim}


def get_vocoder(name: str, cfg: MelConfig, **kw) -> Vocoder:
    if name not in VOCODERS:
        raise ValueError(f"unknown vocoder {name!r}; this version has {', '.join(VOCODERS)}")
    return VOCODERS[name](cfg, **kw)
