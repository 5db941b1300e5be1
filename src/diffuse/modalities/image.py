"""Images: uint8 C x H x W <-> [-1, 1]; PNG grids and .npz files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..pixels import to_model_space, to_uint8
from ..errors import UserError
from .base import Meta, Modality, params_text, write_npz


class ImageModality(Modality):
    name = "image"
    out_help = "FILE.png (grid) or FILE.npz (images uint8 [N,H,W,C], labels int64 [N])"
    metrics = ("fid", "kid", "pr", "acc", "cas", "bpd")
    features = ("classifier", "inception")
    item_suffix = ".png"
    edits_pictures = True

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> "ImageModality":
        return cls()

    def spec(self) -> dict[str, Any]:
        return {"name": "image"}

    def preview(self, x: torch.Tensor) -> torch.Tensor:
        return to_uint8(x)

    def write_items(self, x: torch.Tensor, paths: list[Path], params: list[dict[str, Any]] | None = None) -> None:
        from ..images import save_png

        for i, (img, path) in enumerate(zip(to_uint8(x), paths)):
            save_png(path, img.permute(1, 2, 0).numpy(), params_text(params[i] if params else None))

    def items(self, x: torch.Tensor) -> list[Any]:
        """PIL images (mode L or RGB)."""
        from PIL import Image

        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in to_uint8(x).permute(0, 2, 3, 1).numpy()]

    def web_outputs(self, gr: Any) -> list[Any]:
        return [gr.Gallery(label="Result", columns=4, object_fit="contain", height="auto", format="png",
                           elem_id="results", elem_classes=["results"])]

    def web_values(self, x: torch.Tensor, files: list[Path], captions: list[str]) -> list[Any]:
        return [[(str(f), c) for f, c in zip(files, captions)]]

    def check_out(self, out: Path, n: int | None = None) -> None:
        if Path(out).suffix not in (".png", ".npz"):
            raise UserError(f"--out must end in .png or .npz, got {out}")

    def write(self, x: torch.Tensor, out: Path, meta: Meta) -> str:
        """A grid PNG (one row per class or prompt) or an .npz with images, labels and prompts."""
        from ..images import save_grid

        out = Path(out)
        self.check_out(out)
        images = to_uint8(x)
        if out.suffix == ".png":
            save_grid(out, images, meta.rows, text=params_text(meta.params))
            return f"wrote {len(x)} samples to {out}"
        write_npz(out, {"images": images.permute(0, 2, 3, 1).numpy()}, meta)
        return f"wrote {len(x)} samples to {out}"

    def read(self, path: Path, what: str, shape: tuple[int, ...]) -> torch.Tensor:
        """A PNG/JPEG (one image) or .npz of images as [-1, 1] [N, C, H, W] with the C of ``shape``."""
        from ..images import read_images

        return to_model_space(read_images(path, shape[0], f"{what} image"))
