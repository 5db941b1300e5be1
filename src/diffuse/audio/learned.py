"""A learned mel -> linear-magnitude inversion ("mel2stft"), then Griffin-Lim: the magnitude-STFT path.

Griffin-Lim from 64 mel bins keeps pitch but blurs timbre: above ~1 kHz a mel band spans several harmonics, and the
filterbank's pseudo-inverse spreads each band's energy flat across them. A small 1-D convolutional network over
time, trained on the training clips to predict the 513-bin log magnitude from the log-mel, restores the harmonic
structure (it sees the pitch in the low bands); Griffin-Lim then recovers phase from that magnitude. The network
predicts a residual on top of the pseudo-inverse, so it starts from the plain inversion.

Not the default vocoder: benchmarks/vocoder_ceiling.py measures it raising family accuracy on vocoded real clips but
lowering pyin's pitch agreement (README, Audio), so it is an experiment behind the same magnitudes, not yet a
Vocoder a run can name.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .deps import need
from .mel import MelConfig, MelFrontEnd

class MelToSTFT(nn.Module):
    """log-mel [N, M, T] (model space) -> log |STFT| [N, F, T]: pseudo-inverse + a residual conv1d network."""

    def __init__(self, cfg: MelConfig, width: int = 256, blocks: int = 4):
        super().__init__()
        librosa = need("librosa")
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmax=cfg.fmax)
        self.register_buffer("pinv", torch.from_numpy(np.linalg.pinv(fb)).float(), persistent=False)  # [F, M]
        self.cfg = cfg
        n_freq = cfg.n_fft // 2 + 1
        self.inp = nn.Conv1d(cfg.n_mels, width, 5, padding=2)
        self.blocks = nn.ModuleList(nn.Sequential(nn.GELU(), nn.Conv1d(width, width, 5, padding=2), nn.GELU(),
                                                  nn.Conv1d(width, width, 1)) for _ in range(blocks))
        self.out = nn.Conv1d(width, n_freq, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mel = (x * self.cfg.scale + self.cfg.center).exp()  # [N, M, T]
        base = (self.pinv @ mel).clamp_min(self.cfg.floor).log()  # [N, F, T]
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return base + self.out(h)


def train_mel_to_stft(waves: torch.Tensor, cfg: MelConfig, steps: int = 1500, batch_size: int = 32, seed: int = 0,
                      log=print, loss: str = "log") -> MelToSTFT:
    """Fit on waves [N, samples]: L1 between predicted and true log magnitudes (``loss="log"``), or between
    power-law compressed magnitudes |S|^0.3 (``"pow"``, as speech enhancement does: the harmonic peaks weigh more
    than the noise floor, which the log loss spends most of its capacity on). Adam, cosine learning rate."""
    if loss not in ("log", "pow"):
        raise ValueError(f"unknown mel2stft loss {loss!r}")
    torch.manual_seed(seed)
    front = MelFrontEnd(cfg)
    x = front.encode(waves)[:, 0]  # [N, M, T]
    spec = torch.stft(waves[:, : cfg.samples].float(), cfg.n_fft, cfg.hop, window=front.window, center=True,
                      pad_mode="constant", return_complex=True).abs()[..., : cfg.frames]
    target = spec.clamp_min(cfg.floor).log()  # [N, F, T]
    net = MelToSTFT(cfg)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        pred = net(x[idx])
        err = F.l1_loss(pred, target[idx]) if loss == "log" else F.l1_loss((0.3 * pred).exp(), (0.3 * target[idx]).exp())
        opt.zero_grad(set_to_none=True)
        err.backward()
        opt.step()
        sched.step()
        if log and step % 500 == 0:
            log(f"mel2stft step {step}: L1 ({loss}) {err.item():.3f}")
    return net.eval()
