"""Where a distilled run's consistency sampler starts, and its intermediate noise levels, chosen by a small search.

For k steps the consistency sampler visits a start level, then k - 1 levels down to s (Karras' rho = 7 ramp from
the start to s, s included), then 0. The 1-step start is searched first (sigma_max or below: the student meets the top
of the noise range least often in distillation). Each k > 1 then gets its own start and s by coordinate search: s on a
log grid from the 1-step start, the start at that s, s again at the chosen start (more steps measured to prefer lower
starts). Each candidate draws n samples (fixed seeds) and is scored by the Frechet distance in the domain classifier's
features to n real *training* items (the test split stays unseen, for the benchmark). The classifier only ranks a few
candidates here; it is never a loss.
"""

from __future__ import annotations

from typing import Callable

import torch

from .. import schedules
from ..errors import UserError
from ..model import ModelConfig
from ..precond import Precond

CANDIDATES = {2: (0.1, 0.2, 0.35, 0.6, 1.0, 1.6, 2.5, 4.0, 8.0), 4: (0.03, 0.06, 0.12, 0.25, 0.5, 1.0, 2.0)}
STARTS = (80.0, 40.0, 20.0, 14.0, 10.0, 7.0, 5.0)  # where sampling may start (capped at sigma_max)


def intermediate_sigmas(k: int, s: float, start: float) -> list[float]:
    """The k - 1 levels between ``start`` and 0 for k steps: Karras' ramp from start down to s, without start."""
    if k == 1:
        return []
    return [float(v) for v in schedules.karras_sigmas(k, s, start)[1:-1]]


def search_sigmas(model: Precond, mcfg: ModelConfig, n: int, seed: int, log: Callable[[str], None]) -> dict:
    """{"sigmas": {"1": [], "2": [...], "4": [...]}, "start": the 1-step start, "starts": {"2": sigma, "4": sigma},
    "table": [{"steps", "start", "s"?, "fd"}, ...]}; an empty search (Karras' ramp from sigma_max then stays the
    schedule) for data the domain classifier cannot judge (no labels)."""
    from ..generate import SampleConfig, generate, prompt_cond, round_robin_labels
    from ..metrics import class_prompts
    from ..metrics.fid import fid_from_features
    from ..metrics.judge import judge_for
    from ..modalities import modality_of

    try:
        judge = judge_for(modality_of(mcfg), mcfg.data, mcfg.data_dir, log)
    except UserError as e:
        log(f"no sigma search ({e}); the consistency sampler uses Karras' ramp")
        return {}
    real = judge.floors(torch.randperm(len(judge.train), generator=torch.Generator().manual_seed(seed + 1))[:n])["fid_real"]
    prompts = class_prompts(mcfg)
    text, labels = None, round_robin_labels(n, mcfg.num_classes)
    if prompts:
        text, _ = prompt_cond([p for p, _ in prompts], n, mcfg.text_encoder)
        labels = None
    saved, sigma_max = model.consistency, model.sigma_range[1]
    table: list[dict] = []

    def fd_of(k: int, start: float, sig: list[float], **row) -> float:
        model.consistency = {**saved, "start": start, "sigmas": {str(k): sig}}
        x = generate(model, n, SampleConfig(sampler="consistency", steps=k, seed=seed), labels, text=text)
        fd = fid_from_features(judge.score(x)[0], real)
        table.append({"steps": k, "start": start, **row, "fd": fd})
        log(f"{k} step{'s' if k > 1 else ''} from sigma {start:g}" + (f", last intermediate sigma {row['s']:g}" if row else "")
            + f": FD {fd:.2f} (vs {n} training items)")
        return fd

    try:
        starts = sorted({min(s, sigma_max) for s in STARTS}, reverse=True)
        start = min(starts, key=lambda st: (fd_of(1, st, []), -st))  # ties: the higher start
        best, chosen = {"1": []}, {}
        for k, candidates in CANDIDATES.items():
            scored: dict[tuple[float, float], float] = {}  # (start, s) -> FD, each pair drawn once

            def fd(st: float, s: float, k=k, scored=scored) -> float:
                if (st, s) not in scored:
                    scored[st, s] = fd_of(k, st, intermediate_sigmas(k, s, st), s=s)
                return scored[st, s]

            if not any(s < start for s in candidates):  # a tiny sigma_max: that k keeps Karras' ramp
                continue
            s_k = min((s for s in candidates if s < start), key=lambda s: fd(start, s))
            st_k = min((st for st in starts if s_k < st), key=lambda st: (fd(st, s_k), -st))
            s_k = min((s for s in candidates if s < st_k), key=lambda s: fd(st_k, s))
            best[str(k)], chosen[str(k)] = intermediate_sigmas(k, s_k, st_k), st_k
    finally:
        model.consistency = saved
    return {"sigmas": best, "start": start, "starts": chosen, "table": table}
