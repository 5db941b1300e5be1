"""Forward noising and loss weightings, all written as lambda(sigma) * ||D(x0 + sigma n, sigma) - x0||^2.

Every classic objective is a weighting of the same x0-space error (Kingma et al. 2021, "Variational
Diffusion Models", Sec. 5; Kingma & Gao 2023, Table 1):
- ``eps``: the DDPM "simple" loss ||eps_hat - eps||^2 (Ho et al. 2020, Eq. 14) = ||D - x0||^2 / sigma^2.
- ``edm``: lambda = (sigma^2 + sd^2) / (sigma sd)^2 (Karras et al. 2022, Eq. 8 and Table 1).
- ``min_snr``: min-SNR-gamma (Hang et al. 2023, Eq. 7): lambda = min(SNR, gamma) on the x0 error, SNR = 1/sigma^2.
- ``v``: ||v_hat - v||^2 = (1 + sigma^2)/sigma^2 ||D - x0||^2 (Salimans & Ho 2022).
- ``x0``: lambda = 1.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from .precond import Denoiser

Weighting = Literal["edm", "eps", "min_snr", "v", "x0"]
WEIGHTINGS = ("edm", "eps", "min_snr", "v", "x0")


def loss_weight(sigma: torch.Tensor, kind: Weighting, sigma_data: float = 0.5, gamma: float = 5.0) -> torch.Tensor:
    """lambda(sigma) for sigma [B] -> [B]."""
    snr = sigma.pow(-2)
    if kind == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    if kind == "eps":
        return snr
    if kind == "min_snr":
        return snr.clamp(max=gamma)
    if kind == "v":
        return snr + 1
    if kind == "x0":
        return torch.ones_like(sigma)
    raise ValueError(f"unknown loss weighting {kind!r}; choose one of {', '.join(WEIGHTINGS)}")


def add_noise(x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Forward process x = x0 + sigma n (EDM Eq. 1 in VE form; x / sqrt(1 + sigma^2) is the DDPM q(x_t | x0))."""
    return x0 + sigma.view((-1,) + (1,) * (x0.ndim - 1)) * noise


def denoising_loss(
    denoiser: Denoiser,
    x0: torch.Tensor,
    sigma: torch.Tensor,
    cond: Any = None,
    *,
    weighting: Weighting = "edm",
    sigma_data: float = 0.5,
    gamma: float = 5.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-example weighted denoising loss [B]: lambda(sigma) * mean over pixels of (D(x, sigma) - x0)^2."""
    if noise is None:
        noise = torch.randn_like(x0)
    x = add_noise(x0, sigma, noise)  # [B, C, H, W]
    d = denoiser(x, sigma, cond).float()  # [B, C, H, W]
    err = (d - x0.float()).pow(2).flatten(1).mean(1)  # [B]
    return loss_weight(sigma, weighting, sigma_data, gamma) * err
