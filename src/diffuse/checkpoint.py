"""Atomic, pickle-free files: tensors in safetensors, everything else in JSON.

Every write goes to a temporary file in the same folder, is fsynced, then renamed over the target, so
killing the process at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import UserError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync of the folder). A failed write (disk
    full, read-only, no permission) removes its temp file, leaves the old ``path`` as it was, and raises one
    UserError line."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e} (what was there before is unchanged)") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    try:  # make the rename durable; best effort: some file systems cannot fsync a folder, and the file is in place
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def open_log(path: Path):
    """Open an append-only JSON-lines log; a torn last line (the process was killed mid-write) is cut first, so
    the next record starts on a line of its own."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size:
            with open(path, "rb+") as f:
                data = f.read()
                if not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        return open(path, "a")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def all_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is finite (no NaN or inf)."""
    return all(bool(torch.isfinite(t).all()) for t in (*module.parameters(), *module.buffers()) if t.is_floating_point())


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path, what: str = "file") -> Any:
    """Read JSON with a one-line error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{what} {path} is not valid JSON ({e})") from None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None) -> None:
    """Atomically write tensors (made contiguous, on CPU) and a JSON metadata blob to a safetensors file."""
    t = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, st_save(t, metadata={"json": json.dumps(meta or {})}))


def load_tensors(path: Path, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by ``save_tensors``: (tensors, metadata). Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get("json", "{}"))
    except (SafetensorError, ValueError, json.JSONDecodeError, UnicodeDecodeError, RecursionError, AttributeError) as e:
        raise UserError(f"{what} {path} is corrupt or not a safetensors file ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(meta, dict):
        raise UserError(f"{what} {path} has metadata this version does not understand (not a JSON object)")
    return tensors, meta


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """load_state_dict with a one-line error when the checkpoint belongs to another model."""
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    bad = [k for k in own if k in tensors and tensors[k].shape != own[k].shape]
    wrong = [k for k in own if k in tensors and own[k].is_floating_point() and not tensors[k].is_floating_point()]
    if wrong:
        raise UserError(f"checkpoint {source} holds non-float weights (e.g. {wrong[0]}: {tensors[wrong[0]].dtype})")
    if missing or extra or bad:
        detail = (f"{len(missing)} missing, {len(extra)} unexpected, {len(bad)} mis-shaped tensors"
                  + (f", e.g. {bad[0]}: {tuple(tensors[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}" if bad else "")
                  + (f", e.g. missing {missing[0]}" if missing and not bad else ""))
        raise UserError(f"checkpoint {source} does not match this model's config ({detail})")
    nonfinite = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise UserError(f"checkpoint {source} holds NaN/inf weights (e.g. {nonfinite[0]}): restore a good copy, or retrain")
    module.load_state_dict(tensors)


def refuse_non_finite(step: int, run: Path, **modules: torch.nn.Module) -> None:
    """Every trainer calls this before it saves: a NaN or inf that reached the weights never reaches a checkpoint."""
    bad = [name.replace("_", " ") for name, m in modules.items() if not all_finite(m)]
    if bad:
        raise UserError(f"the {' and '.join(bad)} became NaN/inf by step {step}, so they were not saved; the last good "
                        f"checkpoint in {run} is kept: try a lower --lr, then --resume")


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str, groups: Any, source: Path) -> None:
    """Restore an Adam-family optimizer from ``prefix.<i>.<name>`` tensors and its JSON param groups, checking that
    every parameter's state is complete and shaped like the parameter (one UserError line otherwise)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith(prefix + "."):
            _, i, name = k.split(".", 2)
            if not i.isdigit():
                raise UserError(f"{source}: unexpected optimizer tensor {k}")
            state.setdefault(int(i), {})[name] = v
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        st = state.get(i)
        if st is None and not state:
            continue  # a step-0 checkpoint: no moments yet
        ok = st is not None and {"step", "exp_avg", "exp_avg_sq"} <= set(st) and st["step"].numel() == 1 and all(
            st[k].shape == p.shape and st[k].is_floating_point() for k in ("exp_avg", "exp_avg_sq"))
        if not ok or not all(bool(torch.isfinite(v.float()).all()) for v in st.values()):
            raise UserError(f"{source}: the optimizer state of parameter {i} is missing, mis-shaped or not finite (a damaged checkpoint)")
        for k in ("exp_avg", "exp_avg_sq"):
            st[k] = st[k].to(p.dtype)
        st["step"] = st["step"].float().reshape(())
    if len(state) > len(params):
        raise UserError(f"{source}: optimizer state for {len(state)} parameters, but the model has {len(params)}")
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise UserError(f"{source}: optimizer state this version does not understand ({str(e)[:120]})") from None
    # Give moment buffers their parameter's memory layout (channels_last), as a fresh run has: the fused
    # Adam kernels walk parameter, gradient and moments in storage order.
    for p, st in opt.state.items():
        for k, v in st.items():
            if v.shape == p.shape and v.stride() != p.stride():
                st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)
