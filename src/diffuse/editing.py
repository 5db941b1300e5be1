"""Image-conditioned sampling as wrappers around any denoiser and sampler: img2img, inpainting, super-resolution.

- img2img (SDEdit, Meng et al. 2022): noise the input to the sigma where the last ``strength`` share of the
  sampling schedule begins, x = x_init + sigma_start z, and run those remaining steps. Strength 0 returns the
  input; strength 1 starts from pure noise, i.e. plain sampling with the same seed.
- Inpainting (replacement, then RePaint resampling, Lugmayr et al. 2022): a denoiser wrapper puts the known
  pixels, noised to the current sigma with the sample's own fixed noise, into the input, and the known pixels
  into the output (and hands them to the network as ``Cond.known``, which a network trained with given parts reads:
  a video DiT's given frames, so image-to-video and clip continuation are this wrapper over time). Every sampler then keeps them exactly, and the final x0 equals them. ``resample = K > 1``
  repeats each step K times, diffusing back from sigma_{i+1} to sigma_i with fresh noise in between, so the
  generated region harmonises with the known one (each step then runs as a one-step call of the sampler).
- Super-resolution consistency: for a model conditioned on a low-res image (channel concatenation, U-Net
  ``lowres_factor``), the wrapper replaces the low-pass part of every x0 estimate by the input's, so the
  output, average-pooled back down, equals the low-res input (ILVR-style, Choi et al. 2021).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .errors import UserError
from .cond import Cond
from .precond import Denoiser
from .samplers import fresh_noise


def low_pass(x: torch.Tensor, f: int) -> torch.Tensor:
    """Average-pool by f, then nearest-upsample back: the part of x a factor-f low-res image determines."""
    return F.interpolate(F.avg_pool2d(x, f), scale_factor=f, mode="nearest")


def superres_consistency(denoiser: Denoiser, f: int) -> Denoiser:
    """D' = D - low_pass(D) + upsample(lowres): avg_pool(D', f) equals the low-res condition."""

    def wrapped(x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        d = denoiser(x, sigma, cond)
        lowres = Cond.of(cond).lowres.to(d.dtype)
        return d - low_pass(d, f) + F.interpolate(lowres, scale_factor=f, mode="nearest")

    return wrapped


@dataclass
class Edit:
    """init [N or 1, C, H, W] in [-1, 1]; mask [N or 1, 1 or C, H, W] with 1 = keep the init pixel, 0 = generate."""

    init: torch.Tensor
    strength: float = 1.0
    mask: torch.Tensor | None = None
    resample: int = 1
    pixels: tuple | None = None  # latent models: (init, mask) in pixel space, for the composite in ``finish``

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise UserError(f"--strength must be in [0, 1], got {self.strength}")
        if self.resample < 1:
            raise UserError(f"--resample must be >= 1, got {self.resample}")
        if self.mask is not None:
            if self.mask.shape[-2:] != self.init.shape[-2:]:
                raise UserError(f"the mask is {tuple(self.mask.shape[-2:])} but the image is {tuple(self.init.shape[-2:])}: "
                                "they must have the same size")
            self.mask = (self.mask > 0.5).to(self.init.dtype)
        elif self.resample > 1:
            raise UserError("--resample needs --mask (it is RePaint's inpainting schedule)")

    def in_latent_space(self, codec: Any) -> "Edit":
        """This edit for a latent model (codecs.autoencoder.LatentCodec): the init encoded to its latent; the mask shrunk
        to the latent grid, keeping only latent cells whose pixels are all known, so generated latents may
        overlap the known border (blended latent diffusion, Avrahami et al. 2023, Sec. 3); ``finish`` pastes
        the known pixels back after decoding."""
        z = codec.encode(self.init)  # [N, c, h, w]
        m = None
        if self.mask is not None:
            m = (F.interpolate(self.mask.amin(1, keepdim=True), size=z.shape[2:], mode="area") > 0.999).to(z.dtype)  # clips: [T, h, w]
        return Edit(z, self.strength, m, self.resample, pixels=(self.init, self.mask))

    def finish(self, x: torch.Tensor, rows: slice) -> torch.Tensor:
        """Decoded images [B, C, H, W] of a latent edit with the known pixels of the mask put back."""
        if self.pixels is None or self.pixels[1] is None:
            return x
        init, mask = (self._rows(t, rows, x.device).to(x.dtype) for t in self.pixels)
        return mask * init + (1 - mask) * x

    def trim(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The tail of the schedule that ``strength`` leaves (a lone final 0 when strength is 0)."""
        steps = len(sigmas) - 1
        k = round(self.strength * steps)
        return sigmas[steps - k :]

    def _rows(self, t: torch.Tensor, rows: slice, device: torch.device) -> torch.Tensor:
        return (t if len(t) == 1 else t[rows]).to(device)

    def run(self, sampler: Callable[..., torch.Tensor], denoiser: Denoiser, z: torch.Tensor, sigmas: torch.Tensor, rows: slice,
            *, cond: Any = None, generator: torch.Generator | None = None, **extra) -> torch.Tensor:
        """Sample images ``rows`` of the batch from their noise z [B, C, H, W] over the (trimmed) sigmas."""
        init = self._rows(self.init, rows, z.device).to(z.dtype).expand_as(z)
        if len(sigmas) == 1:  # strength 0: nothing to do
            return init.clone()
        s0 = float(sigmas[0])
        x = z * s0 if self.strength >= 1.0 else init + s0 * z
        if self.mask is None:
            return sampler(denoiser, x, sigmas, cond=cond, generator=generator, **extra)
        m = self._rows(self.mask, rows, z.device).to(z.dtype)
        given = dict(known=(m * init).expand_as(z), known_mask=m[:, :1].expand(len(z), 1, *z.shape[2:]))

        def known(x: torch.Tensor, sigma: torch.Tensor, c: Any = None) -> torch.Tensor:
            s = sigma.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
            # the known part also goes to the network as a condition (read by networks trained with it, e.g. a video
            # DiT's frame mask; ignored by the others)
            d = denoiser(m * (init + s * z) + (1 - m) * x, sigma, replace(Cond.of(c), **given))
            return m * init + (1 - m) * d

        if self.resample == 1:
            return sampler(known, x, sigmas, cond=cond, generator=generator, **extra)
        for i in range(len(sigmas) - 1):
            pair = sigmas[i : i + 2]
            for r in range(self.resample):
                x_next = sampler(known, x, pair, cond=cond, generator=generator, **extra)
                if r + 1 < self.resample and float(pair[1]) > 0:  # diffuse back up to sigma_i and redo the step
                    up = math.sqrt(float(pair[0]) ** 2 - float(pair[1]) ** 2)
                    x = x_next + up * fresh_noise(x, generator, extra.get("noise_sampler"))
                else:
                    break
            x = x_next
        return x
