"""Datasets as in-memory uint8 tensors, and a tensor-only batch iterator that yields images in [-1, 1].

Sources: ``digits`` (scikit-learn's bundled 8x8 digits, the embedded default), ``fashion-mnist`` (IDX
files), a folder of images (class sub-folders become labels), ``.npz`` arrays, and audio: ``notes`` (FluidSynth
renders of single notes as log-mels, data/notes.py) and a folder of audio files (data/audio_folder.py); video:
``moving-fmnist`` and ``moving-digits`` (data/moving.py) and a folder of video files (data/video_folder.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from .dataset import ImageDataset, holdout_split, resize_dataset, resize_images, to_model_space, to_uint8  # noqa: F401


def load_dataset(source: str, split: str = "train", data_dir: str | None = None, image_size: int | None = None) -> ImageDataset:
    """Load ``digits``, ``fashion-mnist``, ``notes``, an image or audio folder or a ``.npz`` file; split is ``train`` or ``test``.
    ``image_size``: every image resized to that size (image folders resize while loading)."""
    from . import sources

    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    if source == "notes" or source.startswith("notes:"):
        return _notes(source, split, image_size)
    from .moving import is_moving, moving_dataset

    if is_moving(source):
        if image_size:
            raise UserError(f"--image-size is for images; give {source.split(':')[0]}:size=N for larger clips")
        return moving_dataset(source, split)
    from .video_folder import is_video_folder, load_video_folder

    if is_video_folder(source):
        return load_video_folder(source, split, image_size)
    p = Path(source).expanduser()
    if image_size and not p.is_dir():
        return resize_dataset(load_dataset(source, split, data_dir), image_size)
    if source == "digits":
        return sources.load_digits(split)
    if source in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return sources.load_fashion_mnist(split, data_dir)
    if p.is_dir():
        from .audio_folder import is_audio_folder, load_audio_folder

        if is_audio_folder(p):
            if image_size:
                raise UserError(f"--image-size is for images; {source} is a folder of audio files")
            return holdout_split(load_audio_folder(p), split)
    if p.is_dir():
        return holdout_split(sources.load_image_folder(p, image_size), split)
    if p.suffix == ".npz" and p.is_file():
        return holdout_split(sources.load_npz(p), split)
    if p.suffix == ".npz" or p.parent != Path(".") or "/" in source:
        raise UserError(f"data path not found: {source}")
    raise UserError(f"unknown dataset {source!r}: use digits, fashion-mnist, a folder of images or a .npz file")


def modality_name(source: str) -> str:
    """The modality a data source holds, before loading it: "audio" for the notes and folders of audio files."""
    if source == "notes" or source.startswith("notes:"):
        return "audio"
    from .moving import is_moving

    if is_moving(source):
        return "video"
    from .video_folder import is_video_folder

    if is_video_folder(source):
        return "video"
    p = Path(source).expanduser()
    if p.is_dir():
        from .audio_folder import is_audio_folder

        return "audio" if is_audio_folder(p) else "image"
    return "image"


def _notes(source: str, split: str, image_size: int | None) -> ImageDataset:
    """``notes`` (data/notes.py), or ``notes:N``: N clips of the split, spread evenly (tests, quick looks)."""
    from ..modalities.audio import AudioModality
    from ..audio.mel import MelConfig
    from .notes import notes_dataset

    if image_size:
        raise UserError("--image-size is for images; the notes are log-mels of a fixed size")
    limit = None
    if ":" in source:
        try:
            limit = int(source.split(":", 1)[1])
        except ValueError:
            limit = 0
        if limit <= 0:
            raise UserError(f"--data {source}: give notes:N with N a positive number of clips")
    return notes_dataset(split, AudioModality(MelConfig()), limit)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, step, stream), so a resumed run draws exactly what an
    uninterrupted one would, with no RNG state to save."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def batch_index(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Dataset indices [B] of batch number ``step``: epoch e walks the permutation drawn from (seed, e)."""
    if batch_size > n:
        raise UserError(f"batch size {batch_size} is larger than the dataset ({n} images)")
    epoch, pos = divmod(step, n // batch_size)
    perm = torch.randperm(n, generator=step_generator(seed, epoch, stream=1))
    return perm[pos * batch_size : (pos + 1) * batch_size]


def get_batch(ds: ImageDataset, batch_size: int, step: int, seed: int, flip: bool = False,
              idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batch number ``step`` of a shuffled epoch-by-epoch pass: x [B, C, H, W] float in [-1, 1], labels [B] or None.

    Epoch e uses the permutation drawn from (seed, e); all indexing stays in tensors. ``idx``: these items instead
    (a weighted draw, train/batches.py).
    """
    idx = batch_index(len(ds), batch_size, step, seed) if idx is None else idx
    x = to_model_space(ds.images[idx])  # [B, C, H, W]
    if flip:
        mask = torch.rand(batch_size, generator=step_generator(seed, step, stream=2)) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x, (ds.labels[idx] if ds.labels is not None else None)
