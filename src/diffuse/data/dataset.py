"""The in-memory dataset type and the model-space transforms every source and trainer shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..pixels import to_model_space, to_uint8  # noqa: F401 (the data layer's names for them)


@dataclass
class ImageDataset:
    """images: the items, uint8 [N, C, H, W] pixels, or float model-space tensors [N, *shape] of another modality
    (log-mels of audio); labels: int64 [N] or None; class_names: one per label. ``modality``: the record that reads
    and writes the items (modalities/), None for images."""

    images: torch.Tensor
    labels: torch.Tensor | None
    class_names: list[str]
    name: str
    files: list[str] | None = None  # image-folder sources: each image's path relative to the folder (captions files)
    modality: dict | None = None
    # per-item captions as (captions of each group, group of each item [N]); None: captions come from class names
    captions: tuple[list[list[str]], torch.Tensor] | None = None
    extra: dict[str, torch.Tensor] | None = None  # further per-item labels, e.g. {"pitch": [N]} of the notes

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """(C, H, W), (C, T, H, W) of clips, or the shape of another modality's items"""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def subset(self, idx: torch.Tensor) -> "ImageDataset":
        labels = self.labels[idx] if self.labels is not None else None
        files = [self.files[i] for i in idx.tolist()] if self.files is not None else None
        caps = None if self.captions is None else (self.captions[0], self.captions[1][idx])
        extra = None if self.extra is None else {k: v[idx] for k, v in self.extra.items()}
        return ImageDataset(self.images[idx], labels, self.class_names, self.name, files, self.modality, caps, extra)


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
    from ..errors import UserError

    if ds.modality is not None:
        raise UserError(f"--image-size is for images; {ds.name} is {ds.modality['name']}")
    return ImageDataset(resize_images(ds.images, size), ds.labels, ds.class_names, f"{ds.name}@{size}", ds.files)


def holdout_split(ds: ImageDataset, split: str) -> ImageDataset:
    """Deterministic split of a source without its own test set: every 10th item is ``test``."""
    idx = torch.arange(len(ds))
    keep = idx % 10 == 0 if split == "test" else idx % 10 != 0
    return ds.subset(idx[keep])


def class_names(root: Path) -> list[str]:
    """The classes of a dataset folder: its sub-folders' names, sorted, hidden ones skipped (none: unlabelled)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def class_files(root: Path, exts: set[str]) -> list[tuple[Path, int]]:
    """(file, class index or -1) of every file with a suffix in ``exts`` under a dataset folder, in a fixed order:
    sub-folders (``class_names``) are classes; a folder without any is one unlabelled set."""
    names = class_names(root)
    groups = [(i, sorted(f for f in (root / d).rglob("*") if f.suffix.lower() in exts)) for i, d in enumerate(names)]
    if not names:
        groups = [(-1, sorted(f for f in root.iterdir() if f.suffix.lower() in exts))]
    return [(f, i) for i, fs in groups for f in fs]


def folder_captions(names: list[str], templates: list[str], labels: torch.Tensor) -> tuple[list[list[str]], torch.Tensor]:
    """Captions of a labelled folder's classes, from the folder names ("ankle_boot" -> "an ankle boot", ...) put into
    ``templates``; the (captions per class, labels) pair an ImageDataset holds."""
    from ..text.captions import _article

    words = [s.replace("_", " ").replace("-", " ").lower() for s in names]
    return [[_article(t.format(x=w)) for t in templates] for w in words], labels
