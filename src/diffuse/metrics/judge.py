"""A modality's judge: the domain classifier that scores its samples. Its penultimate layer is the feature space of
the Frechet distance (FID for images, an FAD-style distance for audio) and its head scores label adherence.

    judge = judge_for(modality, data, data_dir, log)  # trained once per dataset and cached
    feats, pred = judge.score(x)                  # model-space samples -> features [N, D] float64, labels [N]
    ref = judge.reference()                       # the test split's features
    for name, f in judge.floors(idx).items(): ... # real data at the same n: fid_real (and fid_vocoder for audio)

``evaluate`` only talks to this interface, so a new modality adds a judge to JUDGES, not a branch. The registry
lives here rather than on the modality record so that the layers stay one-way: metrics import modalities and
data, never the reverse (tests/test_layers.py).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..errors import UserError
from .judging import Judge, _splits, reference_features  # noqa: F401 (re-exported: the interface and its helpers)


class ImageJudge(Judge):
    """The image domain classifier (metrics/classifier.py), or the FID Inception network's features (``inception``);
    samples of a model trained on resized data are scored at the data's own size."""

    def __init__(self, data: str, data_dir: str | None, log: Callable[[str], None] = print, inception: torch.nn.Module | None = None):
        from .classifier import classifier_key, get_classifier, predict

        self.train, self.test = _splits(data, data_dir)
        self.clf, self.classifier_test_accuracy = get_classifier(self.train, self.test, log)
        self._predict = predict
        if inception is not None:
            from .inception import inception_features

            self.featurize = lambda im: inception_features(inception, im)
            self.key, self.feature_net = "inception-fid", "FID Inception-v3 (pt_inception weights, 2048-d pool)"
        else:
            self.featurize = lambda im: predict(self.clf, im)[0]
            self.key, self.feature_net = classifier_key(self.train), f"domain classifier ({data}, 128-d penultimate layer)"
        self.inception = inception is not None

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from ..data import resize_images
        from ..pixels import to_uint8

        native = resize_images(to_uint8(x), self.test.shape[-1])
        feats, pred = self._predict(self.clf, native)
        return (self.featurize(native) if self.inception else feats), pred

    def reference(self) -> torch.Tensor:
        return reference_features(self.key, self.test, self.featurize)

    def floors(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"fid_real": self.featurize(self.train.images[idx])}


class AudioJudge(Judge):
    """The mel domain classifier (metrics/audio.py): a family (class) head, and a pitch head where the dataset has
    pitches. Samples are vocoded to waves and encoded again before they are scored, so they are judged by what a user
    hears; ``fid_vocoder`` (real test log-mels through the vocoder) is the best any model can reach."""

    def __init__(self, mod, data: str, data_dir: str | None, log: Callable[[str], None] = print):
        from .audio import classify, get_mel_classifier

        self.mod = mod
        self.train, self.test = _splits(data, data_dir)
        pitch = self.train.extra.get("pitch") if self.train.extra else None
        self.pitch0 = int(pitch.min()) if pitch is not None else 0
        n_pitch = int(pitch.max()) - self.pitch0 + 1 if pitch is not None else 1
        pitch_idx = pitch - self.pitch0 if pitch is not None else torch.zeros_like(self.train.labels)
        self.net = get_mel_classifier(self.train.images, self.train.labels, pitch_idx, self.train.num_classes, n_pitch, log)
        self._classify = classify
        self._test_feats, fam, _ = classify(self.net, self.test.images)  # the Frechet reference, kept
        self.classifier_test_accuracy = float((fam == self.test.labels).float().mean())
        self.feature_net = f"mel domain classifier ({data}, 128-d penultimate layer)"

    def hear(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space log-mels -> vocoder -> wave -> log-mels again: what the user's files hold."""
        return self.mod.encode(self.mod.decode(x), x.shape[-1])

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(features, family, pitch as MIDI) of model-space log-mels as they are."""
        f, fam, pit = self._classify(self.net, x)
        return f, fam, pit + self.pitch0

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, fam, _ = self.classify(self.hear(x))
        return f, fam

    def reference(self) -> torch.Tensor:
        return self._test_feats

    def floors(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        real = self.train.images[idx]
        return {"fid_real": self.classify(real)[0], "fid_vocoder": self.classify(self.hear(real))[0]}


JUDGES: dict[str, Callable[..., Judge]] = {
    "image": lambda mod, data, data_dir, log, inception: ImageJudge(data, data_dir, log, inception),
    "audio": lambda mod, data, data_dir, log, inception: AudioJudge(mod, data, data_dir, log),
    "video": lambda mod, data, data_dir, log, inception: _video_judge(data, data_dir, log),
}


def _video_judge(data: str, data_dir: str | None, log: Callable[[str], None]) -> Judge:
    from .video import VideoJudge  # (metrics/video.py builds on this module)

    return VideoJudge(data, data_dir, log)


def has_judge(mod, data: str) -> bool:
    """Whether runs of modality ``mod`` on ``data`` can be scored: video judges read moving objects (a class per
    cropped frame, a direction per centroid track), so only the moving datasets have one."""
    from ..data.moving import is_moving

    return mod.name in JUDGES and (mod.name != "video" or is_moving(data))


def judge_for(mod, data: str, data_dir: str | None, log: Callable[[str], None] = print, inception=None) -> Judge:
    """The judge of modality ``mod`` for dataset ``data`` (its domain classifier trained once and cached)."""
    if not has_judge(mod, data):
        raise UserError(f"no evaluation is defined for {mod.name} runs of {data}"
                        + (" (video runs are scored on moving-fmnist and moving-digits)" if mod.name == "video" else ""))
    return JUDGES[mod.name](mod, data, data_dir, log, inception)
