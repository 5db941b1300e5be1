"""Image grids and files (Pillow only)."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from .checkpoint import atomic_write_bytes
from .errors import UserError


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


def png_bytes(array: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """A uint8 [H, W, C] array (C = 1 or 3) as PNG, with ``text`` in tEXt chunks (key -> value)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    img = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    info = PngInfo()
    for k, v in (text or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(path: Path, array: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Atomically write a uint8 [H, W, C] array (C = 1 or 3) as PNG, with ``text`` chunks."""
    atomic_write_bytes(Path(path), png_bytes(array, text))


def save_grid(path: Path, images: torch.Tensor, labels: torch.Tensor | None = None, ncol: int | None = None,
              text: dict[str, str] | None = None) -> None:
    """Write a sample grid PNG; with labels, one row per class. Small images are upscaled to be visible."""
    if labels is not None and len(labels.unique()) > 1:
        per_class = int(torch.bincount(labels).max())
        images, ncol = class_rows(images, labels), ncol or per_class
    scale = max(1, 64 // min(images.shape[-2:]))
    save_png(path, make_grid(images, ncol, scale=scale), text)


# Images a user hands us are checked against this before decoding: 64 megapixels is far beyond any model here,
# and Pillow's own decompression-bomb limit (about 179 MP, then an error) would let a 170 MP file through.
MAX_INPUT_PIXELS = 1 << 26


def read_image(path: Path, gray: bool | None, what: str = "image", max_pixels: int = MAX_INPUT_PIXELS) -> np.ndarray:
    """One image file as uint8 [H, W] (``gray``) or [H, W, 3]; ``gray=None`` keeps grayscale files grayscale.
    Palette, CMYK, alpha (dropped), 16-bit (scaled to 8 bits) and float images are converted; truncated or
    unreadable files, decompression bombs and non-finite pixels are one UserError line."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    from .errors import UserError

    where = f"{what} {path}" if isinstance(path, (str, Path)) else what  # path may be an in-memory upload
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels or w < 1 or h < 1:
                    raise UserError(f"{where} is {w}x{h} pixels; at most {max_pixels:,} pixels are read")
                im.load()
                return _to_uint8_array(im, gray, what, path)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):  # its message names a file object, not the user's file
            raise UserError(f"cannot read {where}: not an image format Pillow reads (PNG, JPEG, WebP, ...)") from None
        raise UserError(f"cannot read {where}: {type(e).__name__}: {str(e)[:160]}") from None


def _to_uint8_array(im, gray: bool | None, what: str, path: Path) -> np.ndarray:
    from .errors import UserError

    if gray is None:
        gray = im.mode in ("L", "LA", "1", "I;16", "I;16B", "I;16L", "I", "F")
    if im.mode.startswith("I") or im.mode == "F":  # 16/32-bit integer or float: scale to 8 bits ourselves
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise UserError(f"{what} {path} has non-finite (NaN or inf) pixels")
        top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return arr if gray else np.repeat(arr[..., None], 3, axis=-1)
    return np.asarray(im.convert("L" if gray else "RGB"))


def read_images(path: Path, channels: int, what: str) -> torch.Tensor:
    """A PNG/JPEG (one image) or .npz (``images`` uint8 [N, H, W, C]) as uint8 [N, C, H, W] with ``channels``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arr = z["images"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # corrupt, no 'images', object array
            raise UserError(f"cannot read {what} {path}: {type(e).__name__}: {str(e)[:160]}") from None
        if arr.ndim != 4 or arr.dtype != np.uint8 or arr.shape[-1] != channels:
            raise UserError(f"{what} {path}: 'images' must be uint8 [N, H, W, {channels}], got {arr.dtype} {list(arr.shape)}")
        return torch.from_numpy(arr.copy()).permute(0, 3, 1, 2).contiguous()
    arr = read_image(path, channels == 1, what)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].contiguous()
