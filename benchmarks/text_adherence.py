"""Prompt adherence and the guidance sweep for a text-to-image model trained on Fashion-MNIST.

    diffuse train --data fashion-mnist --cond text --minutes 10 --out runs/fmnist-text
    python benchmarks/text_adherence.py runs/fmnist-text --per-prompt 20               # as `diffuse sample` does
    python benchmarks/text_adherence.py runs/fmnist-text --per-prompt 20 --raw-prompt  # the prompt's own encoding

Held-out prompts (benchmarks/prompts/fmnist_heldout.tsv: other synonyms, longer descriptions, other syntax;
tests/test_text.py checks that none of their wording is a training caption or a class's training synonym) are
sampled ``--per-prompt`` times at each guidance strength w. Adherence = share of samples the domain classifier
(the same one `diffuse eval` uses) puts in the prompt's intended class. FID of the same samples against the test
split. By default each prompt conditions the model through its nearest training caption, as `diffuse sample` does
(text/retrieval.py); ``--raw-prompt`` measures the model on the prompts' own encodings. Writes a table,
docs/text_guidance_sweep{,_raw}.png, docs/text_prompt_grid{,_raw}.png and docs/text_adherence{,_raw}.json.
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

from diffuse.data import load_dataset  # noqa: E402
from diffuse.generate import SampleConfig, generate_uint8  # noqa: E402
from diffuse.metrics import reference_features  # noqa: E402
from diffuse.metrics.classifier import classifier_key, get_classifier, predict  # noqa: E402
from diffuse.metrics.fid import fid_from_features  # noqa: E402
from diffuse.model import load_model  # noqa: E402
from diffuse.text.bank import CaptionBank  # noqa: E402
from diffuse.text.retrieval import snap_prompts  # noqa: E402


def heldout_prompts(path: Path, class_names: list[str], per_prompt: int) -> tuple[list[list[str]], torch.Tensor, torch.Tensor]:
    """(rows [class, prompt], intended class of each prompt [P], prompt index of each sample [P * per_prompt])."""
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    classes = {c: i for i, c in enumerate(class_names)}
    return rows, torch.tensor([classes[c] for c, _ in rows]), torch.arange(len(rows)).repeat_interleave(per_prompt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--prompts", type=Path, default=ROOT / "benchmarks" / "prompts" / "fmnist_heldout.tsv")
    ap.add_argument("--per-prompt", type=int, default=20)
    ap.add_argument("--guidance", default="0,1,1.5,2,3,5")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default: the run's: 10, or a distilled run's 2)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    ap.add_argument("--raw-prompt", action="store_true", help="condition on the prompts, not their nearest training captions")
    args = ap.parse_args()

    model, mcfg = load_model(args.run)
    k = args.per_prompt
    rows, intended, which = heldout_prompts(args.prompts, mcfg.class_names, k)  # sample j uses prompt which[j]
    prompts = [p for _, p in rows]
    texts, notes = snap_prompts(prompts, args.run, mcfg, enabled=not args.raw_prompt)
    print("\n".join(notes), flush=True)
    bank = CaptionBank.build(texts, mcfg.text_encoder, cache=False)
    text = bank.cond(bank.index([texts[i] for i in which.tolist()]))
    train, test = load_dataset(mcfg.data, "train", mcfg.data_dir), load_dataset(mcfg.data, "test", mcfg.data_dir)
    clf, clf_acc = get_classifier(train, test)
    ref = reference_features(classifier_key(train), test, lambda im: predict(clf, im)[0])
    real_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: len(which)]
    fid_real = fid_from_features(predict(clf, train.images[real_idx])[0], ref)

    sweep, images_at = [], {}
    for w in [float(v) for v in args.guidance.split(",")]:
        t0 = time.monotonic()
        imgs = generate_uint8(model, len(which), SampleConfig(steps=args.steps, guidance=w), text=text)
        feats, pred = predict(clf, imgs)
        hit = (pred == intended[which]).float()
        per_prompt = hit.view(len(prompts), k).mean(1)
        sweep.append({"guidance": w, "adherence": float(hit.mean()), "fid": fid_from_features(feats, ref),
                      "per_prompt": per_prompt.tolist(), "seconds": time.monotonic() - t0})
        images_at[w] = imgs
        print(f"w={w:<4} adherence {sweep[-1]['adherence']:.1%}  FID {sweep[-1]['fid']:.2f}  ({sweep[-1]['seconds']:.0f} s)", flush=True)

    ok = [s for s in sweep if s["adherence"] >= 0.8]
    best = min(ok or sweep, key=lambda s: s["fid"])
    suffix = "_raw" if args.raw_prompt else ""
    used = SampleConfig(steps=args.steps).for_model(model)  # the run's defaults where a flag was left out
    res = {"run": str(args.run), "n_per_w": len(which), "per_prompt": k, "prompts": rows, "steps": used.steps,
           "conditioning": "raw prompt" if args.raw_prompt else "nearest training caption", "conditioned_on": texts,
           "sampler": used.sampler, "classifier_test_accuracy": clf_acc, "fid_real": fid_real, "sweep": sweep,
           "chosen_guidance": best["guidance"],
           "rule": "lowest FID among w with adherence >= 80%" if ok else "no w reached 80% adherence: lowest FID of all"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"text_adherence{suffix}.json").write_text(json.dumps(res, indent=1))

    print(f"\nHeld-out prompt adherence and FID (n={len(which)} per w: {len(prompts)} prompts x {k}; real images at this n: "
          f"FID {fid_real:.2f}; classifier test accuracy {clf_acc:.1%})\n")
    print("| w | adherence | FID |\n|---|---|---|")
    for s in sweep:
        print(f"| {s['guidance']:g} | {s['adherence']:.1%} | {s['fid']:.2f} |")
    print(f"\nchosen w = {best['guidance']:g} ({res['rule']})\n\n| class | prompt | conditioned on | adherence at "
          f"w={best['guidance']:g} |\n|---|---|---|---|")
    for (c, p), t, a in zip(rows, texts, best["per_prompt"]):
        print(f"| {c} | {p} | {'(itself)' if t == p else t} | {a:.0%} |")
    _plots(res, images_at[best["guidance"]], prompts, k, args.out, suffix)


def _plots(res: dict, imgs: torch.Tensor, prompts: list[str], k: int, out: Path, suffix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ws = [s["guidance"] for s in res["sweep"]]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(ws, [100 * s["adherence"] for s in res["sweep"]], marker="o")
    ax[0].axhline(80, color="gray", ls="--", lw=1)
    ax[0].set_ylabel("held-out prompt adherence (%)")
    ax[1].plot(ws, [s["fid"] for s in res["sweep"]], marker="o", color="C1")
    ax[1].axhline(res["fid_real"], color="gray", ls="--", lw=1, label="real images")
    ax[1].set_ylabel("FID (domain classifier)")
    ax[1].legend()
    for a in ax:
        a.set_xlabel("guidance w (1 = none)")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.suptitle(f"conditioned on: {res['conditioning']}", fontsize=9)
    fig.savefig(out / f"text_guidance_sweep{suffix}.png", dpi=110)
    plt.close(fig)

    cols = min(k, 8)
    fig, axes = plt.subplots(len(prompts), cols + 1, figsize=(cols + 4.5, 0.62 * len(prompts)),
                             gridspec_kw={"width_ratios": [4.5] + [1] * cols})
    for r, p in enumerate(prompts):
        axes[r, 0].text(1.0, 0.5, p, ha="right", va="center", fontsize=8)
        for c in range(cols + 1):
            axes[r, c].axis("off")
        for c in range(cols):
            axes[r, c + 1].imshow(imgs[r * k + c, 0].numpy(), cmap="gray", vmin=0, vmax=255)
    fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0.01, right=0.99, top=0.99, bottom=0.01)
    fig.savefig(out / f"text_prompt_grid{suffix}.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()
