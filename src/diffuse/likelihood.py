"""Likelihood of data under a trained denoiser, in bits per dimension, by two routes.

1. ``vlb_bpd``: the discrete-time variational bound of the VP (DDPM) reverse process built from D
   (Ho et al. 2020, Eq. 5; Nichol & Dhariwal 2021, Sec. 2): L_T + sum_t L_{t-1} + L_0, where
   - L_T = KL(q(x_T | x0) || N(0, I)), the prior term;
   - L_{t-1} = KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)), p's mean being the posterior mean with x0 -> D(x_t),
     its variance beta_tilde_t ("small") or beta_t ("large");
   - L_0 = -log p(x0 | x_1), a discretized Gaussian over the 256 levels of 8-bit data (Ho et al. Eq. 13), or a
     Gaussian density for continuous data.
   Each KL term is estimated with one noise draw per example. ``steps`` < T evaluates the bound of the
   respaced K-step process (Nichol & Dhariwal Sec. 4), itself a valid bound.

2. ``ode_bpd``: the exact likelihood of the probability-flow ODE (Song et al. 2021, Sec. 4.3, App. D.2) in the
   sigma parameterization dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022, Eq. 3):
   log p_0(x) = log N(x(sigma_max); 0, sigma_max^2 I) + int_{sigma_min}^{sigma_max} div f(x(sigma), sigma) dsigma,
   integrated with Heun's method on a fixed geometric grid (it cannot hang). The divergence is exact for small
   dimensions (one vector-Jacobian product per dimension) and Hutchinson's estimate with a fixed Rademacher
   probe otherwise. Discrete data are uniformly dequantized (Song et al.'s convention), so that
   bpd = (NLL + D log 127.5) / (D ln 2) for 8-bit data in [-1, 1].
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from . import schedules
from .precond import Denoiser

LN2 = math.log(2.0)


def _respaced(abar: torch.Tensor, steps: int) -> torch.Tensor:
    """abar at ``steps`` evenly spaced timesteps including the last (float64 [steps])."""
    T = len(abar)
    idx = torch.linspace(0, T - 1, steps).round().long().unique()
    return abar.double()[idx]


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def discretized_gaussian_nll(x0: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """-log P(x0) per element for x0 on the ``bins`` levels of [-1, 1] under N(mean, std^2) integrated over
    each level's bin (the end bins reach +-inf). Elementwise, float64."""
    half = 1.0 / (bins - 1)
    inv = torch.exp(-log_std)
    upper = torch.where(x0 > 1 - half, torch.ones_like(x0), _std_normal_cdf((x0 + half - mean) * inv))
    lower = torch.where(x0 < -1 + half, torch.zeros_like(x0), _std_normal_cdf((x0 - half - mean) * inv))
    return -torch.log((upper - lower).clamp(min=1e-12))


@torch.no_grad()
def vlb_bpd(denoiser: Denoiser, x0: torch.Tensor, abar: torch.Tensor, cond: Any = None, *, steps: int | None = None,
            variance: Literal["small", "large"] = "large", decoder: Literal["discrete", "gaussian"] = "discrete",
            clip: bool = True, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The VLB in bits/dim for each example of x0 [B, ...]. Returns {"bpd", "prior", "kl", "decoder"} ([B] each,
    in bits/dim, summing to bpd). ``clip`` clamps D to [-1, 1] (part of the model; only sensible for images)."""
    a = _respaced(abar, steps or len(abar))  # [K]
    in_dtype = x0.dtype  # what the denoiser is fed; the bound is accumulated in float64
    x0 = x0.double()
    B, dims = x0.shape[0], x0[0].numel()
    flat = lambda t: t.flatten(1).sum(1)  # noqa: E731

    def noisy(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64, device=x0.device)
        xt = a[k].sqrt() * x0 + (1 - a[k]).sqrt() * eps  # VP variable
        sigma = ((1 - a[k]) / a[k]).sqrt()
        d = denoiser((xt / a[k].sqrt()).to(in_dtype), sigma.expand(B).to(device=x0.device, dtype=in_dtype), cond).double()
        return xt, (d.clamp(-1, 1) if clip else d)

    aK = a[-1]
    prior = flat(0.5 * (-torch.log1p(-aK) + (1 - aK) + aK * x0**2 - 1))  # KL(N(sqrt(aK) x0, 1-aK) || N(0, 1))
    kl = torch.zeros(B, dtype=torch.float64, device=x0.device)
    for k in range(1, len(a)):
        a_t, a_prev = a[k], a[k - 1]
        beta = 1 - a_t / a_prev
        beta_tilde = beta * (1 - a_prev) / (1 - a_t)
        c0 = a_prev.sqrt() * beta / (1 - a_t)  # the posterior mean's coefficient on x0
        _, d = noisy(k)
        sq = flat((d - x0) ** 2) * c0**2
        if variance == "small":
            kl += sq / (2 * beta_tilde)
        else:
            kl += 0.5 * dims * (torch.log(beta / beta_tilde) + beta_tilde / beta - 1) + sq / (2 * beta)
    _, d = noisy(0)
    log_std = 0.5 * torch.log(1 - a[0])  # decoder std sqrt(beta_1), beta_1 = 1 - abar_1
    if decoder == "discrete":
        dec = flat(discretized_gaussian_nll(x0, d, log_std.expand_as(x0)))
    else:
        dec = flat(0.5 * ((x0 - d) ** 2 / (1 - a[0]) + math.log(2 * math.pi) + 2 * log_std))
    to_bpd = 1.0 / (dims * LN2)
    out = {"prior": prior * to_bpd, "kl": kl * to_bpd, "decoder": dec * to_bpd}
    out["bpd"] = out["prior"] + out["kl"] + out["decoder"]
    return out


def _divergence(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, cond: Any,
                probe: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(D(x, sigma), div_x D) for x [B, ...]: exact (``probe`` None) or Hutchinson with the given probe."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        d = denoiser(x, sigma, cond)
        if probe is not None:
            (g,) = torch.autograd.grad(d, x, probe)
            div = (g * probe).flatten(1).sum(1)
        else:
            flat = d.flatten(1)
            div = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
            for j in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, j].sum(), x, retain_graph=j + 1 < flat.shape[1])
                div = div + g.flatten(1)[:, j].double()
    return d.detach(), div.double()


def ode_bpd(denoiser: Denoiser, x0: torch.Tensor, sigma_min: float, sigma_max: float, cond: Any = None, *,
            steps: int = 64, exact: bool | None = None, dequantize: bool = True,
            generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Bits/dim of x0 [B, ...] under the probability-flow ODE of ``denoiser``. ``exact`` None: exact divergence
    up to 16 dimensions, Hutchinson above. ``dequantize``: x0 holds 8-bit levels in [-1, 1]; add uniform noise
    within each level's bin and report discrete bits/dim. Returns {"bpd", "prior", "delta"} ([B])."""
    x = x0.clone()
    B, dims = x.shape[0], x[0].numel()
    if dequantize:
        x = x + (torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) * 2 - 1) / 255
    exact = dims <= 16 if exact is None else exact
    probe = None
    if not exact:
        probe = (torch.randint(0, 2, x.shape, generator=generator, device=x.device) * 2 - 1).to(x.dtype)
    grid = torch.exp(torch.linspace(math.log(sigma_min), math.log(sigma_max), steps + 1, dtype=torch.float64))

    def f(x: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        """dx/dsigma and sigma times its divergence (the integrand in u = ln sigma)."""
        d, div_d = _divergence(denoiser, x, torch.full((B,), s, dtype=x.dtype, device=x.device), cond, probe)
        return (x - d) / s, dims - div_d

    # Heun on a geometric grid: in sigma for x (exact where x grows linearly in sigma, i.e. at high noise), and
    # the divergence integral as a trapezoid in ln sigma (its integrand is smooth there).
    integral = torch.zeros(B, dtype=torch.float64, device=x.device)
    for i in range(steps):
        s, s_next = float(grid[i]), float(grid[i + 1])
        v1, g1 = f(x, s)
        v2, g2 = f(x + (s_next - s) * v1, s_next)
        x = x + (s_next - s) * 0.5 * (v1 + v2)
        integral += math.log(s_next / s) * 0.5 * (g1 + g2)
    xf = x.double().flatten(1)
    prior = -0.5 * (xf**2).sum(1) / sigma_max**2 - 0.5 * dims * math.log(2 * math.pi * sigma_max**2)
    nll = -(prior + integral)
    if dequantize:
        nll = nll + dims * math.log(127.5)
    to_bpd = 1.0 / (dims * LN2)
    return {"bpd": nll * to_bpd, "prior": -prior * to_bpd, "delta": -integral * to_bpd}


def vp_abar_for(model: Any) -> torch.Tensor:
    """The VP schedule the bound is taken over: the model's own (``model.cfg``), linear betas with T = 1000 otherwise."""
    cfg = getattr(model, "cfg", None)
    return cfg.abar() if cfg is not None and hasattr(cfg, "abar") else schedules.alphas_cumprod("linear", 1000)
