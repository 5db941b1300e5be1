"""``diffuse bench quality``: FID against the number of denoiser evaluations (NFE) for each sampler.

NFE counts denoiser calls per sample; with guidance the conditional and unconditional passes run as one
batched call and count once (the work doubles). Heun's 2s - 1 calls cannot hit every even NFE, so each row
reports the NFE it actually used. Results go to RUN/quality.json; ``diffuse plot RUN`` draws them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from .checkpoint import atomic_write_bytes
from .errors import UserError
from .generate import SampleConfig
from .samplers import SAMPLERS, nfe

NFES = (5, 10, 20, 50, 100, 250)
QUALITY_SAMPLERS = ("ddim", "dpmpp_2m", "heun", "ddpm")


def steps_for(sampler: str, target_nfe: int) -> int:
    """Sampler steps whose NFE is closest to ``target_nfe`` from below (at least 1 step)."""
    return max(1, (target_nfe + 1) // 2) if sampler == "heun" else target_nfe


def quality_sweep(run: Path, n: int = 500, samplers: tuple[str, ...] = QUALITY_SAMPLERS, nfes: tuple[int, ...] = NFES,
                  guidance: float | None = None, seed: int = 0, device: str = "cpu", log: Callable[[str], None] = print,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """FID and label accuracy at each (sampler, NFE), one set of n samples each, same seeds throughout."""
    from .metrics import class_prompts, evaluate_denoiser
    from .modalities import modality_of
    from .model import load_model

    bad = [s for s in samplers if s not in SAMPLERS]
    if bad or not samplers:
        raise UserError(f"unknown sampler {', '.join(bad) or '(none)'}; choose from {', '.join(SAMPLERS)}")
    if not nfes or min(nfes) < 1:
        raise UserError(f"--nfe values must be positive integers, got {nfes}")
    model, mcfg = load_model(Path(run), device)
    rows = []
    for sampler in samplers:
        for target in nfes:
            scfg = SampleConfig(sampler=sampler, steps=steps_for(sampler, target), guidance=guidance, seed=seed)
            t0 = time.monotonic()
            r = evaluate_denoiser(model, mcfg.data, mcfg.data_dir, mcfg.num_classes, n, scfg, log, progress,
                                  prompts=class_prompts(mcfg), text_encoder=mcfg.text_encoder,
                                  modality=modality_of(mcfg))
            row = {"sampler": sampler, "steps": scfg.steps, "nfe": nfe(sampler, scfg.steps), "target_nfe": target, "fid": r["fid"],
                   "label_accuracy": r.get("label_accuracy"), "seconds": time.monotonic() - t0}
            rows.append(row)
            log(f"{sampler:>9} {row['nfe']:>4} NFE: FID {row['fid']:.2f}")
    res = {"run": str(run), "n": n, "guidance": SampleConfig(guidance=guidance).guidance_for(mcfg.conditional, text=mcfg.cond == "text"),
           "seed": seed, "feature_net": r["feature_net"], "fid_real": r["fid_real"], "rows": rows, "summary": summarize(rows)}
    atomic_write_bytes(Path(run) / "quality.json", json.dumps(res, indent=1).encode())
    return res


def _target(row: dict) -> int:
    """The NFE column a row belongs to (Heun's 2s - 1 evaluations sit one below the target)."""
    return row.get("target_nfe") or min(NFES, key=lambda k: abs(k - row["nfe"]))


def summarize(rows: list[dict]) -> dict[str, Any]:
    """The best sampler at the NFE column nearest 10 (the lowest one >= 10), and how its FID there compares with
    its FID at its largest NFE."""
    cols = sorted({_target(r) for r in rows if _target(r) >= 10})
    if not cols:
        return {}
    best = min((r for r in rows if _target(r) == cols[0]), key=lambda r: r["fid"])
    top = max((r for r in rows if r["sampler"] == best["sampler"]), key=lambda r: r["nfe"])
    return {"best_sampler_at_few_nfe": best["sampler"], "few_nfe": best["nfe"], "fid_few": best["fid"],
            "max_nfe": top["nfe"], "fid_max": top["fid"], "ratio": best["fid"] / top["fid"]}


def table(res: dict) -> str:
    """Markdown table: one row per sampler, one column per NFE target (Heun's actual NFE in brackets)."""
    samplers = list(dict.fromkeys(r["sampler"] for r in res["rows"]))
    cols = sorted({_target(r) for r in res["rows"]})
    lines = [f"FID (n={res['n']}, {res['feature_net']}, guidance {res['guidance']}; real images at this n: "
             f"{res['fid_real']:.2f}) against NFE (denoiser evaluations per sample)", "",
             "| sampler | " + " | ".join(str(k) for k in cols) + " |", "|---|" + "---|" * len(cols)]
    for s in samplers:
        by = {_target(r): r for r in res["rows"] if r["sampler"] == s}
        cells = [(f"{by[k]['fid']:.2f}" + (f" ({by[k]['nfe']})" if by[k]["nfe"] != k else "")) if k in by else "" for k in cols]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    sm = res.get("summary") or {}
    if sm:
        lines += ["", f"best at ~10 NFE: {sm['best_sampler_at_few_nfe']}, FID {sm['fid_few']:.2f} at {sm['few_nfe']} NFE; "
                  f"{sm['fid_max']:.2f} at {sm['max_nfe']} NFE (ratio {sm['ratio']:.2f})"]
    return "\n".join(lines)
