"""A folder of video files as a dataset of clips: sub-folders are classes (sorted by name), or one flat folder
(unconditional, or text with ``--captions FILE``, rows naming files relative to the folder as for image folders).

Files: animated GIFs (Pillow) and MP4 / MOV / WebM / AVI / MKV (imageio with its ffmpeg, the ``video`` extra); the
first 64 frames of each file are read (``modalities.video.read_clips``). Every frame is centre-cropped to a square
and resized to the clip size (``--image-size N``, or ``FOLDER:size=N``; default the first file's short side, at most
64), and each file is cut into non-overlapping windows of T frames (``FOLDER:frames=T``, default 8): a 24-frame GIF
gives three clips. Files shorter than T frames are skipped with a note. Clips are grayscale when every file is.
Labelled folders caption their classes ("a video of a dog running"), so ``--cond text`` works without a captions
file. The test split is every 10th file (all of its windows), so no file is in both splits; with fewer than 10 files
it is every 10th window.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..modalities.video import FFMPEG_SUFFIXES as FFMPEG_EXTS
from .dataset import ImageDataset, class_files, class_names, folder_captions

VIDEO_EXTS = FFMPEG_EXTS | {".gif"}
TEMPLATES = ["a video of a {x}", "a clip of a {x}", "footage of a {x}", "a {x}", "{x}"]
DEFAULT_FRAMES, MAX_SIZE = 8, 64


def split_source(source: str) -> tuple[Path, dict[str, int]]:
    """``clips/:frames=16,size=64`` -> (Path("clips"), {"frames": 16, "size": 64}); a plain folder has no options."""
    path, opts = Path(source).expanduser(), {}
    head, sep, tail = source.rpartition(":")
    if sep and tail and all("=" in kv for kv in tail.split(",")) and Path(head).expanduser().is_dir():
        path = Path(head).expanduser()
        for kv in tail.split(","):
            k, _, v = kv.partition("=")
            if k not in ("frames", "size") or not v.isdigit() or int(v) <= 0:
                raise UserError(f"--data {source}: a folder of clips takes frames=N and size=N (positive integers), got {kv!r}")
            opts[k] = int(v)
    return path, opts


def clip_files(root: Path) -> list[tuple[Path, int]]:
    """(file, class index or -1) of every video file under ``root``, in a fixed order."""
    return class_files(root, VIDEO_EXTS)


def is_video_folder(source: str) -> bool:
    """True when the folder's media are video files: MP4-like files and no still images or audio, or only GIFs of
    which the first (in name order) is animated."""
    from .audio_folder import AUDIO_EXTS
    from .sources import IMAGE_EXTS

    root, _ = split_source(source)
    if not root.is_dir():
        return False
    files = sorted(f for f in root.rglob("*") if f.is_file() and not f.name.startswith("."))
    kinds = {f.suffix.lower() for f in files} & (VIDEO_EXTS | IMAGE_EXTS | AUDIO_EXTS)
    if kinds & FFMPEG_EXTS:
        return not kinds - VIDEO_EXTS
    if kinds != {".gif"}:
        return False
    from PIL import Image, UnidentifiedImageError

    first = next(f for f in files if f.suffix.lower() == ".gif")
    try:
        with Image.open(first) as im:
            return getattr(im, "n_frames", 1) > 1
    except (OSError, UnidentifiedImageError):
        return False  # an unreadable first file: the image folder loader names it


def _square(v: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [1, C, T, H, W] -> [1, C, T, size, size]: centre crop to a square, then an antialiased resize."""
    h, w = v.shape[-2:]
    s = min(h, w)
    v = v[..., (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    if s == size:
        return v
    f = v[0].permute(1, 0, 2, 3).float()  # [T, C, s, s]
    f = F.interpolate(f, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return f.round().clamp(0, 255).to(torch.uint8).permute(1, 0, 2, 3)[None]


def load_video_folder(source: str, split: str, image_size: int | None = None, log=print) -> ImageDataset:
    """The ``split`` clips of a folder as uint8 [N, C, T, H, W], labelled by sub-folder where there are sub-folders."""
    from ..memory import check_fits
    from ..modalities.video import read_clips
    from .moving import FPS

    root, opts = split_source(source)
    frames, size = opts.get("frames", DEFAULT_FRAMES), opts.get("size", image_size)
    files = clip_files(root)
    if not files:
        raise UserError(f"no video files ({', '.join(sorted(VIDEO_EXTS))}) found in {root}")
    clips, owner, short = [], [], []
    for k, (f, _) in enumerate(files):
        v = read_clips(f, 3, "video file")  # uint8 [1, 3, T0, H, W], at most 64 frames
        if v.shape[2] < frames:
            short.append(f)
            continue
        if size is None:
            size = min(min(v.shape[-2:]), MAX_SIZE)
            check_fits(len(files) * (64 // frames) * frames * size * size * 3 * 2, f"{len(files)} clips at {size}x{size}",
                       hint="use --image-size")
        v = _square(v, size)
        for w in range(v.shape[2] // frames):
            clips.append(v[:, :, w * frames : (w + 1) * frames])
            owner.append(k)
    if short:
        log(f"skipped {len(short)} of {len(files)} video files shorter than {frames} frames (e.g. {short[0].relative_to(root)})")
    if not clips:
        raise UserError(f"no video file in {root} has {frames} frames (give {root}:frames=N for shorter clips)")
    x = torch.cat(clips)
    if bool((x[:, :1] == x[:, 1:]).all()):
        x = x[:, :1].contiguous()  # every file is grey: one channel
    own = torch.tensor(owner)
    by_file = len(files) >= 10
    test = (own % 10 == 0) if by_file else (torch.arange(len(x)) % 10 == 0)
    keep = test if split == "test" else ~test
    labelled = files[0][1] >= 0
    labels = torch.tensor([files[k][1] for k in owner]) if labelled else None
    classes = class_names(root) if labelled else []
    caps = folder_captions(classes, TEMPLATES, labels) if labelled else None
    names = [files[k][0].relative_to(root).as_posix() for k in owner]
    ds = ImageDataset(x, labels, classes, f"{root.name}-{frames}x{size}", names,
                      {"name": "video", "fps": FPS}, caps)
    idx = keep.nonzero()[:, 0]
    if not len(idx):
        raise UserError(f"{root} gives no {split} clips ({len(x)} in all); add video files")
    return ds.subset(idx)
