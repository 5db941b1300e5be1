"""A KL-regularised convolutional autoencoder and the latent codec that latent diffusion runs through
(Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3.1 and App. G).

    AE/config.json        {"format", "model": AEConfig, "train": AETrainConfig, "latent": {"mean", "std"}, "eval": {...}}
    AE/model.safetensors  weights, with the architecture fingerprint in the metadata

The encoder maps x [B, C, H, W] in [-1, 1] to a diagonal Gaussian posterior q(z|x) over z [B, c, H/f, W/f];
the decoder maps z back. ``LatentCodec`` adds the scale normalisation computed from the data after training
(per latent channel: z_n = (z - mean) / std, the LDM paper's "rescale the latent to unit variance", App. G), so
the diffusion model sees latents of about unit scale (EDM's sigma_data stays 0.5 by default: `--sigma-data 1`, the
normalised latents' own value, measured no better on latent video; README, "Where the class is lost").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_into, load_tensors, read_json
from ..errors import UserError

AE_FORMAT = "diffuse-autoencoder/1"


@dataclass
class AEConfig:
    """Shape of the autoencoder: ``patch_size`` p folds p x ... x p items into channels first (space-to-depth, unfolded
    again at the output), then one level per entry of ``mults`` (channels x mult) with a stride-2 downsampling
    between levels, so every axis shrinks by f = p 2^(len(mults) - 1).

    Items are [C, *shape] of any rank 1-3 (``shape``: a log-mel's (mels, frames), a clip's (frames, H, W));
    an empty ``shape`` means a square image_size x image_size picture, as autoencoders written before ranks were.
    ``per_frame``: clips [C, T, H, W] are coded frame by frame by a 2-D autoencoder (Sora's per-frame latents), so the
    latent keeps every frame: [c, T, H/f, W/f]."""

    image_size: int = 28
    in_channels: int = 1
    channels: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    num_blocks: int = 1
    latent_channels: int = 4
    groups: int = 8
    patch_size: int = 1
    shape: tuple[int, ...] = ()
    per_frame: bool = False

    def __post_init__(self) -> None:
        self.mults, self.shape = tuple(self.mults), tuple(self.shape)
        if not 1 <= len(self.spatial) <= 3 or min(self.spatial) < 1:
            raise ValueError(f"autoencoder items must have 1 to 3 positive axes, got {self.spatial}")
        if self.per_frame and len(self.spatial) != 3:
            raise ValueError(f"a per-frame autoencoder codes clips (frames, H, W), got items of shape {self.spatial}")
        if any(n % self.patch_size for n in (self.spatial[1:] if self.per_frame else self.spatial)):  # frames aren't patched
            raise ValueError(f"item shape {self.spatial} is not divisible by the autoencoder patch_size {self.patch_size}")
        if not self.mults:
            raise ValueError("autoencoder mults must not be empty")
        for c in [self.channels * m for m in self.mults]:
            if c % self.groups:
                raise ValueError(f"autoencoder channel count {c} is not divisible by groups={self.groups}")

    @property
    def spatial(self) -> tuple[int, ...]:
        """The item's axes after the channels."""
        return self.shape or (self.image_size, self.image_size)

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def sizes(self) -> list[tuple[int, ...]]:
        """Axes at each level (stride-2 convolutions with padding 1 round up)."""
        s = [tuple(n // self.patch_size for n in self.spatial)]
        for _ in self.mults[1:]:
            s.append(tuple((n + 1) // 2 for n in s[-1]))
        return s

    @property
    def factor(self) -> int:
        return self.patch_size * 2 ** (len(self.mults) - 1)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return (self.in_channels, *self.spatial)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        if self.per_frame:
            c, *hw = self.frame_config.latent_shape
            return (c, self.spatial[0], *hw)
        return (self.latent_channels, *self.sizes[-1])

    @property
    def frame_config(self) -> "AEConfig":
        """The 2-D autoencoder that codes each frame of a per-frame one (itself otherwise)."""
        return replace(self, shape=self.spatial[1:], per_frame=False) if self.per_frame else self


AE_PRESETS: dict[str, dict] = {
    "f2": dict(channels=16, mults=(1, 2), latent_channels=2),  # tests and digits (8x8 -> 2x4x4)
    "f4": dict(channels=32, mults=(1, 2, 2), latent_channels=4),  # 28x28 -> 4x7x7
    # 64x64 -> 4x8x8: 2x2 patches first, so no convolution runs at 64x64 (a first version with a 64x64 level
    # trained at 20 img/s here, 82 steps in 4 minutes)
    "f8": dict(channels=32, mults=(1, 2, 2), latent_channels=4, patch_size=2),
    # log-mels, 64x100 -> 4x16x25 (f4 on each axis, as AudioLDM): 2x2 patches first, as f8, so no convolution runs
    # at the full 64x100 (the plain f4 preset there did under 50 steps of batch 64 in 3 minutes)
    "f4p": dict(channels=32, mults=(1, 2), latent_channels=4, patch_size=2),
}


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
# Channels-last layouts: on the CPU, oneDNN's convolutions reorder NCHW tensors on every call. Kept channels-last, the
# f4 video autoencoder encodes 1.50x and decodes 1.58x as fast on a 2-core AMD EPYC, and trains about as fast (1.03x)
# (benchmarks/codec_layout.py; README, "Transformers and latents").
LAYOUT = {2: torch.channels_last, 3: torch.channels_last_3d}


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Space-to-depth on every axis after the channels: [B, C, *S] -> [B, C p^r, *S/p] (pixel_unshuffle for r = 2)."""
    if p == 1:
        return x
    b, c, *s = x.shape
    r = len(s)
    x = x.reshape(b, c, *[v for n in s for v in (n // p, p)])
    x = x.permute(0, 1, *[3 + 2 * i for i in range(r)], *[2 + 2 * i for i in range(r)])
    return x.reshape(b, c * p**r, *[n // p for n in s])


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """The inverse of ``patchify``: [B, C p^r, *S] -> [B, C, *S p]."""
    if p == 1:
        return x
    b, cp, *s = x.shape
    r = len(s)
    c = cp // p**r
    x = x.reshape(b, c, *[p] * r, *s)
    x = x.permute(0, 1, *[v for i in range(r) for v in (2 + r + i, 2 + i)])
    return x.reshape(b, c, *[n * p for n in s])


class Block(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with a residual (1x1 conv when the width changes)."""

    def __init__(self, c_in: int, c_out: int, groups: int, rank: int = 2):
        super().__init__()
        conv = CONV[rank]
        self.body = nn.Sequential(nn.GroupNorm(groups, c_in), nn.SiLU(), conv(c_in, c_out, 3, padding=1),
                                  nn.GroupNorm(groups, c_out), nn.SiLU(), conv(c_out, c_out, 3, padding=1))
        self.skip = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Autoencoder(nn.Module):
    """encode(x) -> (mean, logvar) of q(z|x); decode(z) -> x_hat (unclipped)."""

    def __init__(self, cfg: AEConfig):
        super().__init__()
        self.cfg = cfg
        cfg = cfg.frame_config  # a per-frame autoencoder is the 2-D one, run on every frame
        ch, g, r, conv = cfg.channels, cfg.groups, cfg.rank, CONV[cfg.rank]
        widths = [ch * m for m in cfg.mults]
        folded = cfg.in_channels * cfg.patch_size**r
        enc: list[nn.Module] = [conv(folded, widths[0], 3, padding=1)]
        cur = widths[0]
        for lvl, w in enumerate(widths):
            for _ in range(cfg.num_blocks):
                enc.append(Block(cur, w, g, r))
                cur = w
            if lvl < len(widths) - 1:
                enc.append(conv(cur, cur, 3, stride=2, padding=1))
        enc += [Block(cur, cur, g, r), nn.GroupNorm(g, cur), nn.SiLU(), conv(cur, 2 * cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        self.dec_in = conv(cfg.latent_channels, cur, 3, padding=1)
        self.dec_mid = Block(cur, cur, g, r)
        self.dec_levels = nn.ModuleList()
        for lvl in reversed(range(len(widths))):
            blocks = []
            for _ in range(cfg.num_blocks + 1):
                blocks.append(Block(cur, widths[lvl], g, r))
                cur = widths[lvl]
            if lvl > 0:
                blocks.append(conv(cur, cur, 3, padding=1))  # after nearest upsampling to the level above
            self.dec_levels.append(nn.ModuleList(blocks))
        self.dec_out = nn.Sequential(nn.GroupNorm(g, cur), nn.SiLU(), conv(cur, folded, 3, padding=1))
        self.layout = LAYOUT.get(r, torch.contiguous_format)  # weights and activations (inputs are converted)
        self.to(memory_format=self.layout)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, *S] -> (mean, logvar) [B, c, *S/f] each (logvar clamped to [-30, 20], as in LDM); per frame:
        [B, C, T, H, W] -> [B, c, T, H/f, W/f] (any T)."""
        if self.cfg.per_frame:
            if x.dim() != 5:
                raise ValueError(f"this per-frame autoencoder takes clips [B, C, T, H, W], got {tuple(x.shape)}")
            return tuple(v.unflatten(0, (x.shape[0], x.shape[2])).transpose(1, 2)  # type: ignore[return-value]
                         for v in self._encode(x.transpose(1, 2).flatten(0, 1)))
        return self._encode(x)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.cfg.frame_config
        other = tuple(x.shape[2:]) != c.spatial  # fully convolutional: other lengths that the factor divides work too
        if x.shape[1] != c.in_channels or x.dim() != 2 + c.rank or (other and any(n % c.factor for n in x.shape[2:])):
            raise ValueError(f"this autoencoder takes {'x'.join(map(str, c.item_shape))} items (or other lengths divisible by "
                             f"{c.factor}), got {tuple(x.shape[1:])}")
        mean, logvar = self.encoder(patchify(x, self.cfg.patch_size).contiguous(memory_format=self.layout)).chunk(2, dim=1)
        return mean.contiguous(), logvar.clamp(-30.0, 20.0).contiguous()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, c, *S/f] -> x_hat [B, C, *S] (per frame: [B, c, T, h, w] -> [B, C, T, H, W])."""
        if self.cfg.per_frame:
            return self._decode(z.transpose(1, 2).flatten(0, 1)).unflatten(0, (z.shape[0], z.shape[2])).transpose(1, 2)
        return self._decode(z)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.dec_mid(self.dec_in(z.contiguous(memory_format=self.layout)))
        sizes = self.cfg.frame_config.sizes
        if tuple(z.shape[2:]) != sizes[-1]:  # another length (audio --seconds): every level doubles exactly
            sizes = [tuple(n * 2 ** (len(sizes) - 1 - i) for n in z.shape[2:]) for i in range(len(sizes))]
        for i, level in enumerate(self.dec_levels):
            lvl = len(sizes) - 1 - i
            for m in level:
                if isinstance(m, Block):
                    h = m(h)
                else:
                    h = m(F.interpolate(h, size=sizes[lvl - 1], mode="nearest"))
        return unpatchify(self.dec_out(h), self.cfg.patch_size).contiguous()

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruct through a posterior sample: (x_hat, KL(q(z|x) || N(0, I)) summed per example [B])."""
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * logvar).exp() * eps
        kl = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)
        return self.decode(z), kl


def fingerprint(cfg: AEConfig) -> str:
    """A short hash of the autoencoder's architecture (patch_size, shape and per_frame, added later, only when not the
    default)."""
    d = {k: v for k, v in asdict(cfg).items()
         if not ((k == "patch_size" and v == 1) or (k in ("shape", "per_frame") and not v))}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class LatentCodec:
    """An autoencoder plus its per-channel latent normalisation: pixels [-1, 1] <-> normalised latents."""

    ae: Autoencoder
    mean: torch.Tensor  # [c]
    std: torch.Tensor  # [c]
    fingerprint: str
    path: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.ae.cfg.latent_shape

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The items it encodes, [C, *S] (images, log-mels, clips)."""
        return self.ae.cfg.item_shape

    def _view(self, v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return v.view(1, -1, *[1] * (z.dim() - 2)).to(z.dtype)

    def to(self, device: torch.device | str) -> "LatentCodec":
        self.ae.to(device)
        self.mean, self.std = self.mean.to(device), self.std.to(device)
        return self

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self._view(self.mean, z)) / self._view(self.std, z)

    @torch.no_grad()
    def posterior(self, x: torch.Tensor, batch_size: int = 500, bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised posterior (mean, std) [N, c, *S/f] of model-space items x [N, C, *S], in batches of about
        ``batch_size`` frames (clips count each frame); ``bf16``: the encoder under bf16 autocast (a latent run's
        training data on an AMX CPU or a GPU: its posterior noise is far larger than bf16's rounding)."""
        dev = self.mean.device
        per = max(1, batch_size // (x.shape[2] if self.ae.cfg.per_frame and x.dim() == 5 else 1))
        mus, sds = [], []
        for i in range(0, len(x), per):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                mu, logvar = self.ae.encode(x[i : i + per].to(dev).float())
            mu, logvar = mu.float(), logvar.float()
            mus.append(self.normalize(mu).cpu())
            sds.append(((0.5 * logvar).exp() / self._view(self.std, logvar)).cpu())
        return torch.cat(mus), torch.cat(sds)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space items [N, C, *S] -> normalised posterior means."""
        return self.posterior(x)[0].to(x.device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> model-space items (float32, clipped to [-1, 1]: pixels, and log-mels, whose
        normalisation puts the mel floor at -1)."""
        return self.decode_differentiable(z)

    def decode_differentiable(self, z: torch.Tensor) -> torch.Tensor:
        """``decode`` with autograd on: latent DPS (inverse/solvers.py) takes gradients through the decoder."""
        z = z.float()
        z = z * self._view(self.std, z) + self._view(self.mean, z)
        return self.ae.decode(z).clamp(-1, 1)


def read_ae_config(ae_dir: Path) -> dict[str, Any]:
    """AE/config.json, checked for format."""
    ae_dir = Path(ae_dir)
    if not ae_dir.is_dir():
        raise UserError(f"autoencoder directory not found: {ae_dir}")
    if not (ae_dir / "config.json").is_file():
        raise UserError(f"{ae_dir} is not a diffuse autoencoder: it has no config.json (train one with `diffuse train-autoencoder`)")
    cfg = read_json(ae_dir / "config.json", "autoencoder config")
    if not isinstance(cfg, dict) or cfg.get("format") != AE_FORMAT:
        raise UserError(f"{ae_dir} is not a diffuse autoencoder (train one with `diffuse train-autoencoder`)")
    return cfg


def ae_config_from(d: dict[str, Any], source: Path) -> AEConfig:
    """The autoencoder's config from its JSON, every field's type checked (typed.py)."""
    from ..typed import from_json

    return from_json(AEConfig, d, f"{source} (model)")


def load_codec(ae_dir: Path, device: str | torch.device = "cpu") -> LatentCodec:
    """The trained autoencoder in AE_DIR with its latent normalisation; one-line errors for every bad case."""
    ae_dir = Path(ae_dir)
    saved = read_ae_config(ae_dir)
    cfg = ae_config_from(saved["model"], ae_dir / "config.json")
    if "latent" not in saved:
        raise UserError(f"{ae_dir} has no latent statistics: its training did not finish (resume it with "
                        f"`diffuse train-autoencoder --out {ae_dir} --resume`)")
    tensors, meta = load_tensors(ae_dir / "model.safetensors", "autoencoder weights")
    if meta.get("fingerprint") != fingerprint(cfg):
        raise UserError(f"{ae_dir / 'model.safetensors'} was saved by a different autoencoder than {ae_dir / 'config.json'} describes")
    ae = Autoencoder(cfg)
    load_into(ae, tensors, ae_dir / "model.safetensors")
    ae.eval().requires_grad_(False)
    lat = saved["latent"]
    codec = LatentCodec(ae, torch.tensor(lat["mean"]), torch.tensor(lat["std"]), fingerprint(cfg), str(ae_dir), saved.get("eval", {}))
    if codec.mean.shape != (cfg.latent_channels,) or codec.std.shape != (cfg.latent_channels,) or not bool((codec.std > 0).all()):
        raise UserError(f"{ae_dir / 'config.json'}: latent statistics do not fit {cfg.latent_channels} latent channels")
    return codec.to(device)
