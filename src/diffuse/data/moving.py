"""Moving Fashion-MNIST and moving digits: one object moving at constant speed in a short clip, after Moving MNIST
(Srivastava et al. 2015, "Unsupervised Learning of Video Representations using LSTMs", Sec. 3.1).

Each item of the source split becomes one clip (train clips from the train split, test clips from the test split):
the object, scaled to half the frame, starts where its whole path stays inside the frame (no bounce, so the caption
holds for every frame) and moves ``speed`` pixels per frame along each moving axis in one of 8 directions. The
clip's direction, speed and start are drawn from (split, item index) alone, so the data is the same on every machine.

Labels are ``class * 8 + direction`` (class names "Sneaker moving left", ...), with ``extra = {"class", "direction"}``;
captions per (class, direction) group come from templates x object synonyms x verbs x direction words. The held-out
phrasings (``heldout_prompt``) use templates and verbs that no training caption has (tests check it).

    moving-fmnist                   8 frames of 32x32 (16x16 objects)
    moving-fmnist:frames=16,size=64 16 frames of 64x64
    moving-digits                   8 frames of 16x16 (the bundled 8x8 digits; fast tests); ``:limit=N`` keeps N clips
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .dataset import ImageDataset

DIRECTIONS = ["right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"]
STEP = {"right": (0, 1), "up-right": (-1, 1), "up": (-1, 0), "up-left": (-1, -1), "left": (0, -1), "down-left": (1, -1),
        "down": (1, 0), "down-right": (1, 1)}  # (dy, dx) per frame in pixel rows / columns (y grows downwards)
DIR_WORDS = {"right": ["right", "to the right"], "up-right": ["up and to the right", "up-right"], "up": ["up", "upwards"],
             "up-left": ["up and to the left", "up-left"], "left": ["left", "to the left"],
             "down-left": ["down and to the left", "down-left"], "down": ["down", "downwards"],
             "down-right": ["down and to the right", "down-right"]}
VERBS = ["moving", "drifting", "sliding"]
TEMPLATES = ["a {x} {v} {d}", "a video of a {x} {v} {d}", "a clip of a {x} {v} {d}"]
HELDOUT_VERBS = ["gliding", "travelling", "heading"]
HELDOUT_TEMPLATES = ["footage of a {x} {v} {d}", "watch a {x} {v} {d}", "a short film of a {x} {v} {d}"]
SOURCES = {"moving-fmnist": dict(frames=8, size=32), "moving-digits": dict(frames=8, size=16)}
FPS = 8


def is_moving(source: str) -> bool:
    return source.split(":")[0] in SOURCES


def parse(source: str) -> tuple[str, dict[str, int]]:
    """``moving-fmnist:frames=16,size=64`` -> ("moving-fmnist", {"frames": 16, "size": 64, "limit": 0})."""
    name, _, opts = source.partition(":")
    out = {**SOURCES[name], "limit": 0}
    for kv in filter(None, opts.split(",")):
        k, _, v = kv.partition("=")
        if k not in out or not v.isdigit() or int(v) <= 0:
            raise UserError(f"--data {source}: options are frames=N, size=N and limit=N (positive integers), got {kv!r}")
        out[k] = int(v)
    if out["size"] % 2 or out["size"] // 2 < out["frames"] - 1:
        raise UserError(f"--data {source}: a {out['size']}x{out['size']} frame leaves the half-size object {out['size'] // 2} "
                        f"pixels to move, too few for {out['frames']} frames at 1 pixel per frame (use a larger size)")
    return name, out


def _words(name: str) -> list[str]:
    from ..text.captions import _words

    return _words(name)


def _article(text: str) -> str:
    from ..text.captions import _article

    return _article(text)


def group_captions(name: str, direction: str) -> list[str]:
    """Every training caption of (class ``name``, ``direction``)."""
    return list(dict.fromkeys(_article(t.format(x=x, v=v, d=d)) for t in TEMPLATES for x in _words(name) for v in VERBS
                              for d in DIR_WORDS[direction]))


def heldout_prompt(name: str, direction: str, i: int) -> str:
    """The i-th held-out phrasing of (class, direction): a template and a verb no training caption uses."""
    t, v = HELDOUT_TEMPLATES[i % len(HELDOUT_TEMPLATES)], HELDOUT_VERBS[(i // len(HELDOUT_TEMPLATES)) % len(HELDOUT_VERBS)]
    words = _words(name)
    return _article(t.format(x=words[i % len(words)], v=v, d=DIR_WORDS[direction][i % 2]))


def paths(n: int, frames: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(direction [n], top-left corner of the object in every frame [n, frames, 2] (row, col)) drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    free = size - size // 2  # positions the object's corner can take along an axis: 0 .. free
    direction = rng.integers(0, 8, n)
    speed = rng.integers(1, max(free // (frames - 1), 1) + 1, n)  # pixels per frame along each moving axis
    travel = speed * (frames - 1)
    step = np.array([STEP[DIRECTIONS[d]] for d in direction])  # [n, 2]
    start = np.empty((n, 2), dtype=np.int64)
    for a in range(2):
        lo = np.where(step[:, a] < 0, travel, 0)
        hi = np.where(step[:, a] > 0, free - travel, free)
        start[:, a] = lo + (rng.random(n) * (hi - lo + 1)).astype(np.int64)
    corner = start[:, None, :] + step[:, None, :] * speed[:, None, None] * np.arange(frames)[None, :, None]
    return direction, corner


def render(objects: torch.Tensor, corner: np.ndarray, size: int) -> torch.Tensor:
    """uint8 clips [n, C, T, size, size]: each object [n, C, o, o] pasted at its corner in each frame."""
    n, c, o, _ = objects.shape
    t = corner.shape[1]
    obj = objects.numpy()
    clips = np.zeros((n, c, t, size, size), dtype=np.uint8)
    for i in range(n):  # numpy slicing per clip and frame, no index arrays (60,000 clips of 8 frames: about 2 s)
        for k in range(t):
            y, x = corner[i, k]
            clips[i, :, k, y : y + o, x : x + o] = obj[i]
    return torch.from_numpy(clips)


def moving_dataset(source: str, split: str) -> ImageDataset:
    """The clips of ``source``'s ``split`` as uint8 [N, C, T, H, W] with (class, direction) labels and captions."""
    from . import sources

    name, opt = parse(source)
    base = sources.load_fashion_mnist(split) if name == "moving-fmnist" else sources.load_digits(split)
    if opt["limit"]:
        base = base.subset(torch.linspace(0, len(base) - 1, min(opt["limit"], len(base))).round().long())
    o = opt["size"] // 2
    objects = base.images if base.images.shape[-1] == o else \
        F.interpolate(base.images.float(), size=(o, o), mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
    direction, corner = paths(len(base), opt["frames"], opt["size"], seed=(0 if split == "train" else 1) + 2 * opt["frames"])
    clips = render(objects, corner, opt["size"])
    cls, d = base.labels, torch.from_numpy(direction)
    names = [f"{c} moving {dn}" for c in base.class_names for dn in DIRECTIONS]
    caps = [group_captions(c, dn) for c in base.class_names for dn in DIRECTIONS]
    labels = cls * 8 + d
    spec = {"name": "video", "fps": FPS}
    tag = f"{name}-{opt['frames']}x{opt['size']}" + (f"-{opt['limit']}" if opt["limit"] else "")
    return ImageDataset(clips, labels, names, tag, modality=spec, captions=(caps, labels.clone()),
                        extra={"class": cls.clone(), "direction": d})
