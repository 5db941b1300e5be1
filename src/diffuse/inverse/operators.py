"""Linear measurement operators y = A x + sigma_y n on images x [B, C, H, W], each with its exact adjoint.

Every operator gives ``A`` and ``AT`` (the adjoint for the real inner product: <A x, y> = <x, A^T y>, with
<a, b> = Re sum conj(a) b for complex measurements), a measurement-noise level ``sigma_y`` and ``noise`` (a draw of n),
and where it is cheap a singular value decomposition in the form DDRM needs (``Spectral``): coefficients
c = V^T x, singular values s and measurement coefficients U^T y with U^T y = s * V^T x. From that follow the
pseudo-inverse and the proximal step; an operator without one falls back to conjugate gradients.

All operators are linear in the image's own units. Solvers work in model space x_m = 2 x - 1, where the measurement
becomes y_m = 2 y - A(1) and the noise 2 sigma_y (``to_model_space``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..errors import UserError


@dataclass
class Spectral:
    """A (possibly complex, unitary) SVD A = U diag(s) V^T: vt(x) -> coefficients, v(c) -> x, s >= 0 broadcastable to the
    coefficients, ut(y) -> measurement coefficients with ut(A x) = s * vt(x). For FFT bases the coefficients of a real
    image are Hermitian-symmetric and s is symmetric too, so every per-coefficient real combination maps back to a real
    image (``v`` takes the real part)."""

    vt: Callable[[torch.Tensor], torch.Tensor]
    v: Callable[[torch.Tensor], torch.Tensor]
    s: torch.Tensor
    ut: Callable[[torch.Tensor], torch.Tensor]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real inner product per batch row: Re sum conj(a) b  [B]."""
    return (a.conj() * b).real.flatten(1).sum(1) if a.is_complex() else (a * b).flatten(1).sum(1)


class Operator:
    """A linear measurement of images of ``shape`` (C, H, W) with noise ``sigma_y`` (image units, [0, 1] images)."""

    name = "?"

    def __init__(self, shape: tuple[int, int, int], sigma_y: float = 0.0) -> None:
        if not math.isfinite(sigma_y) or sigma_y < 0:
            raise UserError(f"--sigma-y must be a finite number >= 0, got {sigma_y}")
        self.shape = tuple(shape)
        self.sigma_y = float(sigma_y)

    # -- the operator ------------------------------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def AT(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def svd(self) -> Spectral | None:
        """The decomposition DDRM needs, or None where this operator has no cheap one."""
        return None

    def params(self) -> dict[str, Any]:
        """What rebuilds this operator (JSON-safe numbers; arrays such as a mask go in ``arrays``)."""
        return {"operator": self.name, "sigma_y": self.sigma_y}

    def arrays(self) -> dict[str, torch.Tensor]:
        """Arrays that define this operator, written beside the measurement (e.g. the MRI k-space mask)."""
        return {}

    def measurement_shape(self, batch: int) -> tuple[int, ...]:
        return tuple(self.A(torch.zeros(batch, *self.shape)).shape)

    # -- derived -----------------------------------------------------------------------------------------------
    def noise(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A draw of the measurement noise n (unit level) for measurements like y: white noise in the measurement space
        (for Fourier measurements of real images, the transform of white image-space noise, so it keeps the symmetry)."""
        return torch.randn(y.shape, generator=generator, dtype=y.dtype)

    def measure(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y = A x + sigma_y n, the simulated measurement of images x [B, C, H, W] in [0, 1]."""
        y = self.A(x)
        return y if self.sigma_y == 0 else y + self.sigma_y * self.noise(y, generator)

    def pinv(self, y: torch.Tensor, iters: int = 50) -> torch.Tensor:
        """A^+ y: the minimum-norm least-squares image (via the SVD, else conjugate gradients on A^T A)."""
        sp = self.svd()
        if sp is not None:
            yb = sp.ut(y)
            return sp.v(torch.where(sp.s > 0, yb / sp.s.clamp_min(1e-30), torch.zeros_like(yb)))
        return cg(lambda x: self.AT(self.A(x)), self.AT(y), iters)

    def prox(self, d: torch.Tensor, y: torch.Tensor, rho: float, iters: int = 30) -> torch.Tensor:
        """argmin_z ||y - A z||^2 + rho ||z - d||^2 (rho = 0: the projection of d onto {A z = y} nearest to d)."""
        sp = self.svd()
        if sp is not None:
            db, yb = sp.vt(d), sp.ut(y)
            if rho == 0:
                return sp.v(torch.where(sp.s > 0, yb / sp.s.clamp_min(1e-30), db))
            return sp.v((sp.s * yb + rho * db) / (sp.s**2 + rho))
        if rho == 0:
            return d + self.pinv(y - self.A(d), iters)
        return cg(lambda z: self.AT(self.A(z)) + rho * z, self.AT(y) + rho * d, iters, x0=d)

    def norm(self) -> float:
        """||A||_2 (power iteration on A^T A, cached): solvers scale gradient steps by it, so a step size carries over
        between operators (a CT sinogram sums ~D pixels per bin; a mask keeps one)."""
        if getattr(self, "_norm", None) is None:
            x = torch.randn(1, *self.shape, generator=torch.Generator().manual_seed(0))
            for _ in range(30):
                x = self.AT(self.A(x))
                x = x / _dot(x, x).sqrt().view(-1, *[1] * (x.ndim - 1))
            self._norm = float(_dot(self.A(x), self.A(x)).sqrt())
        return self._norm

    def view(self, y: torch.Tensor) -> torch.Tensor:
        """An image-shaped picture of measurements y (for grids): A^+ y (masked image, nearest upsampling, zero-filled
        MRI, minimum-norm CT); blur shows y itself."""
        return self.pinv(y)

    def residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """||A x - y|| / ||y|| per image [B]: how far a reconstruction is from explaining the measurement."""
        r = self.A(x) - y
        return _dot(r, r).sqrt() / _dot(y, y).sqrt().clamp_min(1e-12)

    def to_model_space(self, y: torch.Tensor) -> torch.Tensor:
        """The measurement of model-space images x_m = 2 x - 1: y_m = 2 y - A(1)."""
        return 2 * y - self.A(torch.ones(1, *self.shape, dtype=torch.float32))


def cg(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int, x0: torch.Tensor | None = None) -> torch.Tensor:
    """Conjugate gradients for a symmetric positive (semi-)definite ``apply``, each batch row on its own."""
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - apply(x)
    p, rr = r.clone(), _dot(r, r)
    view = (-1,) + (1,) * (b.ndim - 1)
    for _ in range(iters):
        ap = apply(p)
        alpha = rr / _dot(p, ap).clamp_min(1e-30)
        x = x + alpha.view(view) * p
        r = r - alpha.view(view) * ap
        rr_new = _dot(r, r)
        if float(rr_new.max()) < 1e-20:
            break
        p = r + (rr_new / rr.clamp_min(1e-30)).view(view) * p
        rr = rr_new
    return x


class Inpaint(Operator):
    """Masking: y = m * x with m = 1 on known pixels (the measurement keeps the image's shape, zeros elsewhere).
    Its SVD is the identity basis with s = m."""

    name = "inpaint"

    def __init__(self, shape, mask: torch.Tensor, sigma_y: float = 0.0) -> None:
        super().__init__(shape, sigma_y)
        self.mask = (mask > 0.5).float().expand(1, *shape).clone()  # [1, C, H, W]

    def A(self, x):
        return self.mask * x

    AT = A

    def noise(self, y, generator=None):
        return self.mask * torch.randn(y.shape, generator=generator, dtype=y.dtype)

    def svd(self):
        return Spectral(lambda x: x, lambda c: c, self.mask, lambda y: y)

    def arrays(self):
        return {"mask": self.mask[0]}


class Downsample(Operator):
    """Super-resolution: y = the f x f block average of x. Per block A is the row 1/f^2 (1, ..., 1), of norm 1/f: the SVD
    uses an orthonormal basis of each block whose first vector is the constant one, with s = (1/f, 0, ..., 0)."""

    name = "superres"

    def __init__(self, shape, factor: int, sigma_y: float = 0.0) -> None:
        super().__init__(shape, sigma_y)
        c, h, w = self.shape
        if factor < 2 or h % factor or w % factor:
            raise UserError(f"--factor must be an integer >= 2 that divides the image size {h}x{w}, got {factor}")
        self.f = factor
        basis = torch.eye(factor * factor)
        basis[:, 0] = 1.0
        q, _ = torch.linalg.qr(basis)  # [f^2, f^2], first column = +-1/f
        self.q = q * torch.sign(q[0, 0])

    def A(self, x):
        return F.avg_pool2d(x, self.f)

    def AT(self, y):
        return F.interpolate(y, scale_factor=self.f, mode="nearest") / self.f**2

    def _blocks(self, x):  # [B, C, H, W] -> [B, C, H/f, W/f, f^2]
        b, c, h, w = x.shape
        f = self.f
        return x.reshape(b, c, h // f, f, w // f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // f, w // f, f * f)

    def _unblocks(self, t):
        b, c, hh, ww, _ = t.shape
        f = self.f
        return t.reshape(b, c, hh, ww, f, f).permute(0, 1, 2, 4, 3, 5).reshape(b, c, hh * f, ww * f)

    def svd(self):
        s = torch.zeros(self.f * self.f)
        s[0] = 1.0 / self.f

        def ut(y):
            return F.pad(y.unsqueeze(-1), (0, self.f * self.f - 1))

        return Spectral(lambda x: self._blocks(x) @ self.q, lambda c: self._unblocks(c @ self.q.T), s, ut)

    def params(self):
        return {**super().params(), "factor": self.f}


class _Fourier(Operator):
    """Operators diagonal in the orthonormal 2-D DFT of real images: A = F^H diag(h) F (blur) or M F (MRI)."""

    def _f(self, x):
        return torch.fft.fft2(x, norm="ortho")

    def _fi(self, k):
        return torch.fft.ifft2(k, norm="ortho").real


class Blur(_Fourier):
    """Gaussian blur of width ``sigma`` pixels with periodic boundaries, through the FFT: A = F^H diag(h) F, h real and
    symmetric (the kernel is), so A = A^T and the SVD is F with s = |h| (the sign goes into U), truncated below 1e-3
    (those frequencies count as unmeasured)."""

    name = "blur"

    def __init__(self, shape, sigma: float = 1.0, sigma_y: float = 0.0) -> None:
        super().__init__(shape, sigma_y)
        if not math.isfinite(sigma) or not 0 < sigma <= 64:
            raise UserError(f"--blur-sigma must be in (0, 64] pixels, got {sigma}")
        self.sigma = float(sigma)
        _, h, w = self.shape
        dy = torch.minimum(torch.arange(h), h - torch.arange(h)).double()
        dx = torch.minimum(torch.arange(w), w - torch.arange(w)).double()
        k = torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2 * sigma**2))
        self.h = torch.fft.fft2(k / k.sum()).real.float()  # [H, W], real: the kernel is symmetric about 0

    def A(self, x):
        return self._fi(self.h * self._f(x))

    AT = A

    def view(self, y):
        return y

    def svd(self):
        sign = torch.where(self.h < 0, -1.0, 1.0)
        s = torch.where(self.h.abs() > 1e-3, self.h.abs(), torch.zeros_like(self.h))  # truncated: 1/s stays < 1000
        return Spectral(self._f, self._fi, s, lambda y: sign * (s > 0) * self._f(y))

    def params(self):
        return {**super().params(), "blur_sigma": self.sigma}


def mri_mask(h: int, acceleration: float, center_fraction: float | None = None, seed: int = 0) -> torch.Tensor:
    """A Cartesian undersampling mask [H] over phase-encoding lines (DFT row index, unshifted): a fully sampled centre
    (|k| <= round(f H / 2) with fastMRI's fraction f = 0.32 / R) plus random lines while that brings the count nearer
    H / R. The set is symmetric (k and -k together): for a real image line -k is the conjugate of line k, so an
    asymmetric mask would measure more than 1/R of the image. ``MRI.acceleration`` reports the rate it achieved."""
    if not math.isfinite(acceleration) or acceleration <= 1:
        raise UserError(f"--acceleration must be > 1, got {acceleration}")
    freq = (torch.fft.fftfreq(h) * h).round().abs()  # |k| of each row: 0, 1, ..., 1
    center_fraction = 0.32 / acceleration if center_fraction is None else center_fraction
    half = max(1, round(center_fraction * h / 2))
    mask = freq <= half
    target = h / acceleration
    g = torch.Generator().manual_seed(seed)
    for k in torch.randperm(h // 2 + 1, generator=g).tolist():
        if k <= half:
            continue
        grown = mask | (freq == k)
        if abs(float(grown.sum()) - target) >= abs(float(mask.sum()) - target):
            break
        mask = grown
    return mask.float()


class MRI(_Fourier):
    """Single-coil Cartesian MRI: y = M F x, the orthonormal 2-D DFT kept on the sampled lines (zeros elsewhere, complex).
    A^T y = Re F^H (M y); the SVD is F with s = M."""

    name = "mri"

    def __init__(self, shape, acceleration: float = 4.0, sigma_y: float = 0.0, seed: int = 0, mask: torch.Tensor | None = None) -> None:
        super().__init__(shape, sigma_y)
        _, h, w = self.shape
        line = mri_mask(h, acceleration, seed=seed) if mask is None else mask.float().reshape(-1)
        if line.numel() != h:
            raise UserError(f"the k-space mask has {line.numel()} lines but the image has {h} rows")
        self.acceleration = float(acceleration) if mask is None else h / max(float(line.sum()), 1.0)
        self.mask = line[:, None].expand(h, w).clone()  # [H, W]

    def noise(self, y, generator=None):
        return self.A(torch.randn((y.shape[0], *self.shape), generator=generator))

    def A(self, x):
        return self.mask * self._f(x)

    def AT(self, y):
        return self._fi(self.mask * y)

    def svd(self):
        return Spectral(self._f, self._fi, self.mask, lambda y: self.mask * y)

    def params(self):
        return {**super().params(), "acceleration": self.acceleration}

    def arrays(self):
        return {"mask": self.mask[:, 0]}
