"""Samplers as pure functions: ``sampler(denoiser, x, sigmas, *, cond, generator, callback, **opts) -> x``.

``x`` is the starting point, already scaled to ``sigmas[0]`` (``x = sigmas[0] * z``); ``sigmas`` [N + 1] is
decreasing and ends in 0. A sampler calls only the denoiser contract D(x, sigma, cond) -> x0_hat, so
every sampler works with every parameterization, network, guidance and editing wrapper.
``callback`` receives ``{"i", "n", "x", "sigma", "denoised"}`` after each step. ``noise_sampler`` (x -> noise like x)
draws the stochastic samplers' fresh noise where the model was trained on other than white noise (noise.py); by
default they draw white noise from ``generator``; the deterministic ones draw none.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .noise import NoiseSampler
from .precond import Denoiser

Callback = Callable[[dict], None] | None


def _sig(s: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.as_tensor(s, device=x.device, dtype=dtype).expand(x.shape[0])  # [B]


def fresh_noise(x: torch.Tensor, generator: torch.Generator | None, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Noise like x: from ``noise_sampler`` where given (the run's prior, noise.py), else white from ``generator``."""
    if noise_sampler is not None:
        return noise_sampler(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@torch.no_grad()
def ddim(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, cond: Any = None, generator: torch.Generator | None = None,
         callback: Callback = None, eta: float = 0.0, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """DDIM (Song et al. 2021a, Eq. 12 with sigma_t(eta) of Eq. 16), written in sigma space.

    Dividing the VP update by sqrt(abar_{t-1}) gives x' = x0_hat + sigma_down eps_hat + sigma_up z with
    sigma_up = eta sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2) and sigma_down = sqrt(sigma'^2 - sigma_up^2).
    eta = 0 is the deterministic DDIM (identical to Euler on the probability-flow ODE); eta = 1 on the
    DDPM timesteps is DDPM ancestral sampling with the posterior variance beta_tilde.
    """
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = denoiser(x, _sig(s, x), cond)  # [B, ...]
        if s_next == 0:
            x = d
        else:
            s_up = min(float(s_next), eta * math.sqrt(float(s_next**2 * (s**2 - s_next**2) / s**2)))
            s_down = math.sqrt(float(s_next**2) - s_up**2)
            x = d + (s_down / float(s)) * (x - d)
            if s_up > 0:
                x = x + s_up * fresh_noise(x, generator, noise_sampler)
        if callback is not None:
            callback({"i": i, "n": n, "x": x, "sigma": float(s), "denoised": d})
    return x


def ddpm(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, cond: Any = None, generator: torch.Generator | None = None,
         callback: Callback = None, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_tilde_t): DDIM with eta = 1."""
    return ddim(denoiser, x, sigmas, cond=cond, generator=generator, callback=callback, eta=1.0, noise_sampler=noise_sampler)


def euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, cond: Any = None, generator: torch.Generator | None = None,
          callback: Callback = None, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Euler on the probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Eq. 3).

    Algebraically the same update as deterministic DDIM, so it shares that code.
    """
    return ddim(denoiser, x, sigmas, cond=cond, generator=generator, callback=callback, eta=0.0)


@torch.no_grad()
def heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, cond: Any = None, generator: torch.Generator | None = None,
         callback: Callback = None, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"),
         s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Heun's 2nd-order method, Karras et al. 2022 Algorithm 2 (Algorithm 1 when s_churn = 0).

    With churn, each step first raises the noise level to sigma_hat = sigma (1 + gamma) by adding fresh noise.
    The last step (to sigma = 0) is a plain Euler step. 2N - 1 denoiser calls.
    """
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s <= s_tmax else 0.0
        s_hat = s * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s**2) * s_noise * fresh_noise(x, generator, noise_sampler)
        d = denoiser(x, _sig(s_hat, x), cond)
        slope = (x - d) / s_hat  # [B, ...]
        x_next = x + (s_next - s_hat) * slope
        if s_next != 0:
            d2 = denoiser(x_next, _sig(s_next, x), cond)
            slope2 = (x_next - d2) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (slope + slope2)
        x = x_next
        if callback is not None:
            callback({"i": i, "n": n, "x": x, "sigma": s, "denoised": d})
    return x


@torch.no_grad()
def dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, cond: Any = None, generator: torch.Generator | None = None,
             callback: Callback = None, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 ("DPM-Solver++"), Algorithm 2, in the data-prediction form.

    With lambda = -ln(sigma) and h = lambda' - lambda: x' = (sigma'/sigma) x - expm1(-h) D_eff, where
    D_eff = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1}/h_i (first-order on the first and last step).
    """
    n = len(sigmas) - 1
    d_old, h_old = None, None
    for i in range(n):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, _sig(s, x), cond)
        if s_next == 0:
            x = d
        else:
            h = math.log(s) - math.log(s_next)
            d_eff = d
            if d_old is not None:
                r = h_old / h
                d_eff = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * d_old
            x = (s_next / s) * x - math.expm1(-h) * d_eff
            h_old = h
        d_old = d
        if callback is not None:
            callback({"i": i, "n": n, "x": x, "sigma": s, "denoised": d})
    return x


@torch.no_grad()
def consistency(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, cond: Any = None, generator: torch.Generator | None = None,
                callback: Callback = None, noise_sampler: NoiseSampler | None = None) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency function f, which keeps the
    denoiser contract (f(x, sigma) is the clean end of x's ODE trajectory): x0 = f(x, sigma_i), then fresh noise up to
    sigma_{i+1}, and f again. One evaluation per step; with a plain denoiser it is ancestral sampling with full renoising.
    (Algorithm 1 renoises to sqrt(sigma'^2 - sigma_min^2); at sigma_min = 0.002 that differs from sigma' by < 1e-5.)"""
    n = len(sigmas) - 1
    for i in range(n):
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, _sig(s, x), cond)
        x = d if s_next == 0 else d + s_next * fresh_noise(d, generator, noise_sampler)
        if callback is not None:
            callback({"i": i, "n": n, "x": x, "sigma": s, "denoised": d})
    return x


SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {"ddpm": ddpm, "ddim": ddim, "euler": euler, "heun": heun, "dpmpp_2m": dpmpp_2m,
                                                    "consistency": consistency}


def nfe(sampler: str, steps: int) -> int:
    """Denoiser evaluations that ``steps`` steps of ``sampler`` cost (before guidance doubling)."""
    return 2 * steps - 1 if sampler == "heun" else steps


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """Look a sampler up by name, with a clear error listing the choices."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
