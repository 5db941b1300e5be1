"""Posterior sampling with a trained diffusion model as the prior, for a linear measurement y = A x + sigma_y n.

DiffPIR and hard data consistency are denoiser -> denoiser wrappers, so they run under every sampler; DPS wraps a sampler
(it moves x between steps); DDRM is a sampler of its own (its update mixes the measurement into the noise, not only
into x0). All work in model space (operators.to_model_space).

- ``dps`` (Chung et al. 2023, Alg. 1) steps any sampler one step at a time and after each step moves x down the
  gradient of the measurement error ||y - A D(x)||, taken through the network. One backward pass per step. It is the
  one solver that works on latent models: A then measures the decoded image (latent DPS).
- ``diffpir`` (Zhu et al. 2023, Eq. 13-14): the x0 estimate is replaced by the proximal point
  argmin_z ||y - A z||^2 + rho ||z - D||^2 with rho = lambda max(sigma_y, 1e-3)^2 / sigma^2 (closed form through the
  SVD, else CG). No gradient through the network.
- ``dc``, hard data consistency (Song et al. 2022, Sec. 3.2 with lambda = 1): the x0 estimate is projected onto
  {A z = y}, D' = D + A^+ (y - A D); the final sample then explains y exactly (for sigma_y = 0).
- ``ddrm`` (Kawar et al. 2022, Eq. 7-8): DDIM(eta) in the operator's spectral basis; coefficients the measurement sees
  are pulled toward y / s, the others sample freely. Needs the operator's SVD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..errors import UserError
from ..precond import Denoiser
from ..samplers import Callback
from .operators import Operator


@dataclass
class Problem:
    """A measurement of a batch in model space: y [B, ...] = A x_m + sigma n, with x_m in [-1, 1]."""

    op: Operator
    y: torch.Tensor
    sigma: float  # model-space noise level: 2 sigma_y
    decode: Callable[[torch.Tensor], torch.Tensor] | None = None  # latent models: the decoder the measurement sees through


@torch.no_grad()
def dps(sampler: Callable[..., torch.Tensor], denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, prob: Problem,
        zeta: float = 1.0, cond: Any = None, generator: torch.Generator | None = None, callback: Callback = None) -> torch.Tensor:
    """Diffusion posterior sampling (Chung et al. 2023, Alg. 1) around any sampler: each step of ``sampler`` from x_i,
    then x_{i+1} -= (zeta / ||A||) grad_{x_i} ||y - A D(x_i)||, the gradient taken through the network at the step's
    first evaluation (DPS's zeta_i = zeta' / ||y - A D|| times grad ||y - A D||^2 is this with zeta = 2 zeta' ||A||;
    dividing by ||A|| lets one zeta serve operators of any scale)."""
    stash: dict[str, torch.Tensor] = {}
    step = zeta / prob.op.norm()

    def first_call_grad(xi: torch.Tensor, sigma: torch.Tensor, c: Any = None) -> torch.Tensor:
        if "grad" in stash:  # a second evaluation within the step (Heun): the prior alone
            return denoiser(xi, sigma, c)
        with torch.enable_grad():
            xg = xi.detach().float().requires_grad_(True)
            d = denoiser(xg, sigma, c).float()  # [B, ...]
            img = prob.decode(d) if prob.decode is not None else d
            r = prob.op.A(img) - prob.y
            norm = (r.abs() ** 2 if r.is_complex() else r**2).flatten(1).sum(1).sqrt()  # [B]
            (stash["grad"],) = torch.autograd.grad(norm.sum(), xg)
        return d.detach().to(xi.dtype)

    n = len(sigmas) - 1
    for i in range(n):
        stash.clear()
        x = sampler(first_call_grad, x, sigmas[i : i + 2], cond=cond, generator=generator)
        x = x - step * stash["grad"].to(x.dtype)
        if callback is not None:
            callback({"i": i, "n": n, "x": x, "sigma": float(sigmas[i])})
    return x


def diffpir(denoiser: Denoiser, prob: Problem, lam: float = 1.0) -> Denoiser:
    """DiffPIR's data step (Zhu et al. 2023) as a denoiser wrapper."""
    s_n = max(prob.sigma, 1e-3)

    def wrapped(x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        d = denoiser(x, sigma, cond).float()
        rho = lam * s_n**2 / float(sigma[0]) ** 2
        return prob.op.prox(d, prob.y, rho).to(x.dtype)

    return wrapped


def data_consistency(denoiser: Denoiser, prob: Problem) -> Denoiser:
    """Hard data consistency (Song et al. 2022): every x0 estimate projected onto the measurement."""

    def wrapped(x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        d = denoiser(x, sigma, cond).float()
        return prob.op.prox(d, prob.y, 0.0).to(x.dtype)

    return wrapped


@torch.no_grad()
def ddrm(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, prob: Problem, cond: Any = None,
         generator: torch.Generator | None = None, callback: Callback = None, eta: float = 0.85, eta_b: float = 1.0) -> torch.Tensor:
    """DDRM (Kawar et al. 2022), Eq. 7-8 in sigma space, each step to sigma' from the x0 estimate's coefficients c0:
    s = 0: c' = c0 + sqrt(1 - eta^2) sigma' (c - c0) / sigma + eta sigma' e;
    sigma' < sigma_y / s: c' = c0 + sqrt(1 - eta^2) sigma' (y/s - c0) / (sigma_y / s) + eta sigma' e;
    otherwise: c' = (1 - eta_b) c0 + eta_b y / s + sqrt(sigma'^2 - eta_b^2 sigma_y^2 / s^2) e.
    The first step starts from x = sigma_0 z as usual (DDRM's own start differs only in the measured coefficients)."""
    sp = prob.op.svd()
    s = sp.s.to(x.device)
    seen = s > 0
    s_safe = torch.where(seen, s, torch.ones_like(s))
    ybar = sp.ut(prob.y) / s_safe  # [B, ...] y / s on the seen coefficients
    noise_over_s = prob.sigma / s_safe  # sigma_y / s
    n = len(sigmas) - 1
    for i in range(n):
        sg, sn = float(sigmas[i]), float(sigmas[i + 1])
        d = denoiser(x, torch.full((x.shape[0],), sg, device=x.device), cond).float()
        c0, c = sp.vt(d), sp.vt(x.float())
        e = sp.vt(torch.randn(x.shape, generator=generator, device=x.device))
        free = c0 + math.sqrt(1 - eta**2) * sn * (c - c0) / sg + eta * sn * e
        quiet = c0 + math.sqrt(1 - eta**2) * sn * (ybar - c0) / torch.clamp(noise_over_s, min=1e-12) + eta * sn * e
        pulled = (1 - eta_b) * c0 + eta_b * ybar + torch.sqrt(torch.clamp(sn**2 - eta_b**2 * noise_over_s**2, min=0)) * e
        new = torch.where(~seen, free, torch.where(sn < noise_over_s, quiet, pulled))
        x = sp.v(new).to(x.dtype)
        if callback is not None:
            callback({"i": i, "n": n, "x": x, "sigma": sg, "denoised": d})
    return x


@dataclass
class Solver:
    """How a solver runs: a wrapper (with the sampler it defaults to) or a sampler of its own, and its defaults."""

    name: str
    steps: int
    sampler: str | None  # default sampler; None: the solver is a sampler of its own (ddrm)
    kind: str = "wrapper"  # wrapper (a denoiser wrapper) | stepper (steps a sampler: dps) | sampler (ddrm)
    needs_svd: bool = False
    latent_ok: bool = False
    knob_default: float = 1.0  # the default of its strength knob (DPS zeta, DiffPIR lambda, DDRM eta)
    wrapper: Callable[[Denoiser, Problem, float], Denoiser] | None = None  # kind "wrapper": (denoiser, problem, knob) -> denoiser

    def wrap(self, denoiser: Denoiser, prob: Problem, knob: float) -> Denoiser:
        return self.wrapper(denoiser, prob, knob)

    def check(self, op: Operator, latent: bool) -> None:
        """Refuse (one line) a combination this solver cannot run."""
        if latent and not self.latent_ok:
            raise UserError(f"--solver {self.name} needs a linear measurement of the network's own space; this is a latent "
                            "model (its decoder is not linear): use --solver dps, which measures through the decoder")
        if self.needs_svd and op.svd() is None:
            raise UserError(f"--solver {self.name} needs the operator's SVD, which the {op.name} operator of this size does "
                            "not provide: use --solver dps, diffpir or dc")


SOLVERS: dict[str, Solver] = {
    "dps": Solver("dps", 100, "ddpm", "stepper", latent_ok=True, knob_default=1.0),
    "diffpir": Solver("diffpir", 50, "ddpm", wrapper=diffpir),
    "dc": Solver("dc", 50, "ddpm", wrapper=lambda denoiser, prob, knob: data_consistency(denoiser, prob)),
    "ddrm": Solver("ddrm", 20, None, "sampler", needs_svd=True, knob_default=0.85),
}


def get_solver(name: str) -> Solver:
    if name not in SOLVERS:
        raise UserError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}")
    return SOLVERS[name]
