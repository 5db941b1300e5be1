"""Will it fit? Peak-memory estimates made before anything large is allocated, so a request that cannot fit gets
one clear line instead of an out-of-memory kill.

The activation peak of a network is measured, not modelled: one forward pass runs on the ``meta`` device
(shapes only, no arithmetic, no memory) under a dispatch mode that adds up the bytes of the tensors alive at
each moment. That works for any network, any modality and any batch size in tens of milliseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import weakref
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import UserError

# Real CPU kernels need workspace beyond the tensors they return (im2col, oneDNN buffers, allocator slack):
# measured at batch 512 on the Fashion-MNIST presets, peak resident growth of one forward pass was 1.44x the
# traced tensor peak for the U-Net and 1.31x for the DiT; 2x leaves room for other kernels and devices.
OVERHEAD = 2.0
PEAK_CACHE_VERSION = 1  # bump when the tracing changes what it counts


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of every storage created inside the mode that is still referenced, and their peak."""

    def __init__(self, external: set[int]) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.refs: dict[int, int] = {}
        self.external = external  # storages that exist already (weights, inputs): their views cost nothing

    def _release(self, key: int, nbytes: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key, nbytes = storage._cdata, storage.nbytes()
                if key in self.external:
                    continue
                if key not in self.refs:
                    self.refs[key] = 0
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                self.refs[key] += 1
                weakref.finalize(t, self._release, key, nbytes)
        return out


def meta_like(x: Any) -> Any:
    """The same structure (tensor, dict, list, dataclass such as Cond, None) with every tensor replaced by an empty
    one on ``meta``."""
    if isinstance(x, torch.Tensor):
        return torch.empty(x.shape, dtype=x.dtype, device="meta")
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.replace(x, **{f.name: meta_like(getattr(x, f.name)) for f in dataclasses.fields(x)})
    if isinstance(x, dict):
        return {k: meta_like(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(meta_like(v) for v in x)
    return x


class _Method(torch.nn.Module):
    """``module.<method>`` as a module's forward, so functional_call can run any method with swapped-in tensors."""

    def __init__(self, module: torch.nn.Module, method: str):
        super().__init__()
        self.m, self.method = module, method

    def forward(self, *args: Any) -> Any:
        return getattr(self.m, self.method)(*args)


def _peak_key(module: torch.nn.Module, args: Any, method: str) -> str:
    """What a traced peak depends on: the module tree and its configs, the input shapes and dtypes, the method, the
    torch version and PEAK_CACHE_VERSION."""
    cfgs = [repr(getattr(m, "cfg", None)) for m in (module, getattr(module, "net", None), getattr(module, "ae", None))]
    text = repr((PEAK_CACHE_VERSION, torch.__version__, method, repr(module), cfgs, repr(meta_like(args))))  # meta reprs hold shape and dtype
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def forward_peak_bytes(module: torch.nn.Module, *args: Any, method: str = "forward") -> int:
    """Peak bytes of the tensors alive during ``module.<method>(*args)``, measured on the meta device; ``args`` may
    be real tensors (only their shapes are used). Raises UserError when the module cannot run on these shapes (a
    config that describes a network that does not fit its own input).

    A measured peak is kept in the user's cache (one small JSON per network and input shapes): tracing on meta
    tensors runs torch's Python reference ops, whose first call imports torch._dynamo, 1.2 s of every
    `diffuse sample` otherwise (benchmarks/first_image.py)."""
    from .cache import cache_dir

    path = cache_dir() / "memory" / f"{_peak_key(module, args, method)}.json"
    try:
        return int(json.loads(path.read_text())["peak"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    peak = _traced_peak(module, *args, method=method)
    try:
        from .checkpoint import atomic_write_bytes

        atomic_write_bytes(path, json.dumps({"peak": peak}).encode())
    except (OSError, UserError):  # a read-only or full cache costs the next call the trace, nothing else
        pass
    return peak


def _traced_peak(module: torch.nn.Module, *args: Any, method: str = "forward") -> int:
    wrapper = _Method(module, method)
    params = {k: meta_like(v) for k, v in (*wrapper.named_parameters(), *wrapper.named_buffers())}
    margs = meta_like(args)
    external = {t.untyped_storage()._cdata for t in (*params.values(), *_tensors(margs))}
    try:
        with torch.no_grad(), _LiveBytes(external) as live:
            torch.func.functional_call(wrapper, params, margs)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise UserError(f"this model cannot run on inputs of shape {[tuple(getattr(a, 'shape', ())) for a in args]}: "
                        f"{str(e).splitlines()[0][:160]}") from None
    return live.peak


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return [t for f in dataclasses.fields(x) for t in _tensors(getattr(x, f.name))]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    if isinstance(x, (list, tuple)):
        return [t for v in x for t in _tensors(v)]
    return []


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory this process can still take: free GPU memory on CUDA; on the CPU, the kernel's MemAvailable,
    capped by the cgroup (container) limit when there is one."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 1 << 62  # no way to tell on this platform: do not refuse
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap, cur = Path(limit).read_text().strip(), int(Path(used).read_text().strip())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:
            avail = min(avail, max(int(cap) - cur, 0))
        break
    return avail


# Bookkeeping held per item beside the item itself until a command ends: its label or prompt row, its features
# when scored, its file name and manifest row in a synthetic set.
ITEM_OVERHEAD = 1024


def check_items(n: int, item_shape: tuple[int, ...], what: str, hint: str) -> None:
    """Refuse, before anything of size n exists, n results of ``item_shape`` (uint8) plus their bookkeeping."""
    check_fits(n * (math.prod(item_shape) + ITEM_OVERHEAD), what, hint=hint)


def check_fits(need: int, what: str, device: torch.device | str = "cpu", hint: str = "") -> None:
    """Refuse with one line when ``need`` bytes exceed what is available."""
    have = available_bytes(device)
    if need > have:
        raise UserError(f"{what} needs about {_gib(need)} of memory, but only {_gib(have)} is available"
                        + (f": {hint}" if hint else ""))


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"
