"""Image grids and files (Pillow only)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_bytes


def make_grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2, scale: int = 1) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [H', W', C] grid, ``ncol`` images per row, ``scale``x nearest upscaling."""
    n, c, h, w = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()  # [N, H, W, C]
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = arr[i]
    if scale > 1:
        grid = grid.repeat(scale, 0).repeat(scale, 1)
    return grid


def class_rows(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Reorder images so that a grid with one column per sample of a class shows one row per class."""
    return images[torch.argsort(labels, stable=True)]


def save_png(path: Path, array: np.ndarray) -> None:
    """Atomically write a uint8 [H, W, C] array (C = 1 or 3) as PNG."""
    from PIL import Image

    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(Path(path), buf.getvalue())


def save_grid(path: Path, images: torch.Tensor, labels: torch.Tensor | None = None, ncol: int | None = None) -> None:
    """Write a sample grid PNG; with labels, one row per class. Small images are upscaled to be visible."""
    if labels is not None and len(labels.unique()) > 1:
        per_class = int(torch.bincount(labels).max())
        images, ncol = class_rows(images, labels), ncol or per_class
    scale = max(1, 64 // images.shape[-1])
    save_png(path, make_grid(images, ncol, scale=scale))
