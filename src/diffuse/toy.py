"""An isotropic Gaussian mixture with its exact denoiser: the analytic reference for samplers and likelihoods.

If x0 ~ sum_k pi_k N(mu_k, s_k^2 I) and x = x0 + sigma n, then x ~ sum_k pi_k N(mu_k, (s_k^2 + sigma^2) I) and
E[x0 | x] = sum_k w_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k)), w_k the posterior responsibilities.
"""

from __future__ import annotations

import math
from typing import Any

import torch


class GaussianMixture:
    """pi [K], mu [K, D], s [K] (per-component isotropic std)."""

    def __init__(self, pi: torch.Tensor, mu: torch.Tensor, s: torch.Tensor):
        self.pi, self.mu, self.s = pi.double() / pi.sum(), mu.double(), s.double()

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n exact samples [n, D]."""
        k = torch.multinomial(self.pi, n, replacement=True, generator=generator)  # [n]
        return self.mu[k] + self.s[k, None] * torch.randn(n, self.mu.shape[1], generator=generator, dtype=torch.float64)

    def _log_resp(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        var = self.s[None] ** 2 + sigma[:, None] ** 2  # [B, K]
        d = x.shape[1]
        sq = (x[:, None, :] - self.mu[None]).pow(2).sum(-1)  # [B, K]
        logp = self.pi.log()[None] - 0.5 * sq / var - 0.5 * d * (2 * math.pi * var).log()  # [B, K]
        return logp, var

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float = 0.0) -> torch.Tensor:
        """log density of x [B, D] under the mixture convolved with N(0, sigma^2 I). [B]"""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
        logp, _ = self._log_resp(x.double(), sigma)
        return torch.logsumexp(logp, 1)

    def denoiser(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """The exact D(x, sigma) = E[x0 | x] for x [B, D], sigma [B]; computed in float64, returned in x's dtype."""
        xd, sd = x.double(), sigma.double().expand(x.shape[0])
        logp, var = self._log_resp(xd, sd)
        w = torch.softmax(logp, 1)  # [B, K]
        shrink = self.s[None] ** 2 / var  # [B, K]
        comp = self.mu[None] + shrink[..., None] * (xd[:, None, :] - self.mu[None])  # [B, K, D]
        return (w[..., None] * comp).sum(1).to(x.dtype)

    def component(self, x: torch.Tensor) -> torch.Tensor:
        """Most likely component of each clean point x [B, D]. [B]"""
        logp, _ = self._log_resp(x.double(), torch.zeros(x.shape[0], dtype=torch.float64))
        return logp.argmax(1)
