"""Training curves from RUN/metrics.jsonl as a PNG (matplotlib, headless)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from .checkpoint import atomic_write_bytes
from .errors import UserError


def _save(fig, out: Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def read_metrics(run: Path) -> list[dict]:
    """The per-step records of metrics.jsonl (event lines skipped, a torn last line ignored)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"no metrics.jsonl in {run}: train it first")
    rows = []
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "event" not in r and "loss" in r:
            rows.append(r)
    if not rows:
        raise UserError(f"{path} holds no logged steps yet")
    return rows


def plot_training(run: Path, out: Path | None = None) -> Path:
    """Loss (raw and smoothed, log scale), learning rate and img/s against step; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    step = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    k = max(1, len(loss) // 20)
    smooth = [sum(loss[max(0, i - k + 1) : i + 1]) / len(loss[max(0, i - k + 1) : i + 1]) for i in range(len(loss))]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(step, loss, alpha=0.35, label="loss")
    ax[0].plot(step, smooth, label=f"mean of {k}")
    ax[0].set_yscale("log")
    ax[0].set_title("training loss")
    ax[0].legend()
    ax[1].plot(step, [r["lr"] for r in rows])
    ax[1].set_title("learning rate")
    ax[2].plot(step, [r["img_per_s"] for r in rows])
    ax[2].set_title("images / s")
    for a in ax:
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(out) if out else Path(run) / "plots" / "training.png", dpi=110)


def plot_quality(run: Path, out: Path | None = None) -> Path:
    """FID against NFE (log-log), one line per sampler, from RUN/quality.json (``diffuse bench quality``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(run) / "quality.json"
    if not path.is_file():
        raise UserError(f"no quality.json in {run}: run `diffuse bench quality {run}` first")
    res = json.loads(path.read_text())
    fig, ax = plt.subplots(figsize=(6, 4))
    for s in dict.fromkeys(r["sampler"] for r in res["rows"]):
        pts = sorted((r["nfe"], r["fid"]) for r in res["rows"] if r["sampler"] == s)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
    ax.axhline(res["fid_real"], color="gray", ls="--", lw=1, label=f"real images, n={res['n']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE (denoiser evaluations per sample)")
    ax.set_ylabel("FID")
    ax.set_title(f"FID vs NFE, guidance {res['guidance']}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return _save(fig, Path(out) if out else Path(run) / "plots" / "fid_vs_nfe.png", dpi=110)


def plot_samples(run: Path, n_per_row: int = 10, out: Path | None = None, device: str = "cpu") -> Path:
    """A titled sample grid (default sampler): one row per class or class prompt, or n_per_row^2 unconditional
    samples; super-resolution models upsample the first test images, shown under their low-res inputs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .data import load_dataset, to_model_space, to_uint8
    from .generate import SampleConfig, generate, prompt_cond
    from .metrics import class_prompts
    from .model import load_model

    from .modalities import modality_of

    model, mcfg = load_model(Path(run), device)
    preview = modality_of(mcfg).preview  # uint8 pictures of model-space samples (spectrograms for audio)
    cfg = SampleConfig().for_model(model)
    if mcfg.task == "superres":
        import torch.nn.functional as F

        from .generate import superres

        x = to_model_space(load_dataset(mcfg.data, "test", mcfg.data_dir).images[:n_per_row])
        lr = F.avg_pool2d(x, mcfg.net.lowres_factor)
        hi = to_uint8(superres(model, lr, cfg))
        up = ((F.interpolate(lr, scale_factor=mcfg.net.lowres_factor) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        rows, names = [up, hi], ["low-res input", "super-resolved"]
    elif mcfg.conditional:
        names = [p for p, _ in class_prompts(mcfg)] if mcfg.cond == "text" else mcfg.class_names
        n = n_per_row * len(names)
        if mcfg.cond == "text":
            text, _ = prompt_cond(names, n, mcfg.text_encoder)
            imgs = preview(generate(model, n, cfg, text=text))
        else:
            imgs = preview(generate(model, n, cfg, torch.arange(n) % len(names)))
        rows = [imgs[i :: len(names)] for i in range(len(names))]
    else:
        imgs = preview(generate(model, n_per_row * n_per_row, cfg))
        rows, names = [imgs[i * n_per_row : (i + 1) * n_per_row] for i in range(n_per_row)], [""] * n_per_row
    fig, axes = plt.subplots(len(rows), n_per_row, figsize=(n_per_row * 0.8 + 2.2, len(rows) * 0.8), squeeze=False)
    for r, (row, name) in enumerate(zip(rows, names)):
        for c in range(n_per_row):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for sp in ax.spines.values():
                sp.set_visible(False)
            if c < len(row):
                im = row[c].permute(1, 2, 0).numpy()
                ax.imshow(im[..., 0] if im.shape[-1] == 1 else im, cmap="gray", vmin=0, vmax=255)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{Path(run).name}: {cfg.sampler}, {cfg.steps} steps, guidance {cfg.carried_guidance(mcfg.conditional, text=mcfg.cond == 'text')}", fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(out) if out else Path(run) / "plots" / "samples.png", dpi=100)
