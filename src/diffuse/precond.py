"""Preconditioning: turn a raw network F(x_in, c_noise, cond) into a denoiser D(x, sigma, cond) -> x0_hat.

Karras et al. 2022 (EDM), Eq. 7 and Table 1:  D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma)).
Every parameterization (EDM, DDPM epsilon, v, x0) is one row of coefficients below; this is the only
place in the code base where the epsilon / x0 / v branch is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn

from . import schedules

Parameterization = Literal["edm", "eps", "v", "x0"]
PARAMETERIZATIONS = ("edm", "eps", "v", "x0")


class Denoiser(Protocol):
    """The one contract: x [B, *shape] and sigma [B] -> x0_hat [B, *shape], same dtype and device as x."""

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor: ...


@dataclass
class PrecondConfig:
    """How the raw network's output is read.

    param: ``edm`` (Karras et al. 2022), ``eps`` (Ho et al. 2020), ``v`` (Salimans & Ho 2022) or ``x0``.
    noise_input: ``log_sigma`` feeds c_noise = ln(sigma)/4 (EDM); ``vp_t`` feeds the continuous DDPM
      timestep index t in [0, T) of the VP schedule below (exact integers on the training grid).
    beta_schedule / T / zero_terminal_snr: the VP schedule, used by ``vp_t`` and by DDPM-style training.
    frame_noise: clips only: the share of the noise's variance that every frame shares (noise.py, PYoCo's mixed prior);
      0 is white noise. Training, sampling and editing all draw their noise from it.
    """

    param: Parameterization = "edm"
    sigma_data: float = 0.5
    noise_input: Literal["log_sigma", "vp_t"] = "log_sigma"
    beta_schedule: schedules.BetaSchedule = "linear"
    T: int = 1000
    zero_terminal_snr: bool = False
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    frame_noise: float = 0.0

    def __post_init__(self) -> None:
        from .noise import check_share

        check_share(self.frame_noise)
        if self.param not in PARAMETERIZATIONS:
            raise ValueError(f"unknown parameterization {self.param!r}; choose one of {', '.join(PARAMETERIZATIONS)}")
        if self.noise_input not in ("log_sigma", "vp_t"):
            raise ValueError(f"unknown noise_input {self.noise_input!r}; choose log_sigma or vp_t")

    def abar(self) -> torch.Tensor:
        """alphas_cumprod of the VP schedule, float64 [T]."""
        return schedules.alphas_cumprod(self.beta_schedule, self.T, self.zero_terminal_snr)


def coefficients(sigma: torch.Tensor, param: Parameterization, sigma_data: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in) for sigma [B].

    With a = 1/sqrt(1+sigma^2) (so x_vp = a x):
    - edm: c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2)   (EDM Table 1)
    - eps: x0 = x - sigma eps                -> c_skip = 1, c_out = -sigma, c_in = a
    - v:   x0 = a x_vp - sigma a v, v = a eps - sigma a x0 -> c_skip = a^2, c_out = -sigma a, c_in = a
    - x0:  c_skip = 0, c_out = 1, c_in = a
    """
    a = schedules.sigma_to_vp_scale(sigma)
    if param == "edm":
        sd2 = sigma_data**2
        c_in = (sigma**2 + sd2).rsqrt()
        return sd2 / (sigma**2 + sd2), sigma * sigma_data * c_in, c_in
    if param == "eps":
        return torch.ones_like(sigma), -sigma, a
    if param == "v":
        return a**2, -sigma * a, a
    if param == "x0":
        return torch.zeros_like(sigma), torch.ones_like(sigma), a
    raise ValueError(f"unknown parameterization {param!r}")


class Precond(nn.Module):
    """Wraps a raw network ``net(x_in, c_noise, cond)`` into the denoiser contract.

    The coefficients are computed in float32 (float64 for float64 inputs) whatever the autocast state;
    the network may run in bf16.
    """

    def __init__(self, net: nn.Module, cfg: PrecondConfig, boundary: float = 0.0):
        super().__init__()
        self.net = net
        self.cfg = cfg
        # A consistency model (distill.py): f(x, sigma) = (b / sigma) x + (1 - b / sigma) D(x, sigma), the Euler step of
        # the network's own ODE from sigma down to b. So f(x, b) = x exactly (Song et al. 2023's boundary condition),
        # and for sigma >> b f is the network's x0. 0: a plain denoiser.
        self.boundary = float(boundary)
        self.consistency: dict | None = None  # a distilled run's record (model.py), read by generate()
        if cfg.noise_input == "vp_t":
            self.register_buffer("schedule_sigmas", schedules.vp_sigmas(cfg.abar()).clamp(max=schedules.SIGMA_INF).float(), persistent=False)

    @property
    def sigma_range(self) -> tuple[float, float]:
        """(sigma_min, sigma_max) that sampling schedules should span for this model."""
        if self.cfg.noise_input == "vp_t":
            s = self.schedule_sigmas
            return float(s[0]), float(s[-1])
        return self.cfg.sigma_min, self.cfg.sigma_max

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """The network's noise-level input for sigma [B] -> [B]."""
        if self.cfg.noise_input == "vp_t":
            return schedules.sigma_to_t(sigma, self.schedule_sigmas)
        return sigma.log() / 4

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """D(x, sigma, cond) -> x0_hat. x [B, *shape], sigma [B] (or a scalar)."""
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        sigma = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1).expand(x.shape[0])  # [B]
        c_skip, c_out, c_in = coefficients(sigma, self.cfg.param, self.cfg.sigma_data)
        view = (-1,) + (1,) * (x.ndim - 1)
        xf = x.to(dtype)
        f = self.net(xf * c_in.view(view), self.c_noise(sigma), cond)  # [B, *shape], maybe bf16
        d = c_skip.view(view) * xf + c_out.view(view) * f.to(dtype)
        if self.boundary:
            keep = (self.boundary / sigma).clamp(max=1.0).view(view)  # 1 at sigma <= b: f = x there
            d = keep * xf + (1 - keep) * d
        return d.to(x.dtype)
