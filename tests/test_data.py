"""Data sources and the batch iterator."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffuse.data import get_batch, load_dataset
from diffuse.data.sources import FASHION_DEBIAN_DIR
from diffuse.errors import UserError


def test_digits():
    tr, te = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert tr.shape == (1, 8, 8) and tr.images.dtype == torch.uint8
    assert len(tr) + len(te) == 1797 and tr.num_classes == 10
    x, y = get_batch(tr, 32, 0, seed=0)
    assert x.min() >= -1 and x.max() <= 1 and x.shape == (32, 1, 8, 8) and y.shape == (32,)


def test_batches_cover_each_epoch_and_are_reproducible():
    ds = load_dataset("digits", "train")
    per_epoch = len(ds) // 100
    seen = torch.cat([get_batch(ds, 100, s, seed=3)[1] for s in range(per_epoch)])
    assert torch.equal(torch.bincount(seen, minlength=10)[:10].sum(), torch.tensor(per_epoch * 100))
    a, b = get_batch(ds, 16, 5, seed=3, flip=True), get_batch(ds, 16, 5, seed=3, flip=True)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(get_batch(ds, 16, 5, seed=4)[0], a[0])


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_from_data_dir(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))
    ds = load_dataset("fashion-mnist", "test", data_dir=str(tmp_path))
    assert ds.shape == (1, 28, 28) and len(ds) == 5 and ds.class_names[9] == "Ankle boot"


@pytest.mark.skipif(not Path(FASHION_DEBIAN_DIR).is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_package():
    ds = load_dataset("fashion-mnist", "test")
    assert len(ds) == 10_000 and torch.bincount(ds.labels).tolist() == [1000] * 10


def test_fashion_mnist_missing_lists_all_options(tmp_path, monkeypatch):
    import diffuse.data.sources as src

    monkeypatch.setattr(src, "FASHION_DEBIAN_DIR", str(tmp_path / "nope"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("DIFFUSE_DATA", raising=False)
    with pytest.raises(UserError) as e:
        load_dataset("fashion-mnist", "train")
    msg = str(e.value)
    assert "--data-dir" in msg and "apt-get install dataset-fashion-mnist" in msg and "download" in msg


def test_image_folder_with_classes_and_corrupt_file(tmp_path):
    for ci, cls in enumerate(["cat", "dog"]):
        (tmp_path / cls).mkdir()
        for i in range(10):
            Image.fromarray(np.full((12, 12), 20 * i + ci, np.uint8)).save(tmp_path / cls / f"{i}.png")
    tr = load_dataset(str(tmp_path), "train")
    te = load_dataset(str(tmp_path), "test")
    assert tr.class_names == ["cat", "dog"] and len(tr) + len(te) == 20 and tr.shape == (1, 12, 12)
    (tmp_path / "dog" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="cannot read image"):
        load_dataset(str(tmp_path), "train")


def test_npz(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", images=imgs, labels=np.arange(30) % 3)
    ds = load_dataset(str(tmp_path / "d.npz"), "train")
    assert ds.shape == (3, 16, 16) and ds.num_classes == 3
    assert torch.equal(ds.images[0], torch.from_numpy(imgs[1]).permute(2, 0, 1))  # item 0 is in the test split
    np.savez(tmp_path / "bad.npz", pixels=imgs)
    with pytest.raises(UserError, match="no 'images'"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_unknown_and_missing():
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(UserError, match="not found"):
        load_dataset("/no/such/dir/data.npz")
