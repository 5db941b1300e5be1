"""Video: uint8 clips C x T x H x W <-> [-1, 1] (each frame as an image). Outputs: an animated GIF of all clips side
by side (Pillow), an MP4 of the same (imageio with its ffmpeg), an .npz (``videos`` uint8 [N, T, H, W, C], ``fps``,
``labels`` or ``prompts``) or a PNG of frame strips (rows = samples, columns = frames).

As an editing input (``sample --init``), an image is the first frame of clips to animate (image-to-video), and a clip
is continued: its last frames become the first ones of the new clips. Both are inpainting in time (editing.Edit with
a mask over the given frames), not a pipeline of their own.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UserError
from ..pixels import to_model_space, to_uint8
from .base import Meta, Modality, params_text, write_npz

FFMPEG_SUFFIXES = {".mp4", ".mov", ".webm", ".avi", ".mkv", ".m4v"}  # read through imageio-ffmpeg
CLIP_SUFFIXES = (".gif", ".npz", *sorted(FFMPEG_SUFFIXES))
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MAX_FRAMES = 64


class VideoModality(Modality):
    name = "video"
    out_help = "FILE.gif (all clips side by side), FILE.mp4, FILE.npz (videos uint8 [N,T,H,W,C], fps, labels/prompts) or FILE.png (frame strips)"
    metrics = ("fid", "acc")
    item_suffix = ".gif"
    edits_pictures = False
    grid_rows, grid_per_row = 16, 1  # training grids: one frame strip for each of 16 (class, direction) pairs

    def __init__(self, fps: float = 8.0):
        self.fps = float(fps)

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "VideoModality":
        fps = spec.get("fps", 8)
        if not isinstance(fps, (int, float)) or not fps > 0:
            raise UserError(f"modality record: fps must be a positive number, got {fps!r}")
        return cls(fps)

    def spec(self) -> dict[str, Any]:
        return {"name": "video", "fps": self.fps}

    def set_output(self, fps: float | None = None) -> None:
        if fps is not None:
            if not fps > 0 or fps > 240:  # (NaN fails too)
                raise UserError(f"--fps must be in (0, 240], got {fps}")
            self.fps = float(fps)

    # pictures
    def preview(self, x: torch.Tensor) -> torch.Tensor:
        """Frame strips uint8 [N, C, H, T * (W + 1) - 1]: the frames left to right, a grey line between them."""
        v = to_uint8(x)  # [N, C, T, H, W]
        n, c, t, h, w = v.shape
        strip = torch.full((n, c, h, t * (w + 1) - 1), 128, dtype=torch.uint8)
        for k in range(t):
            strip[..., k * (w + 1) : k * (w + 1) + w] = v[:, :, k]
        return strip

    def frames(self, x: torch.Tensor) -> np.ndarray:
        """uint8 clips [N, T, H, W, C] of model-space [N, C, T, H, W]."""
        return to_uint8(x).permute(0, 2, 3, 4, 1).numpy()

    def _sheet(self, x: torch.Tensor, rows: torch.Tensor | None) -> np.ndarray:
        """All clips side by side, frame by frame: uint8 [T, H', W', C] (one row per class or prompt), at least 128 px."""
        from ..images import class_rows, make_grid

        v = to_uint8(x)
        ncol = None
        if rows is not None and len(rows.unique()) > 1:
            v, ncol = class_rows(v, rows), int(torch.bincount(rows).max())
        scale = max(1, 64 // v.shape[-1])
        return np.stack([make_grid(v[:, :, k], ncol, scale=scale) for k in range(v.shape[2])])

    # files
    def check_out(self, out: Path, n: int | None = None) -> None:
        if Path(out).suffix not in (".gif", ".mp4", ".npz", ".png"):
            raise UserError(f"--out for video must end in .gif, .mp4, .npz or .png, got {out}")

    def write(self, x: torch.Tensor, out: Path, meta: Meta) -> str:
        from ..checkpoint import atomic_write_bytes
        from ..images import save_grid

        out = Path(out)
        self.check_out(out)
        t = x.shape[2]
        if out.suffix == ".png":
            save_grid(out, self.preview(x), None, ncol=1, text=params_text(meta.params))
            return f"wrote the frame strips of {len(x)} clips to {out}"
        if out.suffix == ".npz":
            write_npz(out, {"videos": self.frames(x), "fps": np.float64(self.fps)}, meta)
            return f"wrote {len(x)} clips of {t} frames to {out}"
        sheet = self._sheet(x, meta.rows)
        atomic_write_bytes(out, gif_bytes(sheet, self.fps) if out.suffix == ".gif" else mp4_bytes(sheet, self.fps))
        return f"wrote {len(x)} clips of {t} frames ({t / self.fps:.2f} s at {self.fps:g} fps) to {out}"

    def write_items(self, x: torch.Tensor, paths: list[Path], params: list[dict[str, Any]] | None = None) -> None:
        from ..checkpoint import atomic_write_bytes

        scale = max(1, 64 // x.shape[-1])
        for clip, path in zip(self.frames(x), paths):
            atomic_write_bytes(path, gif_bytes(clip.repeat(scale, 1).repeat(scale, 2), self.fps))

    def items(self, x: torch.Tensor) -> list[Any]:
        """uint8 arrays [T, H, W, C]."""
        return list(self.frames(x))

    def web_outputs(self, gr: Any) -> list[Any]:
        return [gr.Gallery(label="Clips", columns=4, object_fit="contain", height="auto", elem_id="results", elem_classes=["results"])]

    def web_values(self, x: torch.Tensor, files: list[Path], captions: list[str]) -> list[Any]:
        return [[(str(f), c) for f, c in zip(files, captions)]]

    def read(self, path: Path, what: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A clip (GIF, MP4, or .npz ``videos``) as model-space [N, C, T0, H, W] with the C, H, W of ``shape``."""
        v = read_clips(Path(path), shape[0], what)
        _check_frame(v.shape[-2:], shape, what, path)
        return to_model_space(v)

    def read_init(self, path: Path, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """An image: the first frame of clips to animate (image-to-video). A clip: continued forward, its last
        T // 2 frames (or all, when shorter) become the first frames. Returns (init [N, *shape], keep mask)."""
        from ..images import read_images

        path = Path(path)
        c, t, h, w = shape
        if path.suffix.lower() in IMAGE_SUFFIXES:
            img = read_images(path, c, "init image")  # [N, C, H, W]
            _check_frame(img.shape[-2:], shape, "init image", path)
            clip, keep = to_model_space(img)[:, :, None].expand(-1, -1, t, -1, -1), 1
        elif path.suffix.lower() in CLIP_SUFFIXES:
            v = self.read(path, "init clip", shape)  # [N, C, T0, H, W]
            keep = min(v.shape[2], t // 2)
            clip = torch.cat([v[:, :, -keep:], v[:, :, -1:].expand(-1, -1, t - keep, -1, -1)], 2)
        else:
            raise UserError(f"--init for a video model is an image ({', '.join(IMAGE_SUFFIXES)}) or a clip "
                            f"({', '.join(CLIP_SUFFIXES)}), got {path}")
        mask = torch.zeros(1, 1, t, h, w)
        mask[:, :, :keep] = 1
        return clip.contiguous(), mask

    def duration(self, shape: tuple[int, ...]) -> float:
        return shape[1] / self.fps

    def sample_shape(self, shape: tuple[int, ...], seconds: float | None, multiple: int, frames: int | None = None,
                     frame_multiple: int = 1) -> tuple[tuple[int, ...], str | None]:
        if seconds is not None:
            raise UserError("--seconds is for audio models; a video model takes --frames")
        if frames is None:
            return tuple(shape), None
        if not 0 < frames <= MAX_FRAMES or frames % frame_multiple:
            raise UserError(f"--frames {frames}: this model makes 1..{MAX_FRAMES} frames in multiples of {frame_multiple} "
                            f"(it was trained on {shape[1]})")
        return (shape[0], frames, *shape[2:]), None


def _check_frame(hw: Any, shape: tuple[int, ...], what: str, path: Path) -> None:
    if tuple(hw) != tuple(shape[-2:]):
        raise UserError(f"{what} {path} is {hw[1]}x{hw[0]}, but this model makes {shape[-1]}x{shape[-2]} frames")


def gif_bytes(frames: np.ndarray, fps: float) -> bytes:
    """uint8 [T, H, W, C] as a looping GIF (Pillow)."""
    from PIL import Image

    ims = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    buf = io.BytesIO()
    ims[0].save(buf, format="GIF", save_all=True, append_images=ims[1:], duration=round(1000 / fps), loop=0, optimize=False)
    return buf.getvalue()


def mp4_bytes(frames: np.ndarray, fps: float) -> bytes:
    """uint8 [T, H, W, C] as H.264 MP4 (imageio with imageio-ffmpeg); sides padded to even sizes for yuv420p."""
    import tempfile

    iio = _imageio()
    t, h, w, c = frames.shape
    rgb = np.repeat(frames, 3, -1) if c == 1 else frames
    rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "clip.mp4"
        iio.mimwrite(p, list(rgb), fps=fps, codec="libx264", macro_block_size=1, pixelformat="yuv420p")
        return p.read_bytes()


def _imageio():
    try:
        import imageio.v2 as iio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise UserError("MP4 files need imageio and imageio-ffmpeg: pip install 'diffuse[video]'") from None
    return iio


def read_clips(path: Path, channels: int, what: str) -> torch.Tensor:
    """A GIF, an MP4 (or another file ffmpeg reads: FFMPEG_SUFFIXES) or an .npz (``videos`` uint8 [N, T, H, W, C]) as
    uint8 [N, C, T, H, W]; one line per bad file."""
    import zipfile

    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                v = z["videos"]
            if v.ndim != 5 or v.dtype != np.uint8 or v.shape[-1] != channels or not 0 < v.shape[1] <= MAX_FRAMES:
                raise UserError(f"{what} {path}: 'videos' must be uint8 [N, T, H, W, {channels}] with T <= {MAX_FRAMES}, "
                                f"got {v.dtype} {list(v.shape)}")
        elif suffix == ".gif":
            from PIL import Image, ImageSequence

            with Image.open(path) as im:
                if im.size[0] * im.size[1] * getattr(im, "n_frames", 1) > (1 << 26):
                    raise UserError(f"{what} {path} is too large ({im.size[0]}x{im.size[1]}, {im.n_frames} frames)")
                mode = "L" if channels == 1 else "RGB"
                got = [(np.asarray(f.convert(mode)), f.info.get("duration") or 0) for f, _ in zip(ImageSequence.Iterator(im), range(MAX_FRAMES))]
            unit = min((d for _, d in got if d > 0), default=0)  # Pillow merges identical frames, summing their durations
            v = np.stack([a for a, d in got for _ in range(max(1, round(d / unit)) if unit else 1)][:MAX_FRAMES])[None]
        elif suffix in FFMPEG_SUFFIXES:
            iio = _imageio()
            reader = iio.get_reader(path, format="FFMPEG")
            try:
                v = np.stack([f for f, _ in zip(reader, range(MAX_FRAMES))])[None]
            finally:
                reader.close()
            v = v.mean(-1, keepdims=True).round().astype(np.uint8) if channels == 1 else v[..., :3]
        else:
            raise UserError(f"{what} must be a clip ({', '.join(CLIP_SUFFIXES)}), got {path}")
    except UserError:
        raise
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, IndexError, zipfile.BadZipFile) as e:
        raise UserError(f"cannot read {what} {path}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}") from None
    v = v[..., None] if v.ndim == 4 else v
    return torch.from_numpy(np.ascontiguousarray(v)).permute(0, 4, 1, 2, 3).contiguous()
