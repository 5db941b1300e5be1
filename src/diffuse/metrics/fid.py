"""Fréchet distance between Gaussians fitted to features (Heusel et al. 2017, Eq. 6)."""

from __future__ import annotations

import torch


def feature_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """feats [N, D] -> (mean [D], unbiased covariance [D, D]) in float64."""
    f = feats.double()
    mu = f.mean(0)
    fc = f - mu
    return mu, fc.T @ fc / (len(f) - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(mu1: torch.Tensor, s1: torch.Tensor, mu2: torch.Tensor, s2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum and avoids a non-symmetric sqrtm.
    """
    r1 = _sqrt_psd(s1)
    eig = torch.linalg.eigvalsh(r1 @ s2 @ r1).clamp(min=0)
    return float((mu1 - mu2).pow(2).sum() + s1.trace() + s2.trace() - 2 * eig.sqrt().sum())


def fid_from_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets [N, D], [M, D]."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


def kid_from_features(a: torch.Tensor, b: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
                      seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial
    kernel k(x, y) = (x.y / D + 1)^3, averaged over ``subsets`` random subsets of ``min(subset_size, N, M)``
    from each set. Unbiased, so it can be slightly negative when the sets match. Returns (mean, std)."""
    a, b = a.double(), b.double()
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise ValueError("KID needs at least 2 features in each set")
    d = a.shape[1]
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=g)[:m]]
        y = b[torch.randperm(len(b), generator=g)[:m]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        vals.append(float(off - 2 * kxy.mean()))
    t = torch.tensor(vals, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if len(vals) > 1 else 0.0
