"""Scores of generated clips of moving objects (data/moving.py):

- class: the image domain classifier (metrics/classifier.py, trained on the source images at the object's size) on
  the object cropped from each frame around its intensity-weighted centroid; the clip's class is the majority;
- identity consistency: the share of a clip's frames whose class agrees with that majority;
- direction: the least-squares slope of the centroid track, snapped to the nearest of the 8 directions; a track that
  moves less than ``MIN_SPEED`` pixels per frame is "still" and matches no direction;
- a Frechet distance in the 128-d features of a small 3-D CNN (``ClipNet``) trained once on real training clips to
  predict class and direction (FVD-style, Unterthiner et al. 2018, with a domain network instead of I3D).

``VideoJudge`` puts these behind the Judge interface (metrics/judge.py): ``score`` returns ClipNet features and the
predicted (class, direction) label ``class * 8 + direction``; ``clip_scores`` returns every figure above.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_into, load_tensors, save_tensors
from ..pixels import to_model_space, to_uint8
from .classifier import cache_dir, dataset_hash
from .judging import Judge, _splits

CLIPNET_VERSION = 1
MIN_SPEED = 0.3  # pixels per frame: slower centroid tracks count as no motion


def centroid_track(clips: torch.Tensor) -> np.ndarray:
    """uint8 clips [N, C, T, H, W] -> intensity-weighted centroids [N, T, 2] (row, col) in pixels."""
    v = clips.float().mean(1)  # [N, T, H, W]
    h, w = v.shape[-2:]
    mass = v.sum((-2, -1)).clamp(min=1e-6)
    rows = (v.sum(-1) * torch.arange(h)).sum(-1) / mass
    cols = (v.sum(-2) * torch.arange(w)).sum(-1) / mass
    return torch.stack([rows, cols], -1).numpy()


def directions(track: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid tracks [N, T, 2] -> (direction index 0..7 of data/moving.py's DIRECTIONS, or -1 for still [N],
    speed in pixels per frame [N]) from the least-squares slope of row and column against time."""
    t = np.arange(track.shape[1], dtype=np.float64)
    t = t - t.mean()
    slope = (track - track.mean(1, keepdims=True)).transpose(0, 2, 1) @ t / (t @ t)  # [N, 2] (d row, d col) per frame
    angle = np.arctan2(-slope[:, 0], slope[:, 1])  # up is positive; 0 = right, pi/2 = up
    idx = np.round(angle / (math.pi / 4)).astype(np.int64) % 8  # right, up-right, up, ... as DIRECTIONS
    speed = np.linalg.norm(slope, axis=1)
    return np.where(speed >= MIN_SPEED, idx, -1), speed


def crop_objects(clips: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 clips [N, C, T, H, W] -> uint8 frames [N * T, C, size, size] centred on each frame's centroid."""
    n, c, t, h, w = clips.shape
    cen = centroid_track(clips).reshape(n * t, 2)
    frames = clips.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
    top = np.clip(np.round(cen[:, 0] - size / 2 + 0.5).astype(np.int64), 0, h - size)
    left = np.clip(np.round(cen[:, 1] - size / 2 + 0.5).astype(np.int64), 0, w - size)
    return torch.stack([frames[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(top, left))])


class ClipNet(nn.Module):
    """A small 3-D CNN over clips [B, C, T, H, W] in [-1, 1]: 128-d features, a class head and a direction head."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()

        def block(i: int, o: int, k: tuple, s: tuple) -> list[nn.Module]:
            return [nn.Conv3d(i, o, k, s, padding=tuple(x // 2 for x in k), bias=False), nn.BatchNorm3d(o), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(*block(channels, 32, (3, 3, 3), (1, 2, 2)), *block(32, 64, (3, 3, 3), (1, 2, 2)),
                                  *block(64, 128, (3, 3, 3), (2, 2, 2)), nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.cls = nn.Linear(128, num_classes)
        self.dir = nn.Linear(128, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.cls(f), self.dir(f)


def train_clipnet(clips: torch.Tensor, cls: torch.Tensor, direction: torch.Tensor, num_classes: int, steps: int = 800,
                  batch_size: int = 64, seed: int = 0) -> ClipNet:
    torch.manual_seed(seed)
    net = ClipNet(clips.shape[1], num_classes)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(steps):
        idx = torch.randint(0, len(clips), (batch_size,), generator=g)
        _, lc, ld = net(to_model_space(clips[idx]))
        loss = F.cross_entropy(lc, cls[idx]) + F.cross_entropy(ld, direction[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def clip_features(net: ClipNet, clips: torch.Tensor, batch_size: int = 200) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 clips -> (features [N, 128] float64, class [N], direction [N])."""
    out = [net(to_model_space(clips[i : i + batch_size])) for i in range(0, len(clips), batch_size)]
    return torch.cat([o[0] for o in out]).double(), torch.cat([o[1].argmax(1) for o in out]), torch.cat([o[2].argmax(1) for o in out])


class VideoJudge(Judge):
    def __init__(self, data: str, data_dir: str | None, log: Callable[[str], None] = print):
        from ..data import load_dataset, resize_dataset
        from ..data.moving import parse
        from .classifier import get_classifier

        self.train, self.test = _splits(data, data_dir)
        name, opt = parse(data)
        self.obj = opt["size"] // 2
        base = "fashion-mnist" if name == "moving-fmnist" else "digits"
        objects = [resize_dataset(load_dataset(base, s, data_dir), self.obj) for s in ("train", "test")]
        self.object_names = objects[0].class_names  # the object classes (labels are class * 8 + direction)
        self.num_classes = len(self.object_names)
        self.frame_clf, frame_acc = get_classifier(*objects, log)
        key = f"{self.train.name}-{dataset_hash(self.train)}-v{CLIPNET_VERSION}"
        path = cache_dir() / "classifiers" / f"clipnet-{key}.safetensors"
        self.net = ClipNet(self.train.shape[0], self.num_classes)
        ex = self.train.extra
        if path.is_file():
            t, meta = load_tensors(path, "cached clip network")
            load_into(self.net, t, path)
            self.net.eval()
        else:
            log(f"training the {self.train.name} clip network once (cached at {path}) ...")
            self.net = train_clipnet(self.train.images, ex["class"], ex["direction"], self.num_classes)
            _, c, d = clip_features(self.net, self.test.images)
            meta = {"class_accuracy": float((c == self.test.extra["class"]).float().mean()),
                    "direction_accuracy": float((d == self.test.extra["direction"]).float().mean())}
            save_tensors(path, self.net.state_dict(), meta)
        self.clipnet_accuracy = {k: float(v) for k, v in meta.items() if k.endswith("accuracy")}
        self.frame_classifier_accuracy = frame_acc
        self.classifier_test_accuracy = frame_acc
        self.feature_net = f"clip network ({data}, 3-D CNN, 128-d penultimate layer)"
        self._ref = None

    def frame_classes(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 clips [N, C, T, H, W] -> the class of the object in each frame [N, T]."""
        from .classifier import predict

        n, t = clips.shape[0], clips.shape[2]
        return predict(self.frame_clf, crop_objects(clips, self.obj))[1].reshape(n, t)

    def clip_scores(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per clip: class (majority of frames) [N], identity consistency [N], direction (-1: still) [N], speed [N]."""
        per_frame = self.frame_classes(clips)
        major = torch.mode(per_frame, 1).values
        consistency = (per_frame == major[:, None]).float().mean(1)
        d, speed = directions(centroid_track(clips))
        return {"class": major, "consistency": consistency, "direction": torch.from_numpy(d), "speed": torch.from_numpy(speed)}

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clips = to_uint8(x)
        s = self.clip_scores(clips)
        return clip_features(self.net, clips)[0], s["class"] * 8 + s["direction"].clamp(min=0) - 1000 * (s["direction"] < 0)

    def reference(self) -> torch.Tensor:
        if self._ref is None:
            self._ref = clip_features(self.net, self.test.images)[0]
        return self._ref

    def floors(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"fid_real": clip_features(self.net, self.train.images[idx])[0]}
