"""The mel front end of AudioLDM (Liu et al. 2023, Sec. 4 "Implementation details"): 16 kHz audio, a 1024-point STFT
with hop 160 (10 ms), 64 mel bins up to 8 kHz, log magnitude. The STFT is torch.stft and the mel filterbank is
librosa's (Slaney), so the result equals ``librosa.feature.melspectrogram(..., power=1)`` (tests/test_audio.py).

Model space is the log-mel mapped affinely so that the data fill about [-1, 1]: ``x = (log(max(mel, floor)) -
center) / scale``. Measured on the notes test split: log-mels span -11.5 (the floor) .. 1.7, 99.9% below 0.43.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from .deps import need


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 16_000
    n_fft: int = 1024
    hop: int = 160
    n_mels: int = 64
    fmax: float = 8000.0
    frames: int = 100  # the clip length in frames (1 s)
    floor: float = 1e-5  # log(max(mel, floor)): AudioLDM's clamp
    center: float = -5.0
    scale: float = 6.5

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def samples(self) -> int:
        """Wave length of ``frames`` frames."""
        return self.frames * self.hop

    def frames_for(self, seconds: float) -> int:
        """The frame count closest to ``seconds``."""
        return max(1, round(seconds * self.sample_rate / self.hop))


class MelFrontEnd:
    """waves [N, samples] <-> model-space log-mels [N, 1, n_mels, frames]."""

    def __init__(self, cfg: MelConfig):
        librosa = need("librosa")

        self.cfg = cfg
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmax=cfg.fmax)  # [M, F]
        self.fb = torch.from_numpy(fb).float()
        self.window = torch.hann_window(cfg.n_fft)

    def mel(self, waves: torch.Tensor) -> torch.Tensor:
        """Mel magnitudes [N, n_mels, T] of waves [N, samples] (centred frames, zero padding, as librosa)."""
        spec = torch.stft(waves.float(), self.cfg.n_fft, self.cfg.hop, window=self.window, center=True, pad_mode="constant",
                          return_complex=True).abs()  # [N, F, T]
        return self.fb @ spec

    def encode(self, waves: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Model-space log-mels [N, 1, n_mels, frames] of waves [N, samples] (cut or padded with silence first)."""
        frames = frames or self.cfg.frames
        n = frames * self.cfg.hop
        waves = waves[:, :n] if waves.shape[1] >= n else torch.nn.functional.pad(waves, (0, n - waves.shape[1]))
        out = []
        for i in range(0, len(waves), 256):  # bounded memory for large sets
            logmel = self.mel(waves[i : i + 256]).clamp_min(self.cfg.floor).log()[..., :frames]  # [n, M, frames]
            out.append((logmel - self.cfg.center) / self.cfg.scale)
        return torch.cat(out)[:, None]

    def magnitudes(self, x: torch.Tensor) -> torch.Tensor:
        """Mel magnitudes [N, n_mels, T] of model-space log-mels [N, 1, n_mels, T]."""
        return (x[:, 0].float() * self.cfg.scale + self.cfg.center).exp()

    def seconds(self, frames: int) -> float:
        return frames * self.cfg.hop / self.cfg.sample_rate


