"""Vocoders: mel magnitudes -> waves, behind one small interface so a neural vocoder can replace Griffin-Lim.

The default inverts the mel filterbank (its pseudo-inverse, or non-negative least squares as
librosa.feature.inverse.mel_to_stft does), recovers phase with fast Griffin-Lim (Perraudin et al. 2013;
librosa.griffinlim), then refines the wave by gradient descent until its own log-mel matches the asked one.

Why the refinement: Griffin-Lim makes the magnitude consistent with *some* phase, not the asked mel. Its output's
log-mel has a raised noise floor between the harmonics and in the quiet bands, which is timbre: measured on real
test clips, a family classifier trained on clean log-mels fell from 100% to 77-80% after Griffin-Lim, and to 98%
after it plus 300 refinement steps (README, Audio). The loss is L1 between log-mels (as HiFi-GAN's mel loss), on
the wave itself (Adam, cosine learning rate), so nothing is trained and nothing is downloaded. Its cost to quality is
measured as the "vocoder ceiling" (benchmarks/audio_recipe.py, benchmarks/vocoder_ceiling.py): real log-mels ->
vocoder -> the same metrics as samples; pyin, which reads the wave and no mel, checks that pitch survives.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from .deps import need
import torch

from .mel import MelConfig, MelFrontEnd


class Vocoder(Protocol):
    def __call__(self, mel: torch.Tensor, length: int) -> torch.Tensor:
        """mel magnitudes [N, n_mels, T] -> waves float32 [N, length]."""
        ...


class GriffinLim:
    """Mel -> linear magnitude (``inversion``: nnls, or the filterbank's pseudo-inverse clamped at 0, ~100x faster)
    -> ``n_iter`` iterations of fast Griffin-Lim (momentum 0.99) -> ``refine`` steps of log-mel matching (0: none,
    the vocoder of runs written before it; ``lr`` is in wave units, full scale 1)."""

    def __init__(self, cfg: MelConfig, n_iter: int = 32, inversion: str = "pinv", refine: int = 0, lr: float = 1.5e-4):
        if inversion not in ("nnls", "pinv"):
            raise ValueError(f"unknown mel inversion {inversion!r}")
        if refine < 0 or n_iter < 0 or not lr > 0:
            raise ValueError(f"vocoder: n_iter and refine are >= 0 and lr > 0, got {n_iter}, {refine}, {lr}")
        self.cfg, self.n_iter, self.inversion, self.refine, self.lr = cfg, n_iter, inversion, refine, lr

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
        y = torch.from_numpy(np.clip(y, -1, 1).astype(np.float32))
        return match_mel_batched(y, mel, self.cfg, self.refine, self.lr) if self.refine else y


def match_mel_batched(y: torch.Tensor, mel: torch.Tensor, cfg: MelConfig, steps: int, lr: float, batch: int = 64) -> torch.Tensor:
    """``match_mel`` over ``batch`` clips at a time (bounded memory)."""
    return torch.cat([match_mel(y[i : i + batch], mel[i : i + batch].float(), cfg, steps, lr) for i in range(0, len(y), batch)])


def match_mel(y: torch.Tensor, mel: torch.Tensor, cfg: MelConfig, steps: int, lr: float) -> torch.Tensor:
    """Waves [N, L] moved by ``steps`` Adam steps (cosine learning rate from ``lr``) to lower the L1 distance between
    their log-mel and the asked mel magnitudes [N, M, T]'s: log(mel + floor), smooth where the encoder clamps."""
    t = min(mel.shape[-1], y.shape[-1] // cfg.hop + 1)
    with torch.inference_mode(False), torch.enable_grad():  # callers may sample under inference mode
        front = MelFrontEnd(cfg)  # its window and filterbank made here are not inference tensors
        target = (mel[..., :t].clone() + cfg.floor).log()
        w = y.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        for _ in range(steps):
            loss = ((front.mel(w)[..., :t] + cfg.floor).log() - target).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return w.detach().clamp(-1, 1)


class Neural:
    """The neural vocoder trained by ``diffuse train-vocoder`` (audio/neural.py), saved in folder ``path`` (relative
    to ``run_dir`` when a run carries it: ``RUN/vocoder``), then ``refine`` log-mel matching steps from its wave (0:
    none)."""

    def __init__(self, cfg: MelConfig, path: str, refine: int = 0, lr: float = 1.5e-4, run_dir: str | None = None):
        from pathlib import Path

        from .neural import load_neural_vocoder

        if refine < 0 or not lr > 0:
            raise ValueError(f"vocoder: refine is >= 0 and lr > 0, got {refine}, {lr}")
        self.cfg, self.refine, self.lr = cfg, refine, lr
        self.path = Path(run_dir) / path if run_dir is not None and not Path(path).is_absolute() else Path(path)
        self.net = load_neural_vocoder(self.path, cfg)

    def __call__(self, mel: torch.Tensor, length: int) -> torch.Tensor:
        x = ((mel.float().clamp_min(self.cfg.floor).log() - self.cfg.center) / self.cfg.scale).cpu()
        with torch.no_grad():
            y = torch.cat([self.net(x[i : i + 64]) for i in range(0, len(x), 64)])
        y = torch.nn.functional.pad(y, (0, max(0, length - y.shape[-1])))[..., :length].clamp(-1, 1)
        return match_mel_batched(y, mel, self.cfg, self.refine, self.lr) if self.refine else y


VOCODERS = {"griffinlim": GriffinLim, "neural": Neural}


def get_vocoder(name: str, cfg: MelConfig, **kw) -> Vocoder:
    if name not in VOCODERS:
        raise ValueError(f"unknown vocoder {name!r}; this version has {', '.join(VOCODERS)}")
    return VOCODERS[name](cfg, **kw)
