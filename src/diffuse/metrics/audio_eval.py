"""Evaluate a text- or class-conditional notes model against real data, in one table: samples are vocoded to
waves (what a user hears), then measured; the same metrics on real test clips give the floor, and on real test
log-mels sent through the vocoder give the vocoder ceiling, so the vocoder's cost is told apart from the model's.

Metrics: family adherence and pitch accuracy by the mel domain classifier; the fraction of clips whose pyin f0 is
within +-50 cents of the asked note; the Frechet distance of classifier features to the training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .judge import AudioJudge


@dataclass
class AudioScores:
    family: float
    pitch: float
    cents50: float
    frechet: float
    n: int

    def row(self, name: str) -> str:
        cents = "–" if math.isnan(self.cents50) else f"{100 * self.cents50:.1f}%"  # no waves (log-mels before the vocoder)
        return f"| {name} | {self.n} | {100 * self.family:.1f}% | {100 * self.pitch:.1f}% | {cents} | {self.frechet:.2f} |"


HEADER = "| set | n | family | pitch (classifier) | pitch within 50 cents (pyin) | Frechet distance |\n|---|---|---|---|---|---|"


class NotesJudge(AudioJudge):
    """The notes' judge (metrics/judge.py) with the benchmark's scores: waves asked for a family and a MIDI note, the
    Frechet distance to the training set's features, the real floor and the vocoder ceiling."""

    def __init__(self, mod, log=print):
        super().__init__(mod, "notes", None, log)
        self.train_feats = self.classify(self.train.images)[0]

    def score_waves(self, waves: torch.Tensor, family: torch.Tensor, midi: torch.Tensor) -> AudioScores:
        """Scores of waves [N, samples] asked to be ``family`` [N] at MIDI note ``midi`` [N]."""
        from .audio import pitch_cents

        scores = self.score_mels(self.mod.encode(waves), family, midi)
        cents = pitch_cents(waves, midi, self.mod.mel.sample_rate)
        scores.cents50 = float(np.mean(np.abs(np.nan_to_num(cents, nan=1e9)) <= 50))
        return scores

    def score_mels(self, x: torch.Tensor, family: torch.Tensor, midi: torch.Tensor) -> AudioScores:
        """Classifier scores of model-space log-mels themselves (no vocoder; pyin needs a wave, so NaN there): the
        model's own adherence, apart from the vocoder's cost."""
        from .fid import fid_from_features

        feats, fam, pit = self.classify(x)
        return AudioScores(float((fam == family).float().mean()), float((pit == midi).float().mean()),
                           float("nan"), fid_from_features(self.train_feats, feats), len(x))

    def real_floor(self, idx: torch.Tensor) -> AudioScores:
        """Real test clips ``idx``, straight from their waves (re-rendered: the loader keeps log-mels only)."""
        from ..data.notes import build

        nt = build("test")
        return self.score_waves(torch.from_numpy(nt.waves[idx.numpy()]), self.test.labels[idx], self.test.extra["pitch"][idx])

    def vocoder_ceiling(self, idx: torch.Tensor) -> AudioScores:
        """Real test log-mels ``idx`` through the vocoder."""
        return self.score_waves(self.mod.decode(self.test.images[idx]), self.test.labels[idx], self.test.extra["pitch"][idx])
