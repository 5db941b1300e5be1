"""The checkpoint of a denoiser trainer (the diffusion trainer and the distiller write the same one):
RUN/state/state.safetensors holds the raw weights (``net.``), the EMA (``ema.``), the optimizer's moments (``opt.``)
and a JSON record (step, nimg, seconds, param groups, the model's fingerprint); RUN/model.safetensors holds the EMA
alone, for sampling. NaN or inf weights are never written; what is read back is checked against the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_into, load_optimizer, load_tensors, refuse_non_finite, save_tensors
from ..errors import UserError
from ..precond import Precond


def save_state(run: Path, model: Precond, ema: Precond, opt: torch.optim.Optimizer, step: int, nimg: int, seconds: float,
               fingerprint: str, **extra: Any) -> None:
    """State first, then the EMA export; each write is atomic. ``extra`` goes into the state's record."""
    refuse_non_finite(step, run, weights=model, EMA_weights=ema)
    tensors = {f"net.{k}": v for k, v in model.net.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.net.state_dict().items()})
    osd = opt.state_dict()
    for i, st in osd["state"].items():
        tensors.update({f"opt.{i}.{k}": v for k, v in st.items()})
    meta = {"step": step, "nimg": nimg, "seconds": seconds, "param_groups": osd["param_groups"], "fingerprint": fingerprint, **extra}
    save_tensors(run / "state" / "state.safetensors", tensors, meta)
    save_tensors(run / "model.safetensors", dict(ema.net.state_dict()), {"step": step, "nimg": nimg, "fingerprint": fingerprint})


def load_state(run: Path, model: Precond, ema: Precond, opt: torch.optim.Optimizer, fingerprint: str) -> dict:
    """Load RUN/state/state.safetensors into model, ema and opt; its record (step, nimg, seconds, ...), checked."""
    path = run / "state" / "state.safetensors"
    tensors, meta = load_tensors(path, "training state")
    if meta.get("fingerprint") != fingerprint:
        raise UserError(f"{path} was saved by a different model than {run / 'config.json'} describes")
    load_into(model.net, {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}, path)
    load_into(ema.net, {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}, path)
    if not (isinstance(meta.get("step"), int) and isinstance(meta.get("nimg"), int) and isinstance(meta.get("seconds"), (int, float))):
        raise UserError(f"{path}: its step / nimg / seconds record is damaged")
    load_optimizer(opt, tensors, "opt", meta.get("param_groups"), path)  # moments in their parameter's layout
    return meta


def memory_layout(net_shape: tuple[int, ...]) -> torch.memory_format:
    """The layout both trainers keep weights and batches in: channels_last (channels_last_3d for clips [C, T, H, W]);
    on the CPU the convolutions run fastest there."""
    return torch.channels_last_3d if len(net_shape) == 4 else torch.channels_last
