"""Which sampling settings make the best synthetic training data? CAS (Ravuri & Vinyals 2019) per setting.

    python benchmarks/synth_defaults.py runs/fmnist [runs/fmnist-text] [--per-class 500]
        [--guidance 1,1.5,2,3] [--samplers dpmpp_2m:10,dpmpp_2m:20] [--seeds 2] [--json OUT]
    python benchmarks/synth_defaults.py runs/fmnist-cd --samplers consistency:1,consistency:2,consistency:4 --guidance run

For every run and every (sampler:steps, guidance), the synthetic set `diffuse synth RUN --per-class K` makes with those
flags (class labels, or one prompt per class for a text model) trains the CAS classifier (same architecture, same
steps, ``--seeds`` initialisations), which is tested on the real test split; the reference is the same classifier on
K real training images per class, with the same seeds. The table gives test accuracy (mean over seeds, and the spread
between seeds) and the CAS ratio, best first, plus the seconds the set took to sample. ``--guidance run`` keeps a run's
own (a distilled run's built-in guidance, else synth's default). The default of `diffuse synth` (synth.SYNTH_GUIDANCE)
is set from this table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from diffuse.data import load_dataset
from diffuse.generate import SampleConfig
from diffuse.images import save_grid
from diffuse.metrics.cas import balanced_subset, synthetic_accuracy, synthetic_dataset
from diffuse.model import load_model
from diffuse.synth import synthetic_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--per-class", type=int, default=500)
    ap.add_argument("--guidance", default="1,1.5,2,3", help="comma list, or 'run' for each run's default")
    ap.add_argument("--samplers", default="dpmpp_2m:10", help="comma list of sampler:steps")
    ap.add_argument("--seeds", type=int, default=2, help="classifier initialisations per training set")
    ap.add_argument("--classifier-steps", type=int, default=600)
    ap.add_argument("--grids", type=Path, default=None, help="folder for one 10x10 grid per setting")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    guidances = [None] if a.guidance == "run" else [float(g) for g in a.guidance.split(",")]
    samplers = [(s.split(":")[0], int(s.split(":")[1])) for s in a.samplers.split(",")]
    rows, refs = [], {}
    for run in a.runs:
        model, mcfg = load_model(run, "cpu")
        key = (mcfg.data, mcfg.data_dir)
        if key not in refs:  # the real reference, once per dataset
            train, test = load_dataset(mcfg.data, "train", mcfg.data_dir), load_dataset(mcfg.data, "test", mcfg.data_dir)
            real = balanced_subset(train, a.per_class)
            accs = [synthetic_accuracy(real, test, a.classifier_steps, seed) for seed in range(a.seeds)]
            refs[key] = (train, test, accs)
            log(f"real, {a.per_class} per class: {accs}")
        train, test, real_accs = refs[key]
        for sampler, steps in samplers:
            for g in guidances:
                t0 = time.perf_counter()
                scfg = SampleConfig(sampler=sampler, steps=steps, guidance=g)
                images, labels, used = synthetic_images(run, a.per_class, scfg, loaded=(model, mcfg), log=log)
                secs = time.perf_counter() - t0
                syn = synthetic_dataset(images, labels, train)
                accs = [synthetic_accuracy(syn, test, a.classifier_steps, seed) for seed in range(a.seeds)]
                row = {"run": str(run), "sampler": used.sampler, "steps": used.steps,
                       "guidance": used.carried_guidance(True, text=mcfg.cond == "text"),
                       "acc": statistics.mean(accs), "accs": accs, "real": statistics.mean(real_accs), "real_accs": real_accs,
                       "sample_seconds": secs}
                row["cas_ratio"] = row["acc"] / row["real"]
                rows.append(row)
                log(json.dumps(row))
                if a.grids:
                    a.grids.mkdir(parents=True, exist_ok=True)
                    pick = torch.cat([torch.nonzero(labels == c)[:10, 0] for c in range(int(labels.max()) + 1)])
                    save_grid(a.grids / f"{run.name}_{used.sampler}{used.steps}_w{row['guidance']:g}.png", images[pick], labels[pick])
    print("| run | sampler | steps | guidance | synthetic acc (seeds) | real acc | CAS ratio | sample s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["run"], -r["cas_ratio"])):
        spread = max(r["accs"]) - min(r["accs"])
        print(f"| {r['run']} | {r['sampler']} | {r['steps']} | {r['guidance']:g} | {r['acc']:.1%} (±{spread / 2:.1%}) | "
              f"{r['real']:.1%} | {r['cas_ratio']:.3f} | {r['sample_seconds']:.0f} |")
    if a.json:
        a.json.write_text(json.dumps({"per_class": a.per_class, "seeds": a.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
