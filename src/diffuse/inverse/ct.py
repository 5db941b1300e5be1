"""Sparse-view parallel-beam CT: the Radon transform as an explicit sparse matrix, so A^T (back-projection) is exact.

The geometry is scikit-image's ``radon(image, theta, circle=False)``: the image is zero-padded to its diagonal D, the
detector has D bins of one pixel centred on the image, and each angle's line integrals are sums of bilinear samples one
pixel apart along the ray. The test checks our A against scikit-image on the same image, so its ``iradon`` (filtered
back-projection) is a valid baseline on our sinograms.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import UserError
from .operators import Operator, Spectral

# Dense SVD (what DDRM needs) only up to this many pixels: 64 x 64 takes seconds; far above it, minutes and gigabytes.
MAX_SVD_PIXELS = 4096


def radon_matrix(h: int, w: int, theta_deg: np.ndarray) -> tuple[torch.Tensor, int]:
    """The sparse [len(theta) * D, h * w] matrix of the Radon transform (scikit-image's circle=False geometry), and D."""
    n = max(h, w)
    d = n + int(math.ceil(math.sqrt(2) * n - n))
    c = d // 2
    pad = (c - h // 2, c - w // 2)  # where image pixel (0, 0) sits in the padded square
    t = np.arange(d) - c  # detector offset
    s = np.arange(d) - c  # position along the ray
    rows, cols, vals = [], [], []
    for a, ang in enumerate(np.deg2rad(theta_deg)):
        cos, sin = math.cos(ang), math.sin(ang)
        tt, ss = np.meshgrid(t, s, indexing="ij")  # [D detectors, D samples]
        r = c - sin * tt + cos * ss - pad[0]  # image row of each sample
        q = c + cos * tt + sin * ss - pad[1]  # image column
        r0, q0 = np.floor(r), np.floor(q)
        for dr in (0, 1):
            for dq in (0, 1):
                wgt = (1 - np.abs(r - (r0 + dr))) * (1 - np.abs(q - (q0 + dq)))
                ri, qi = (r0 + dr).astype(int), (q0 + dq).astype(int)
                ok = (ri >= 0) & (ri < h) & (qi >= 0) & (qi < w) & (wgt > 0)
                det = np.broadcast_to(np.arange(d)[:, None], r.shape)
                rows.append((a * d + det)[ok])
                cols.append((ri * w + qi)[ok])
                vals.append(wgt[ok])
    idx = torch.from_numpy(np.stack([np.concatenate(rows), np.concatenate(cols)]))
    mat = torch.sparse_coo_tensor(idx, torch.from_numpy(np.concatenate(vals)), (len(theta_deg) * d, h * w),
                                  check_invariants=True).coalesce()
    return mat.double(), d


class CT(Operator):
    """y = the sinogram [B, C, angles, D] at ``angles`` views evenly spread over 180 degrees; A^T is back-projection."""

    name = "ct"

    def __init__(self, shape, angles: int = 16, sigma_y: float = 0.0) -> None:
        super().__init__(shape, sigma_y)
        if not 1 <= angles <= 720:
            raise UserError(f"--angles must be from 1 to 720, got {angles}")
        _, h, w = self.shape
        self.angles = int(angles)
        self.theta = np.linspace(0.0, 180.0, angles, endpoint=False)
        mat, self.detectors = radon_matrix(h, w, self.theta)
        self.mat = mat.float()
        self.mat_t = mat.t().coalesce().float()
        self._svd: Spectral | None | bool = False

    def A(self, x):
        b, c, h, w = x.shape
        y = torch.sparse.mm(self.mat, x.reshape(b * c, h * w).t().float()).t()  # [B*C, angles*D]
        return y.reshape(b, c, self.angles, self.detectors).to(x.dtype)

    def AT(self, y):
        b, c = y.shape[:2]
        _, h, w = self.shape
        x = torch.sparse.mm(self.mat_t, y.reshape(b * c, -1).t().float()).t()
        return x.reshape(b, c, h, w).to(y.dtype)

    def svd(self):
        if self._svd is False:
            self._svd = self._dense_svd() if self.shape[1] * self.shape[2] <= MAX_SVD_PIXELS else None
        return self._svd

    def _dense_svd(self) -> Spectral:
        """Truncated SVD of the dense matrix (singular values below 1e-3 of the largest count as zero)."""
        u, s, vh = torch.linalg.svd(self.mat.to_dense().double(), full_matrices=True)
        _, h, w = self.shape
        n, m = h * w, u.shape[0]
        r = len(s)
        s = torch.where(s > 1e-3 * s[0], s, torch.zeros_like(s))
        s_full = torch.zeros(n, dtype=torch.float64)
        s_full[:r] = s
        u, vh, s_full = u.float(), vh.float(), s_full.float()

        def vt(x):
            return x.reshape(*x.shape[:2], n) @ vh.T

        def v(cf):
            return (cf @ vh).reshape(*cf.shape[:2], h, w)

        def ut(y):
            coef = y.reshape(*y.shape[:2], m) @ u[:, :r]
            return torch.nn.functional.pad(coef, (0, n - r)) * (s_full > 0)

        return Spectral(vt, v, s_full, ut)

    def params(self):
        return {**super().params(), "angles": self.angles}

    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection (scikit-image's ``iradon``, ramp filter) of sinograms [B, C, angles, D]."""
        from skimage.transform import iradon

        _, h, w = self.shape
        out = np.stack([[iradon(s.T.double().numpy(), self.theta, output_size=max(h, w), circle=False) for s in img] for img in y])
        return torch.from_numpy(out[..., :h, :w]).float()
