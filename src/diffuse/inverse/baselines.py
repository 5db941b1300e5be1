"""Classical reconstructions the diffusion solvers are measured against: zero-filled (the adjoint / pseudo-inverse),
TV-regularised least squares, and (CT) filtered back-projection (ct.CT.fbp)."""

from __future__ import annotations

import torch

from .operators import Operator


def psnr(x: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1], per image [N] (a perfect match counts as 100 dB)."""
    return 10 * torch.log10(1 / ((x - truth) ** 2).flatten(1).mean(1).clamp_min(1e-10))


def zero_filled(op: Operator, y: torch.Tensor) -> torch.Tensor:
    """The minimum-norm image that explains y (A^+ y; for MRI the zero-filled inverse FFT), clipped to [0, 1]."""
    return op.pinv(y).clamp(0, 1)


def _grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with a zero last row / column: [B, C, H, W] -> [B, C, 2, H, W]."""
    gy = torch.zeros_like(x)
    gx = torch.zeros_like(x)
    gy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    gx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack([gy, gx], 2)


def _div(p: torch.Tensor) -> torch.Tensor:
    """The negative adjoint of ``_grad``: <grad x, p> = -<x, div p>."""
    py, px = p[:, :, 0], p[:, :, 1]
    dy = torch.zeros_like(py)
    dx = torch.zeros_like(px)
    dy[..., 0, :] = py[..., 0, :]
    dy[..., 1:-1, :] = py[..., 1:-1, :] - py[..., :-2, :]
    dy[..., -1, :] = -py[..., -2, :]
    dx[..., :, 0] = px[..., :, 0]
    dx[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    dx[..., :, -1] = -px[..., :, -2]
    return dy + dx


@torch.no_grad()
def tv(op: Operator, y: torch.Tensor, lam: float, iters: int = 300) -> torch.Tensor:
    """argmin_{x in [0, 1]} 1/2 ||A x - y||^2 + lam TV(x), isotropic TV, by PDHG (Chambolle & Pock 2011, Alg. 1) with
    K = [A; grad] and step sizes tau = sigma = 0.99 / ||K||."""
    L = (op.norm() ** 2 + 8.0) ** 0.5  # ||grad||^2 <= 8
    tau = sigma = 0.99 / L
    x = zero_filled(op, y)
    xb = x.clone()
    q = torch.zeros_like(y)  # dual of the data term
    p = torch.zeros_like(_grad(x))  # dual of TV
    for _ in range(iters):
        q = (q + sigma * (op.A(xb) - y)) / (1 + sigma)  # prox of the conjugate of 1/2 ||. - y||^2
        p = p + sigma * _grad(xb)
        norm = p.pow(2).sum(2, keepdim=True).sqrt()
        p = p / torch.clamp(norm / lam, min=1.0) if lam > 0 else torch.zeros_like(p)
        x_new = (x - tau * (op.AT(q) - _div(p))).clamp(0, 1)
        xb = 2 * x_new - x
        x = x_new
    return x
