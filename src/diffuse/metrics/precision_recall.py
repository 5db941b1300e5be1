"""Improved precision and recall (Kynkäänniemi et al. 2019, Sec. 3).

Each set of features approximates its distribution's support by the union of balls around its points, each ball
reaching that point's k-th nearest neighbour in its own set. Precision is the share of generated points inside
the real support (fidelity); recall is the share of real points inside the generated support (diversity).
"""

from __future__ import annotations

import torch


def _kth_radius(f: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded). [N]"""
    out = []
    for i in range(0, len(f), chunk):
        d = torch.cdist(f[i : i + chunk], f)  # [c, N]; the point itself is at distance 0, the smallest
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _coverage(query: torch.Tensor, ref: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Share of query points within radius[j] of some reference point j."""
    inside = []
    for i in range(0, len(query), chunk):
        d = torch.cdist(query[i : i + chunk], ref)  # [c, M]
        inside.append((d <= radii[None]).any(1))
    return float(torch.cat(inside).float().mean())


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, chunk: int = 1024) -> tuple[float, float]:
    """(precision, recall) of ``fake`` [N, D] against ``real`` [M, D] with k-NN supports (k = 3, as in the paper).
    Use equal set sizes: the supports grow with the number of points."""
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall needs more than k={k} points in each set")
    real, fake = real.double(), fake.double()
    precision = _coverage(fake, real, _kth_radius(real, k, chunk), chunk)
    recall = _coverage(real, fake, _kth_radius(fake, k, chunk), chunk)
    return precision, recall
