"""Audio evaluation: a domain classifier on log-mels (instrument family and pitch heads), the Frechet distance in its
features (FAD-style: Kilgour et al. 2019 use VGGish, which cannot be had offline; ours uses the domain classifier,
as our image FID does), and pitch error in cents from librosa.pyin (Mauch & Dixon 2014), independent of any
classifier. The classifier is trained once per training set and cached, like the image one.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
from ..audio.deps import need
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_into, load_tensors, save_tensors
from ..cache import cache_dir
from .classifier import FEATURE_DIM

MEL_CLASSIFIER_VERSION = 1


class MelClassifier(nn.Module):
    """conv-BN-ReLU x5 with three max-pools over [B, 1, mels, frames], global average pool -> 128-d features, then a
    family head and a pitch head."""

    def __init__(self, n_families: int, n_pitches: int):
        super().__init__()

        def cbr(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(*cbr(1, 16), nn.MaxPool2d(2), *cbr(16, 32), nn.MaxPool2d(2), *cbr(32, 64), *cbr(64, 64),
                                  nn.MaxPool2d(2, ceil_mode=True), *cbr(64, FEATURE_DIM), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(0.3)
        self.family = nn.Linear(FEATURE_DIM, n_families)
        self.pitch = nn.Linear(FEATURE_DIM, n_pitches)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, 1, M, T] model-space log-mels -> (features [B, 128], family logits, pitch logits)."""
        f = self.body(x)
        h = self.drop(f)
        return f, self.family(h), self.pitch(h)


def train_mel_classifier(x: torch.Tensor, family: torch.Tensor, pitch: torch.Tensor, n_families: int, n_pitches: int,
                         steps: int | None = None, batch_size: int = 64, seed: int = 0) -> MelClassifier:
    """Adam, one-cycle learning rate, ``steps`` (default: 30 epochs, at most 1000 steps, at least 50); augmentation:
    time shifts of up to 8 frames and gain of +-6 dB (a constant in the log domain), so the classifier judges timbre
    and pitch, not placement or loudness."""
    steps = steps or min(1000, max(50, 30 * len(x) // batch_size))
    torch.manual_seed(seed)
    net = MelClassifier(n_families, n_pitches)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    floor = float(x.min())
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (batch_size,), generator=g)
        xb = x[idx]
        shift = int(torch.randint(-8, 9, (1,), generator=g))
        xb = torch.roll(F.pad(xb, (8, 8), value=floor), shift, -1)[..., 8:-8]
        gain = (torch.rand(batch_size, 1, 1, 1, generator=g) - 0.5) * 2 * math.log(2) / 6.5  # +-6 dB at scale 6.5
        xb = torch.maximum(xb + gain, torch.tensor(floor))
        _, lf, lp = net(xb)
        loss = F.cross_entropy(lf, family[idx]) + F.cross_entropy(lp, pitch[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def classify(net: MelClassifier, x: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features [N, 128] float64, predicted family [N], predicted pitch index [N]) of model-space log-mels."""
    feats, fam, pit = [], [], []
    for i in range(0, len(x), batch_size):
        f, lf, lp = net(x[i : i + batch_size].float())
        feats.append(f.double())
        fam.append(lf.argmax(1))
        pit.append(lp.argmax(1))
    return torch.cat(feats), torch.cat(fam), torch.cat(pit)


def get_mel_classifier(x: torch.Tensor, family: torch.Tensor, pitch: torch.Tensor, n_families: int, n_pitches: int,
                       log=print) -> MelClassifier:
    """The cached classifier of this training set (trained on first use)."""
    h = hashlib.sha256(x.numpy().tobytes())
    h.update(family.numpy().tobytes())
    h.update(pitch.numpy().tobytes())
    path = cache_dir() / "classifiers" / f"mel-{h.hexdigest()[:16]}-v{MEL_CLASSIFIER_VERSION}.safetensors"
    net = MelClassifier(n_families, n_pitches)
    if path.is_file():
        tensors, _ = load_tensors(path, "cached classifier")
        load_into(net, tensors, path)
        return net.eval()
    log(f"training the mel domain classifier once (cached at {path}) ...")
    net = train_mel_classifier(x, family, pitch, n_families, n_pitches)
    save_tensors(path, net.state_dict(), {"n_train": len(x)})
    return net


def pitch_cents(waves: torch.Tensor, midi: torch.Tensor, sample_rate: int) -> np.ndarray:
    """Error in cents [N] of each wave's median pyin f0 (voiced frames) against the asked MIDI note; NaN where pyin
    finds no voiced frame. Octave errors count in full (1200 cents)."""
    librosa = need("librosa")

    f0, voiced, _ = librosa.pyin(waves.numpy().astype(np.float64), fmin=librosa.midi_to_hz(36), fmax=librosa.midi_to_hz(84),
                                 sr=sample_rate, frame_length=2048, hop_length=256)
    f0 = np.where(voiced, f0, np.nan)  # [N, frames]
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(f0, axis=1)
    return 1200 * np.log2(med / librosa.midi_to_hz(midi.numpy().astype(np.float64)))
