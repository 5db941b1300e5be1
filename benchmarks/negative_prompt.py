"""What a negative prompt does on a text-to-image Fashion-MNIST run: steer an ambiguous prompt away from one class.

    diffuse train --data fashion-mnist --cond text --minutes 10 --out runs/fmnist-text
    python benchmarks/negative_prompt.py runs/fmnist-text --n 200

Each case is an ambiguous prompt ("footwear" fits sandals, sneakers and ankle boots) and a negative prompt naming one
of its classes. Both are sampled n times with the same seeds, once with the usual guidance against the empty prompt
and once against the negative prompt (same w). The domain classifier (the one `diffuse eval` uses) sorts the samples:
the table gives the share in the excluded class and the share still in the prompt's classes. Prompts are encoded as written (no snapping to the nearest training caption, which would
turn an ambiguous prompt into one class's caption). Writes docs/negative_prompt.png and docs/negative_prompt.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import diffuse  # noqa: E402
from diffuse.data import load_dataset  # noqa: E402
from diffuse.metrics.classifier import get_classifier, predict  # noqa: E402

CASES = [  # prompt, negative prompt, excluded class, the prompt's classes
    ("footwear", "a sneaker", "Sneaker", ["Sandal", "Sneaker", "Ankle boot"]),
    ("a shoe", "a sandal", "Sandal", ["Sandal", "Sneaker", "Ankle boot"]),
    ("a top", "a t-shirt", "T-shirt/top", ["T-shirt/top", "Pullover", "Shirt", "Coat"]),
    ("warm clothing", "a coat", "Coat", ["Pullover", "Coat"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--n", type=int, default=200, help="samples per case and setting")
    ap.add_argument("--guidance", type=float, default=None, help="default: the run's")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args()

    run = diffuse.load(args.run)
    names = run.class_names
    train, test = load_dataset(run.config.data, "train", run.config.data_dir), load_dataset(run.config.data, "test", run.config.data_dir)
    clf, clf_acc = get_classifier(train, test)
    w = args.guidance if args.guidance is not None else run.defaults()["guidance"]
    rows, grids = [], []
    for prompt, negative, excluded, allowed in CASES:
        row = {"prompt": prompt, "negative": negative, "excluded": excluded, "allowed": allowed}
        for key, neg in (("without", None), ("with", negative)):
            t0 = time.monotonic()
            s = run.sample(n=args.n, prompt=prompt, negative_prompt=neg, guidance=w, seed=0, nearest_caption=False)
            imgs = s.previews()  # uint8 [N, 1, 28, 28]
            _, pred = predict(clf, imgs)
            counts = torch.bincount(pred, minlength=len(names))
            row[key] = {"excluded_share": float(counts[names.index(excluded)]) / args.n,
                        "in_prompt_classes": float(sum(counts[names.index(c)] for c in allowed)) / args.n,
                        "classes": {names[i]: int(c) for i, c in enumerate(counts)},
                        "seconds": time.monotonic() - t0}
            grids.append((f"{prompt!r}" + (f" - {neg!r}" if neg else ""), imgs[:10]))
            print(f"{prompt!r:18} negative {neg!r:12} {excluded}: {row[key]['excluded_share']:.1%}  in prompt classes "
                  f"{row[key]['in_prompt_classes']:.1%}  ({row[key]['seconds']:.0f} s)", flush=True)
        rows.append(row)

    res = {"run": str(args.run), "n": args.n, "guidance": w, "classifier_test_accuracy": clf_acc, "cases": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "negative_prompt.json").write_text(json.dumps(res, indent=1))
    print(f"\nNegative prompts (n={args.n} per row, guidance {w:g}, same seeds; classifier test accuracy {clf_acc:.1%})\n")
    print("| prompt | negative prompt | excluded class: share without -> with | in the prompt's classes: without -> with |")
    print("|---|---|---|---|")
    for r in rows:
        a, b = r["without"], r["with"]
        print(f"| {r['prompt']} | {r['negative']} | {r['excluded']}: {a['excluded_share']:.1%} -> {b['excluded_share']:.1%} | "
              f"{a['in_prompt_classes']:.1%} -> {b['in_prompt_classes']:.1%} |")
    _grid(grids, args.out / "negative_prompt.png")


def _grid(grids: list[tuple[str, torch.Tensor]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = grids[0][1].shape[0]
    fig, axes = plt.subplots(len(grids), cols + 1, figsize=(cols + 3.5, 0.7 * len(grids)),
                             gridspec_kw={"width_ratios": [3.5] + [1] * cols})
    for r, (label, imgs) in enumerate(grids):
        axes[r, 0].text(1.0, 0.5, label, ha="right", va="center", fontsize=8)
        for c in range(cols + 1):
            axes[r, c].axis("off")
        for c in range(cols):
            axes[r, c + 1].imshow(imgs[c, 0].numpy(), cmap="gray", vmin=0, vmax=255)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, top=0.99, bottom=0.01)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
