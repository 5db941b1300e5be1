"""Datasets as in-memory uint8 tensors, and a tensor-only batch iterator that yields images in [-1, 1].

Sources: ``digits`` (scikit-learn's bundled 8x8 digits, the embedded default), ``fashion-mnist`` (IDX
files), a folder of images (class sub-folders become labels) and ``.npz`` arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UserError


@dataclass
class ImageDataset:
    """images: uint8 [N, C, H, W]; labels: int64 [N] or None; class_names: one per label."""

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    name: str
    files: list[str] | None = None  # image-folder sources: each image's path relative to the folder (captions files)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W)"""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def subset(self, idx: torch.Tensor) -> "ImageDataset":
        labels = self.labels[idx] if self.labels is not None else None
        files = [self.files[i] for i in idx.tolist()] if self.files is not None else None
        return ImageDataset(self.images[idx], labels, self.class_names, self.name, files)


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] in [0, 255] -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 [0, 255], rounded and clipped."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size] (bilinear with antialiasing; unchanged when already that size)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    import torch.nn.functional as F

    from ..memory import check_fits

    check_fits(images.shape[0] * images.shape[1] * size * size * 9, f"{images.shape[0]} images at {size}x{size}",
               hint="use a smaller --image-size")

    x = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def resize_dataset(ds: ImageDataset, size: int) -> ImageDataset:
    """The dataset with every image resized to size x size (e.g. Fashion-MNIST at 64x64)."""
    return ImageDataset(resize_images(ds.images, size), ds.labels, ds.class_names, f"{ds.name}@{size}", ds.files)


def holdout_split(ds: ImageDataset, split: str) -> ImageDataset:
    """Deterministic split of a source without its own test set: every 10th item is ``test``."""
    idx = torch.arange(len(ds))
    keep = idx % 10 == 0 if split == "test" else idx % 10 != 0
    return ds.subset(idx[keep])


def load_dataset(source: str, split: str = "train", data_dir: str | None = None, image_size: int | None = None) -> ImageDataset:
    """Load ``digits``, ``fashion-mnist``, an image folder or a ``.npz`` file; split is ``train`` or ``test``.
    ``image_size``: every image resized to that size (image folders resize while loading)."""
    from . import sources

    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    if image_size and not Path(source).expanduser().is_dir():
        return resize_dataset(load_dataset(source, split, data_dir), image_size)
    if source == "digits":
        return sources.load_digits(split)
    if source in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return sources.load_fashion_mnist(split, data_dir)
    p = Path(source).expanduser()
    if p.is_dir():
        return holdout_split(sources.load_image_folder(p, image_size), split)
    if p.suffix == ".npz" and p.is_file():
        return holdout_split(sources.load_npz(p), split)
    if p.suffix == ".npz" or p.parent != Path(".") or "/" in source:
        raise UserError(f"data path not found: {source}")
    raise UserError(f"unknown dataset {source!r}: use digits, fashion-mnist, a folder of images or a .npz file")


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


def get_batch(ds: ImageDataset, batch_size: int, step: int, seed: int, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Batch number ``step`` of a shuffled epoch-by-epoch pass: x [B, C, H, W] float in [-1, 1], labels [B] or None.

    Epoch e uses the permutation drawn from (seed, e); all indexing stays in tensors.
    """
    idx = batch_index(len(ds), batch_size, step, seed)
    x = to_model_space(ds.images[idx])  # [B, C, H, W]
    if flip:
        mask = torch.rand(batch_size, generator=step_generator(seed, step, stream=2)) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(-1), x)
    return x, (ds.labels[idx] if ds.labels is not None else None)
