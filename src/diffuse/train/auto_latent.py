"""``--latent auto``: the autoencoder a latent recipe needs, trained by the training command itself and cached.

AudioLDM (Liu et al. 2023) diffuses in a KL autoencoder's latents. So that one command, ``diffuse train --data
notes --cond text --minutes 10 --latent auto``, yields a latent run, it first looks for an autoencoder in the cache
(``$DIFFUSE_CACHE/autoencoders/``), keyed by the data and the budget below, and trains one there if there is none
(or finishes one a kill interrupted). Its time counts against ``--minutes``:

- with ``--minutes M`` the autoencoder gets ``AUTO_SHARE * M`` minutes (3 of 10), and the diffusion the rest of
  the M minutes, less whatever the autoencoder took in all (its latent statistics and test PSNR included);
- with ``--steps S`` only, it trains ``min(S, AUTO_MAX_STEPS)`` steps;
- with the autoencoder already cached, the diffusion gets the whole budget.

The run copies the autoencoder into ``RUN/autoencoder/`` as for ``--latent DIR``, so it stays self-contained.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path

from ..codecs.autoencoder import AE_FORMAT
from ..cache import cache_dir
from ..errors import UserError

AUTO_SHARE = 0.3
AUTO_MAX_STEPS = 2000


def auto_budget(minutes: float | None, steps: int | None) -> dict:
    """The autoencoder's share of a run's budget."""
    if minutes is not None:
        return {"minutes": AUTO_SHARE * minutes, **({"steps": min(steps, AUTO_MAX_STEPS)} if steps else {})}
    return {"steps": min(steps or AUTO_MAX_STEPS, AUTO_MAX_STEPS)}


def auto_dir(data: str, data_dir: str | None, image_size: int | None, seed: int, budget: dict) -> Path:
    """Where the autoencoder for this data and budget is cached."""
    key = {"format": AE_FORMAT, "data": data, "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
           "image_size": image_size, "seed": seed, **budget}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "autoencoders" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', data)[:40]}-{digest}"


def is_complete(ae_dir: Path) -> bool:
    try:
        return "latent" in json.loads((ae_dir / "config.json").read_text())
    except (OSError, ValueError):
        return False


def ensure_autoencoder(data: str, data_dir: str | None, image_size: int | None, seed: int, minutes: float | None,
                       steps: int | None) -> tuple[Path, float]:
    """The cached autoencoder's directory, trained (or finished) first if need be; and the seconds that took."""
    from .autoencoder import AETrainConfig, train_autoencoder

    budget = auto_budget(minutes, steps)
    out = auto_dir(data, data_dir, image_size, seed, budget)
    if is_complete(out):
        print(f"autoencoder: cached in {out}", file=sys.stderr)
        return out, 0.0
    t0 = time.monotonic()
    what = f"{budget['minutes']:g} minutes" if "minutes" in budget else f"{budget['steps']} steps"
    resume = (out / "config.json").is_file()
    print(f"autoencoder: {'finishing the one a stop interrupted' if resume else f'none cached for {data}; training one'} "
          f"for {what} in {out} (--latent auto)", file=sys.stderr)
    cfg = AETrainConfig(data=data, data_dir=data_dir, image_size=image_size, out=str(out), seed=seed, **budget)

    def progress(rec: dict) -> None:
        print(f"autoencoder step {rec['step']}: L1 {rec['l1']:.4f}, {rec['seconds']:.0f} s", file=sys.stderr)

    res = train_autoencoder(cfg, resume=resume, progress=progress, log=lambda m: print(m, file=sys.stderr), report=False)
    if res.get("interrupted"):
        raise UserError(f"stopped while training the autoencoder in {out}; the same command resumes it")
    seconds = time.monotonic() - t0
    print(f"autoencoder: {res['step']} steps, test PSNR {res['psnr']:.1f} dB, {seconds:.0f} s in all", file=sys.stderr)
    return out, seconds
