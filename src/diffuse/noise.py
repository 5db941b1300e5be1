"""The noise n of the forward process x = x0 + sigma n: white (every element its own draw), or, for clips, a noise that
frames share: PYoCo's mixed prior (Ge et al. 2023, "Preserve Your Own Correlation", Sec. 3.2), n_i = sqrt(share) e +
sqrt(1 - share) e_i, a part e common to every frame at one place plus a part e_i of frame i's own. Every element keeps
unit variance; any two frames' noise at one place correlates by ``share``. A model trained on it sees the clip's
common content and its motion at different noise levels (the difference of two frames is less noisy than a frame).

The probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma holds for any fixed noise covariance (x_sigma = x0 +
sigma n with E[n | x_sigma] = (x - D) / sigma), so the deterministic samplers run unchanged from a start drawn from
this prior; the stochastic ones (DDPM, DDIM with eta > 0, Heun with churn, consistency) take their fresh noise from
it through ``noise_sampler``, as in k-diffusion. ``share`` 0 is white noise, bit for bit.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

FRAME_DIM = 2  # clips are [B, C, T, H, W] everywhere (modalities/video.py)
NoiseSampler = Callable[[torch.Tensor], torch.Tensor]  # x -> fresh noise shaped like x


def check_share(share: float) -> None:
    if not 0 <= share < 1:
        raise ValueError(f"the frames' shared noise is a share of its variance in [0, 1), got {share}")


def color(z: torch.Tensor, share: float) -> torch.Tensor:
    """White noise z [B, C, T, H, W] -> the mixed prior's: the symmetric square root of the frames' covariance
    (1 - share) I + share 11^T applied along T, sqrt(1 - share) z + (sqrt(1 - share + share T) - sqrt(1 - share)) mean_T z.
    share 0 returns z itself."""
    if share == 0:
        return z
    check_share(share)
    if z.ndim != 5:
        raise ValueError(f"noise shared across frames needs clips [B, C, T, H, W], got shape {tuple(z.shape)}")
    t = z.shape[FRAME_DIM]
    a = math.sqrt(1 - share)
    b = math.sqrt(1 - share + share * t) - a
    return a * z + b * z.mean(FRAME_DIM, keepdim=True)


def covariance_sqrt(t: int, share: float) -> torch.Tensor:
    """The frames' covariance square root [T, T] that ``color`` applies (for tests and analytic checks)."""
    return color(torch.eye(t, dtype=torch.float64).reshape(t, 1, t, 1, 1), share).reshape(t, t).T


def sampler_noise(share: float, generator: torch.Generator | None) -> NoiseSampler | None:
    """The stochastic samplers' fresh noise under the prior (None for white noise: they draw their own)."""
    if share == 0:
        return None
    check_share(share)
    return lambda x: color(torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype), share)
