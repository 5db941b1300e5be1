"""What `diffuse restore` reads and writes: ground-truth images (PNG, our .npz, DICOM), measurement files, operators
built from flags or from a measurement file, and the result (.npz with everything needed to check it, or a PNG grid)."""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .ct import CT
from .operators import MRI, Blur, Downsample, Inpaint, Operator

OPERATORS = ("inpaint", "superres", "blur", "mri", "ct")


@dataclass
class OperatorSpec:
    """The flags that choose and shape an operator."""

    name: str
    acceleration: float = 4.0
    factor: int = 4
    blur_sigma: float = 1.5
    angles: int = 16
    sigma_y: float = 0.0
    mask: str | None = None  # inpaint: a PNG (white = known); None: the centre half of the image is unknown
    seed: int = 0  # MRI: which random lines

    def validate(self) -> None:
        """Every field checked, whichever operator is chosen (a flag out of its range is refused even where unused)."""
        if self.name not in OPERATORS:
            raise UserError(f"unknown operator {self.name!r}; choose one of {', '.join(OPERATORS)}")
        if not (math.isfinite(self.acceleration) and self.acceleration > 1):
            raise UserError(f"--acceleration must be > 1, got {self.acceleration}")
        if not 2 <= self.factor <= 64:
            raise UserError(f"--factor must be from 2 to 64, got {self.factor}")
        if not (math.isfinite(self.blur_sigma) and 0 < self.blur_sigma <= 64):
            raise UserError(f"--blur-sigma must be in (0, 64] pixels, got {self.blur_sigma}")
        if not 1 <= self.angles <= 720:
            raise UserError(f"--angles must be from 1 to 720, got {self.angles}")
        if not (math.isfinite(self.sigma_y) and self.sigma_y >= 0):
            raise UserError(f"--sigma-y must be a finite number >= 0, got {self.sigma_y}")

    def build(self, shape: tuple[int, int, int], arrays: dict[str, np.ndarray] | None = None) -> Operator:
        """The operator for images of ``shape``; ``arrays`` (a measurement file's) fix the MRI / inpainting mask."""
        arrays = arrays or {}
        self.validate()
        if self.name == "mri":
            mask = None if "mask" not in arrays else torch.from_numpy(np.asarray(arrays["mask"], dtype=np.float32))
            return MRI(shape, self.acceleration, self.sigma_y, self.seed, mask)
        if self.name == "ct":
            return CT(shape, self.angles, self.sigma_y)
        if self.name == "blur":
            return Blur(shape, self.blur_sigma, self.sigma_y)
        if self.name == "superres":
            return Downsample(shape, self.factor, self.sigma_y)
        return Inpaint(shape, self._inpaint_mask(shape, arrays), self.sigma_y)

    def _inpaint_mask(self, shape, arrays) -> torch.Tensor:
        c, h, w = shape
        if "mask" in arrays:
            m = torch.from_numpy(np.asarray(arrays["mask"], dtype=np.float32))
            m = m.reshape(-1, h, w) if m.numel() in (h * w, c * h * w) else None
            if m is None:
                raise UserError(f"the inpainting mask in the measurement file does not fit {h}x{w} images")
            return m
        if self.mask is not None:
            from ..images import read_image

            arr = read_image(Path(self.mask), True, "mask")
            if arr.shape[:2] != (h, w):
                raise UserError(f"the mask is {arr.shape[1]}x{arr.shape[0]} but the model's images are {w}x{h}")
            return torch.from_numpy(arr.astype(np.float32) / 255.0)[None]
        m = torch.ones(1, h, w)
        m[:, h // 4 : h - h // 4, w // 4 : w - w // 4] = 0  # the centre half (in each direction) is unknown
        return m


def _resize(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return x if tuple(x.shape[-2:]) == hw else F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def read_dicom(path: Path) -> np.ndarray:
    """The pixel data of a DICOM file as float32 [H, W] in [0, 1] (rescale slope/intercept applied, then min-max)."""
    try:
        import pydicom
    except ImportError:
        raise UserError("reading DICOM needs pydicom: pip install 'diffuse[restore]'") from None
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:  # pydicom raises many types for a corrupt file
        raise UserError(f"cannot read DICOM {path}: {type(e).__name__}: {str(e)[:160]}") from None
    if "PixelData" not in ds:
        raise UserError(f"{path} is a DICOM file with no pixel data (no image to restore)")
    try:
        arr = ds.pixel_array.astype(np.float32)
    except Exception as e:
        raise UserError(f"cannot decode the pixel data of {path}: {type(e).__name__}: {str(e)[:160]}") from None
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = arr[..., :3].mean(-1)
    if arr.ndim != 2:
        raise UserError(f"{path}: only single-frame 2-D DICOM images are supported, got pixel data of shape {arr.shape}")
    lo, hi = float(arr.min()), float(arr.max())
    return (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)


def read_truth(path: Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, bool, str | None]:
    """Images to measure, float [N, C, H, W] in [0, 1] resized to the model's H x W; whether the input had no channel
    axis (an .npz of [N, H, W]); and a line saying what was resized, if anything."""
    path = Path(path)
    c, h, w = shape
    if not path.is_file():
        raise UserError(f"input not found: {path}")
    suffix = path.suffix.lower()
    no_channel = False
    if suffix == ".dcm":
        x = torch.from_numpy(read_dicom(path))[None, None].expand(1, c, -1, -1)
    elif suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arr = z["images"]
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise UserError(f"cannot read {path}: it needs an 'images' array ({type(e).__name__}: {str(e)[:120]})") from None
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] != c):
            raise UserError(f"{path}: 'images' must be uint8 [N, H, W] or [N, H, W, {c}], got {arr.dtype} {list(arr.shape)}")
        no_channel = arr.ndim == 3
        if no_channel and c != 1:
            raise UserError(f"{path}: 'images' has no channel axis but the model makes {c}-channel images")
        arr = arr[..., None] if no_channel else arr
        x = torch.from_numpy(arr.copy()).permute(0, 3, 1, 2).float() / 255
    else:
        from ..images import read_image

        arr = read_image(path, c == 1, "input image")
        arr = arr[..., None] if arr.ndim == 2 else arr
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255
    note = None
    if tuple(x.shape[-2:]) != (h, w):
        note = f"resized the input from {x.shape[-1]}x{x.shape[-2]} to the model's {w}x{h}"
        x = _resize(x, (h, w))
    return x.contiguous(), no_channel, note


def read_measurements(path: Path, spec: OperatorSpec, shape: tuple[int, int, int]) -> tuple[Operator, torch.Tensor, bool]:
    """A measurement file (``measurement`` [N, (C,) ...] plus ``mask`` for MRI and inpainting, as `restore --out X.npz`
    writes it), the operator it fits, and whether it has no channel axis; one line for every mismatch."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"measurements not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"cannot read measurements {path}: {type(e).__name__}: {str(e)[:160]}") from None
    if "measurement" not in arrays:
        raise UserError(f"{path} has no 'measurement' array (it holds {', '.join(arrays) or 'nothing'})")
    saved = str(arrays["operator"]) if "operator" in arrays else spec.name
    if saved != spec.name:
        raise UserError(f"{path} holds {saved} measurements, not {spec.name}: pass --operator {saved}")
    op = spec.build(shape, arrays)
    y = torch.from_numpy(np.asarray(arrays["measurement"]))
    y = y.to(torch.complex64) if y.is_complex() else y.float()
    want = op.measurement_shape(len(y))
    no_channel = y.ndim == len(want) - 1
    if no_channel:
        y = y.unsqueeze(1)
    if tuple(y.shape) != want or not bool(torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all()):
        raise UserError(f"the measurements in {path} have shape {list(y.shape)}, but this {op.name} operator on "
                        f"{'x'.join(map(str, shape))} images measures {list(want)} (and all values must be finite)")
    return op, y, no_channel


def write_result(out: Path, op: Operator, y: torch.Tensor, samples: torch.Tensor, truth: torch.Tensor | None, no_channel: bool) -> str:
    """The reconstruction (the mean of the K samples [K, N, C, H, W]), its per-pixel std, the measurement and the
    operator, as .npz, or a PNG grid (rows: truth, measurement, reconstruction, std)."""
    from ..checkpoint import atomic_write_bytes

    out = Path(out)
    rec, std = samples.mean(0), samples.std(0) if len(samples) > 1 else torch.zeros_like(samples[0])  # Bessel-corrected
    res = op.residual(rec, y)
    if out.suffix == ".png":
        from ..images import make_grid, save_png

        rows = ([truth] if truth is not None else []) + [op.view(y).clamp(0, 1), rec, std / max(float(std.max()), 1e-8)]
        grid = torch.cat([(r * 255).round().to(torch.uint8) for r in rows])
        save_png(out, make_grid(grid, ncol=len(rec), scale=max(1, 64 // rec.shape[-1])))
    else:
        squeeze = (lambda t: t[:, 0]) if no_channel else (lambda t: t.permute(0, 2, 3, 1))
        arrays: dict[str, Any] = {"reconstruction": squeeze(rec).numpy().astype(np.float32), "std": squeeze(std).numpy().astype(np.float32),
                                  "measurement": (y[:, 0] if no_channel else y).numpy(), "residual": res.numpy().astype(np.float32),
                                  "operator": np.array(op.name), "params": np.array(json.dumps(op.params()))}
        arrays.update({k: v.numpy() for k, v in op.arrays().items()})
        if len(samples) > 1:
            arrays["samples"] = np.stack([squeeze(t).numpy() for t in samples]).astype(np.float32)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(out, buf.getvalue())
    return f"wrote {len(rec)} reconstruction(s) to {out}; data-consistency residual ||A x - y|| / ||y||: mean {float(res.mean()):.4f}"
