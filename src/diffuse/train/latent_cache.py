"""The training set's latents, encoded once per (autoencoder, data) and kept in $DIFFUSE_CACHE/latents/.

A latent run trains on a fresh posterior sample of each item's latent at every step, so it needs every item's posterior
(mean, std) before its first step: for moving-fmnist that is 480,000 frames through the encoder, about 9 minutes on a
2-core CPU in fp32. Later runs on the same autoencoder and data (replicates, sweeps, --resume, distillation) read them
back instead, as fast-DiT's extracted features and the latent-diffusion code bases' precomputed latents do.

The file's name hashes the autoencoder's weights and latent normalisation, the items' bytes and the encode's precision,
so a retrained autoencoder or changed data never reuse stale latents, and a run's copy of its autoencoder finds the
same file as the original. Files are safetensors (never unpickled), checked for their record, shape, dtype and
finiteness on the way in; one that fails is encoded again and replaced. The folder is kept under
DIFFUSE_LATENT_CACHE_GB gigabytes (8 by default; 0 turns the cache off) by removing the least recently used files, and
a write that fails (a full disk, no permission) is one warning line: the run goes on with the latents it has."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..cache import cache_dir
from ..checkpoint import load_tensors, save_tensors
from ..data import to_model_space
from ..errors import UserError

FORMAT = "diffuse-latents/1"
DEFAULT_CAP_GB = 8.0


def _warn(msg: str) -> None:
    print(msg, file=sys.stderr)


def cap_bytes() -> int:
    """The folder's size limit from DIFFUSE_LATENT_CACHE_GB (0: no cache); one error line for a bad value."""
    raw = os.environ.get("DIFFUSE_LATENT_CACHE_GB", str(DEFAULT_CAP_GB))
    try:
        gb = float(raw)
    except ValueError:
        gb = float("nan")
    if not (gb >= 0 and gb < float("inf")):
        raise UserError(f"DIFFUSE_LATENT_CACHE_GB={raw!r}: give a size in gigabytes (0 turns the latent cache off)")
    return int(gb * 2**30)


def cache_key(codec: Any, images: torch.Tensor, bf16: bool) -> str:
    """A hash of what the latents depend on: the autoencoder's weights and normalisation, the items, the precision."""
    h = hashlib.sha256(f"{FORMAT}|{codec.fingerprint}|bf16={bool(bf16)}|{tuple(images.shape)}|{images.dtype}".encode())
    for name, t in sorted(codec.ae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for t in (codec.mean, codec.std):
        h.update(t.detach().double().cpu().numpy().tobytes())
    h.update(memoryview(images.contiguous().numpy()).cast("B"))
    return h.hexdigest()[:24]


def _read(path: Path, key: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (mean, std) if the file is whole and is what the key promises; None (and a warning) otherwise."""
    try:
        tensors, meta = load_tensors(path, "latent cache")  # the whole file, checked by safetensors: no mmap to fault
        if meta.get("format") != FORMAT or meta.get("key") != key or set(tensors) != {"mean", "std"}:
            raise ValueError("its record does not match")
        mean, std = tensors["mean"], tensors["std"]
        for t in (mean, std):
            if tuple(t.shape) != shape or t.dtype != torch.float32 or not bool(torch.isfinite(t).all()):
                raise ValueError(f"a tensor is {tuple(t.shape)} {t.dtype} or not finite, expected {shape} float32")
        if not bool((std >= 0).all()):
            raise ValueError("a negative standard deviation")
    except (UserError, ValueError, OSError) as e:  # unreadable, not safetensors, or not what its name promises
        _warn(f"warning: the latent cache {path} is damaged ({str(e)[:120]}); encoding again")
        return None
    os.utime(path)  # recently used: the last to be evicted
    return mean, std


def _make_room(folder: Path, need: int, cap: int) -> bool:
    """Remove the least recently used cache files until ``need`` more bytes fit under ``cap``; False if they cannot."""
    if need > cap:
        return False
    files = sorted((p for p in folder.glob("*.safetensors") if p.is_file()), key=lambda p: p.stat().st_mtime)
    total = sum(p.stat().st_size for p in files)
    while files and total + need > cap:
        old = files.pop(0)
        total -= old.stat().st_size
        old.unlink(missing_ok=True)
    return True


def cached_posterior(codec: Any, images: torch.Tensor, bf16: bool = False, write: bool = True,
                     say: Callable[[str], None] = _warn) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised posterior (mean, std) of every item of ``images`` (the dataset's stored items): read from the
    cache, or encoded (``codec.posterior``) and, if ``write``, cached. ``say`` gets one line about which."""
    cap = cap_bytes()
    if cap == 0:
        return codec.posterior(to_model_space(images), bf16=bf16)
    key = cache_key(codec, images, bf16)
    folder = cache_dir() / "latents"
    path = folder / f"{key}.safetensors"
    shape = (len(images), *codec.latent_shape)
    if path.is_file():
        got = _read(path, key, shape)
        if got is not None:
            say(f"latents: the posteriors of {len(images):,} items read from the cache ({path})")
            return got
    t0 = time.monotonic()
    mean, std = codec.posterior(to_model_space(images), bf16=bf16)
    took = time.monotonic() - t0
    if not write:
        return mean, std
    size = 2 * mean.numel() * 4
    try:
        if not _make_room(folder, size, cap):
            say(f"latents: {len(images):,} items encoded in {took:.0f} s; not cached ({size / 2**30:.2f} GB is over "
                f"DIFFUSE_LATENT_CACHE_GB)")
            return mean, std
        save_tensors(path, {"mean": mean, "std": std}, {"format": FORMAT, "key": key, "items": len(images),
                                                        "autoencoder": codec.path, "bf16": bool(bf16)})
    except (UserError, OSError) as e:
        _warn(f"warning: could not cache the latents ({str(e)[:160]}); training goes on without the cache")
        return mean, std
    say(f"latents: {len(images):,} items encoded in {took:.0f} s and cached ({size / 2**30:.2f} GB in {path}; "
        f"DIFFUSE_LATENT_CACHE_GB=0 turns this off)")
    return mean, std
