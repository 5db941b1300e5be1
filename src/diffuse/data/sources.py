"""Readers for each data source. Each returns an ImageDataset of uint8 [N, C, H, W]."""

from __future__ import annotations

import gzip
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .dataset import ImageDataset, class_files, class_names, holdout_split

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MAX_CLASSES = 100_000
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def load_digits(split: str) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (values 0..16), scaled to uint8; every 10th image is the test split."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    images = torch.from_numpy(np.round(d.images * (255 / 16)).astype(np.uint8))[:, None]  # [N, 1, 8, 8]
    ds = ImageDataset(images, torch.from_numpy(d.target).long(), [str(i) for i in range(10)], "digits")
    return holdout_split(ds, split)


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file (LeCun's MNIST format) into a uint8 array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not a uint8 IDX file")
        dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
        return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise UserError(f"corrupt IDX file {path}: {e}") from None


def _fashion_dir(data_dir: str | None) -> Path:
    candidates = [Path(p).expanduser() for p in (data_dir, os.environ.get("DIFFUSE_DATA")) if p]
    candidates.append(Path(FASHION_DEBIAN_DIR))
    for c in candidates:
        for d in (c, c / "fashion-mnist"):
            if all((d / f).is_file() for pair in FASHION_FILES.values() for f in pair):
                return d
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffuse" / "fashion-mnist"
    if all((cache / f).is_file() for pair in FASHION_FILES.values() for f in pair):
        return cache
    try:
        import urllib.request

        if os.environ.get("DIFFUSE_NO_DOWNLOAD"):
            raise OSError("downloads disabled by DIFFUSE_NO_DOWNLOAD")
        cache.mkdir(parents=True, exist_ok=True)
        for pair in FASHION_FILES.values():
            for f in pair:
                tmp = cache / (f + ".part")
                with urllib.request.urlopen(FASHION_URL + f, timeout=10) as r, open(tmp, "wb") as out:
                    out.write(r.read())
                tmp.replace(cache / f)
        return cache
    except OSError:  # no network (urllib's URLError is an OSError), a refused download, or a read-only cache
        raise UserError(
            "Fashion-MNIST not found. Either (1) pass --data-dir DIR or set DIFFUSE_DATA to a folder holding the four "
            "IDX .gz files, (2) install the Debian package: apt-get install dataset-fashion-mnist "
            f"(files in {FASHION_DEBIAN_DIR}), or (3) allow network access so it can be downloaded to {cache}"
        ) from None


def load_fashion_mnist(split: str, data_dir: str | None = None) -> ImageDataset:
    """Fashion-MNIST (Xiao et al. 2017), 28x28 grayscale, 10 classes; ``test`` is the official t10k split."""
    d = _fashion_dir(data_dir)
    img_file, lab_file = FASHION_FILES[split]
    images = read_idx(d / img_file)  # [N, 28, 28]
    labels = read_idx(d / lab_file)  # [N]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"Fashion-MNIST files in {d} have unexpected shapes {images.shape} / {labels.shape}")
    return ImageDataset(torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64)), FASHION_CLASSES, "fashion-mnist")


def load_image_folder(root: Path, image_size: int | None = None) -> ImageDataset:
    """A folder of images; sub-folders are classes (sorted by name). Images are resized to ``image_size``
    (default: the first image's size, which must then be square) and kept grayscale if all are grayscale."""
    from PIL import Image

    from ..images import read_image

    names = class_names(root)
    files = class_files(root, IMAGE_EXTS)
    if not files:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) found in {root}")
    arrays = [read_image(f, None, "image") for f, _ in files]  # uint8 [H, W] (grayscale) or [H, W, 3]
    labels = [i for _, i in files]
    gray = all(a.ndim == 2 for a in arrays)
    size = image_size or arrays[0].shape[1]
    from ..memory import check_fits

    check_fits(len(arrays) * size * size * (1 if gray else 3) * 2, f"{len(arrays)} images at {size}x{size}", hint="use --image-size")

    def fit(a: np.ndarray) -> np.ndarray:
        a = a if gray or a.ndim == 3 else np.repeat(a[..., None], 3, axis=-1)
        return np.asarray(Image.fromarray(a).resize((size, size), Image.BICUBIC))

    arr = np.stack([fit(a) for a in arrays])
    t = torch.from_numpy(arr)
    t = t[:, None] if gray else t.permute(0, 3, 1, 2)
    has_labels = bool(names)
    return ImageDataset(t.contiguous(), torch.tensor(labels) if has_labels else None, names, root.name,
                        [f.relative_to(root).as_posix() for f, _ in files])


def load_npz(path: Path) -> ImageDataset:
    """An .npz with ``images`` (uint8 [N, H, W] or [N, H, W, C], or float in [0, 1]) and optional ``labels`` [N]."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z:
                raise UserError(f"{path} has no 'images' array (found: {', '.join(z.files)})")
            images = z["images"]
            labels = z["labels"] if "labels" in z else None
            names = [str(s) for s in np.atleast_1d(z["class_names"])] if "class_names" in z else None
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as e:  # corrupt archive, object arrays
        raise UserError(f"cannot read {path}: {e}") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[1] != images.shape[2] or not len(images) or images.shape[-1] not in (1, 3):
        raise UserError(f"{path}: images must be [N, H, W] or [N, H, W, C] with N > 0, H == W and C 1 or 3, got {images.shape}")
    if images.dtype.kind == "f":
        if not np.isfinite(images).all():
            raise UserError(f"{path}: images hold non-finite values (NaN or inf)")
        images = np.clip(np.round(images.astype(np.float64) * 255), 0, 255).astype(np.uint8)  # float images are in [0, 1]
    elif images.dtype.kind in "iu" and images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise UserError(f"{path}: integer images must be 0..255 (got {images.min()}..{images.max()}); store uint8 or floats in [0, 1]")
        images = images.astype(np.uint8)
    elif images.dtype != np.uint8:
        raise UserError(f"{path}: images must be uint8, integers 0..255 or floats in [0, 1], not {images.dtype}")
    t = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    if labels is None:
        return ImageDataset(t, None, [], path.stem)
    labels = np.asarray(labels)
    if labels.shape != (len(t),) or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise UserError(f"{path}: labels must be {len(t)} integers in 0..{MAX_CLASSES - 1}, got {labels.dtype} {list(labels.shape)}")
    lab = torch.from_numpy(labels.astype(np.int64))
    k = int(lab.max()) + 1
    return ImageDataset(t, lab, names if names and len(names) >= k else [str(i) for i in range(k)], path.stem)
