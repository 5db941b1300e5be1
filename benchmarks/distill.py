"""Few-step sampling: a distilled run (``diffuse distill``) against its teacher at the teacher's default, side by side.

    python benchmarks/distill.py --teacher runs/fmnist --student runs/fmnist-cd --n 1000 --out runs/bench-distill
    # --minutes M (or --steps S) [--lr --grid]: distil the teacher into --student first (else the student must exist)
    # --method ct: consistency tuning (no teacher calls, unguided) instead of distillation, on the same budget
    # --seed K: another draw of the n samples (sample i of every row from noise seeded by (K, i)), to see the FID's spread

For the teacher (DPM-Solver++(2M), 10 steps, guidance 3: 20 network evaluations of the batch) and for the student at
1, 2 and 4 steps (one evaluation each, guidance built in), n samples each from the same seeds, scored in the domain
classifier's features against the test split: FID, label accuracy (prompt adherence for text runs), seconds to
sample the n images (run this alone: the machine is shared), and the ratios the issue's targets name. Writes a
grid of the first 100 samples of each row and OUT/distill.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffuse.generate import SampleConfig, generate, round_robin_labels
from diffuse.images import save_grid
from diffuse.metrics import class_prompts, evaluate_denoiser
from diffuse.modalities import modality_of
from diffuse.model import load_model, read_run_config
from diffuse.samplers import nfe


def score(run: Path, scfg: SampleConfig, n: int, out: Path, name: str) -> dict:
    model, mcfg = load_model(run)
    mod = modality_of(mcfg)
    r = evaluate_denoiser(model, mcfg.data, mcfg.data_dir, mcfg.num_classes, n, scfg, log=lambda s: None,
                          prompts=class_prompts(mcfg), text_encoder=mcfg.text_encoder, modality=mod)
    t0 = time.monotonic()  # a second, timing-only pass of the same n (evaluate_denoiser's own time is reported too)
    labels = round_robin_labels(n, mcfg.num_classes)
    if mcfg.cond != "text":
        x = generate(model, n, scfg, labels)
        seconds = time.monotonic() - t0
        save_grid(out / f"grid_{name}.png", mod.preview(x[:100]), labels[:100] if labels is not None else None)
    else:
        seconds = r["sample_seconds"]
    used = scfg.for_model(model)
    evals = nfe(used.sampler, used.steps) * (2 if mcfg.conditional and not mcfg.consistency and used.guidance_for(True) not in (0, 1) else 1)
    return {"name": name, "sampler": used.sampler, "steps": used.steps, "network_evals_per_sample": evals, "fid": r["fid"],
            "label_accuracy": r.get("label_accuracy"), "seconds": seconds, "fid_real": r["fid_real"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--student", required=True)
    ap.add_argument("--minutes", type=float, default=None, help="distil first, for this many minutes")
    ap.add_argument("--steps", type=int, default=None, help="distil first, for this many steps")
    ap.add_argument("--lr", type=float, default=None, help="distillation learning rate (default: diffuse distill's)")
    ap.add_argument("--grid", type=int, default=None, help="distillation grid N (default: diffuse distill's)")
    ap.add_argument("--method", default=None, choices=("cd", "ct"), help="distillation (cd, the default) or tuning (ct)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="the samples' seed (every row the same)")
    ap.add_argument("--out", default="runs/bench-distill")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    distill_record = None
    if a.minutes is not None or a.steps is not None:
        from diffuse.train.distill import DistillConfig, distill

        t0 = time.monotonic()
        extra = {k: v for k, v in (("lr", a.lr), ("grid", a.grid), ("method", a.method)) if v is not None}
        res = distill(DistillConfig(teacher=a.teacher, out=a.student, minutes=a.minutes, steps=a.steps, **extra))
        distill_record = {"steps": res.step, "seconds_training": res.seconds, "seconds_with_search": time.monotonic() - t0}
        print(f"distilled {a.student}: {res.step} steps in {res.seconds:.0f} s ({time.monotonic() - t0:.0f} s with the sigma search)")
    rows = [score(Path(a.teacher), SampleConfig(seed=a.seed), a.n, out, "teacher")]
    for k in (1, 2, 4):
        rows.append(score(Path(a.student), SampleConfig(steps=k, seed=a.seed), a.n, out, f"student_{k}"))
    t = rows[0]
    print(f"n = {a.n}, seed {a.seed}; FID in the domain classifier's features vs the test split (real training images: {t['fid_real']:.2f})")
    print(f"{'':<10} {'sampler':<12} {'steps':>5} {'net evals':>9} {'FID':>7} {'FID/teacher':>11} {'label acc':>9} {'seconds':>8} {'speed-up':>8}")
    for r in rows:
        acc = f"{100 * r['label_accuracy']:.1f}%" if r["label_accuracy"] is not None else "-"
        print(f"{r['name']:<10} {r['sampler']:<12} {r['steps']:>5} {r['network_evals_per_sample']:>9} {r['fid']:>7.2f} "
              f"{r['fid'] / t['fid']:>11.2f} {acc:>9} {r['seconds']:>8.1f} {t['seconds'] / r['seconds']:>7.1f}x")
    rec = read_run_config(Path(a.student)).get("distill") or {}
    (out / "distill.json").write_text(json.dumps({"n": a.n, "seed": a.seed, "rows": rows, "distill": distill_record, "distill_config": rec}, indent=1))


if __name__ == "__main__":
    main()
