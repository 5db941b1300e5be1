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
