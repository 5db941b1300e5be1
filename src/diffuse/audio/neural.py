"""A small neural vocoder trained here: log-mel frames -> STFT magnitude and phase per frame -> inverse STFT
(the Fourier-head design of Vocos, Siuzdenko et al. 2023), with a 1-D ConvNeXt over time.

Why a network: Griffin-Lim plus log-mel matching (audio/vocoder.py) reproduces a log-mel as closely as some wave
allows, and a generated log-mel need not be the log-mel of any wave; the matching then spends its steps on the
impossible parts. A vocoder trained on real clips maps every log-mel to a wave like the ones it saw. Whether that
helps samples is measured, not assumed (benchmarks/vocoder_samples.py, README "Audio").

The frames are the mel front end's own (n_fft 1024, hop 160, centred), so the head's inverse STFT lines up with
the input frame for frame and needs no upsampling. Losses (no discriminator, to keep training to minutes on a CPU):
L1 between log-mels of the output and of the target (the quantity the evaluation reads), and L1 between log
magnitudes at three STFT resolutions, which constrain phase through the overlap between frames.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .mel import MelConfig, MelFrontEnd

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the multi-resolution STFT loss


@dataclass(frozen=True)
class NeuralVocoderConfig:
    width: int = 256
    blocks: int = 6
    kernel: int = 7


class ConvNeXt1d(nn.Module):
    """Depthwise conv in time -> LayerNorm -> pointwise MLP (x3) -> layer scale, with a residual."""

    def __init__(self, d: int, kernel: int):
        super().__init__()
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 3 * d), nn.GELU(), nn.Linear(3 * d, d))
        self.gamma = nn.Parameter(torch.full((d,), 1e-2))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # [N, d, T]
        y = self.mlp(self.norm(self.dw(h).transpose(1, 2)))
        return h + (self.gamma * y).transpose(1, 2)


class NeuralVocoder(nn.Module):
    """Model-space log-mels [N, M, T] -> waves [N, T * hop] (the last hop, past the last centred frame, is silence,
    as Griffin-Lim's)."""

    def __init__(self, mel: MelConfig, cfg: NeuralVocoderConfig = NeuralVocoderConfig()):
        super().__init__()
        self.mel, self.cfg = mel, cfg
        d, n_freq = cfg.width, mel.n_fft // 2 + 1
        self.inp = nn.Conv1d(mel.n_mels, d, cfg.kernel, padding=cfg.kernel // 2)
        self.norm_in = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(ConvNeXt1d(d, cfg.kernel) for _ in range(cfg.blocks))
        self.norm_out = nn.LayerNorm(d)
        self.head = nn.Linear(d, 2 * n_freq)
        self.register_buffer("window", torch.hann_window(mel.n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm_in(self.inp(x).transpose(1, 2)).transpose(1, 2)
        for b in self.blocks:
            h = b(h)
        logmag, phase = self.head(self.norm_out(h.transpose(1, 2))).transpose(1, 2).chunk(2, dim=1)  # [N, F, T] each
        spec = torch.polar(logmag.clamp(max=math.log(100.0)).exp(), phase)
        t = x.shape[-1]
        y = torch.istft(spec, self.mel.n_fft, self.mel.hop, window=self.window, center=True, length=(t - 1) * self.mel.hop)
        return F.pad(y, (0, self.mel.hop))


def log_stft(y: torch.Tensor, n_fft: int, hop: int, floor: float = 1e-5) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=y.device)
    return torch.stft(y, n_fft, hop, window=win, center=True, return_complex=True).abs().clamp_min(floor).log()


def vocoder_loss(y: torch.Tensor, target: torch.Tensor, front: MelFrontEnd) -> tuple[torch.Tensor, dict[str, float]]:
    """L1 of log-mels (front end's) + mean L1 of log magnitudes over RESOLUTIONS, between waves [N, L]."""
    floor = front.cfg.floor
    mel = ((front.mel(y) + floor).log() - (front.mel(target) + floor).log()).abs().mean()
    stft = sum((log_stft(y, n, h) - log_stft(target, n, h)).abs().mean() for n, h in RESOLUTIONS) / len(RESOLUTIONS)
    return mel + stft, {"mel_l1": mel.detach().item(), "stft_l1": stft.detach().item()}


def train_neural_vocoder(waves: torch.Tensor, mel: MelConfig, minutes: float | None = None, steps: int | None = None,
                         batch_size: int = 16, lr: float = 1e-3, seed: int = 0,
                         cfg: NeuralVocoderConfig = NeuralVocoderConfig(), log=print) -> tuple[NeuralVocoder, dict]:
    """Fit on waves [N, samples] (clips of ``mel.frames`` frames) for ``steps`` or ``minutes``, whichever ends first
    (at least one given). AdamW, a 100-step warm-up (a tenth of a shorter --steps), cosine fall to 0 keyed to the budget. Returns the network in
    eval mode and a record of the run."""
    if minutes is None and steps is None:
        raise ValueError("give minutes or steps")
    torch.manual_seed(seed)
    front = MelFrontEnd(mel)
    waves = waves[:, : mel.samples].float()
    x = front.encode(waves)[:, 0]  # [N, M, T]
    net = NeuralVocoder(mel, cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, betas=(0.8, 0.99), weight_decay=0.01)
    g = torch.Generator().manual_seed(seed)
    start, step, parts = time.monotonic(), 0, {}
    warmup = min(100, max(1, steps // 10)) if steps else 100
    while True:
        done = max(step / steps if steps else 0.0, (time.monotonic() - start) / 60 / minutes if minutes else 0.0)
        if done >= 1:
            break
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * done))
        idx = torch.randint(len(x), (batch_size,), generator=g)
        loss, parts = vocoder_loss(net(x[idx]), waves[idx], front)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if log and step % 200 == 0:
            log(f"vocoder step {step}: mel L1 {parts['mel_l1']:.3f}, STFT L1 {parts['stft_l1']:.3f} ({time.monotonic() - start:.0f} s)")
        step += 1
    record = {"steps": step, "seconds": round(time.monotonic() - start, 1), "batch_size": batch_size, "lr": lr,
              "clips": len(x), "final": parts, "net": asdict(cfg), "mel": mel.to_dict()}
    return net.eval(), record


def save_neural_vocoder(net: NeuralVocoder, record: dict, out: Path) -> None:
    """``out/vocoder.safetensors`` (weights) and ``out/vocoder.json`` (architecture, mel front end, training)."""
    from ..checkpoint import save_tensors, write_json

    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / "vocoder.safetensors", net.state_dict(), {"kind": "diffuse-neural-vocoder"})
    write_json(out / "vocoder.json", {"kind": "diffuse-neural-vocoder", "version": 1, **record})


def load_neural_vocoder(path: Path, mel: MelConfig) -> NeuralVocoder:
    """The vocoder saved in folder ``path``; a UserError if it is missing, corrupt, or made for another front end."""
    from ..checkpoint import load_into, load_tensors
    from ..errors import UserError
    from ..typed import from_json

    path = Path(path)
    try:
        rec = json.loads((path / "vocoder.json").read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot load a neural vocoder from {path}: {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}") from None
    if not isinstance(rec, dict) or rec.get("kind") != "diffuse-neural-vocoder":
        raise UserError(f"cannot load a neural vocoder from {path}: vocoder.json is not a diffuse neural vocoder record")
    if rec.get("mel") != mel.to_dict():
        raise UserError(f"the vocoder in {path} was trained for another mel front end ({rec.get('mel')}); this model has {mel.to_dict()}")
    net = NeuralVocoder(mel, from_json(NeuralVocoderConfig, rec.get("net", {}), f"{path / 'vocoder.json'}: net"))
    tensors, _ = load_tensors(path / "vocoder.safetensors", "neural vocoder weights")
    load_into(net, tensors, path / "vocoder.safetensors")
    return net.eval()
