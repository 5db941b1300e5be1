"""Labelled synthetic datasets: ``diffuse synth RUN --per-class K --out DIR``.

    DIR/<class_name>/<index>.png     one image per file, ImageFolder layout (.wav for audio runs)
    DIR/manifest.csv                 file (relative to DIR), label, class_name, seed, sampler, steps, guidance
    DIR/synth.json                   the run and sampling settings the folder was made with

Image i (label i // K) is fully determined by (seed, i), so the folder is deterministic, and a re-run
regenerates only the files that are missing (each file is written atomically, so an interrupted run
leaves no torn PNG).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from .checkpoint import atomic_write_bytes, read_json, write_json
from .errors import UserError
from .generate import SampleConfig, generate
from .model import load_model


def _dirname(name: str) -> str:
    """A class name as a safe folder name ("T-shirt/top" -> "T-shirt_top")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "class"


def read_prompt_classes(path: Path) -> tuple[list[str], list[list[str]]]:
    """A prompts file for text models: lines ``prompt`` (the prompt names its class) or ``class<TAB>prompt``
    (several lines may share a class; its images cycle through them). -> (class names, prompts per class)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompts file not found: {path}")
    classes: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, _, prompt = line.partition("\t") if "\t" in line else (line, "", line)
        if not prompt.strip():
            raise UserError(f"{path}: empty prompt in line {line!r}")
        classes.setdefault(name.strip(), []).append(prompt.strip())
    if not classes:
        raise UserError(f"{path} holds no prompts")
    return list(classes), list(classes.values())


def synth(run: Path, per_class: int, out: Path, scfg: SampleConfig, device: str | torch.device = "cpu",
          progress: Callable[[int], None] | None = None, prompts: Path | None = None, nearest_caption: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Write (or complete) the synthetic dataset; returns {"written", "kept", "total"}. Text models take
    ``prompts`` (see read_prompt_classes; conditioned on their nearest training captions unless ``nearest_caption``
    is off, text/retrieval.py), or prompt each of their classes by name."""
    if per_class <= 0:
        raise UserError(f"--per-class must be a positive integer, got {per_class}")
    from .modalities import modality_of

    model, mcfg = load_model(Path(run), device)
    mod = modality_of(mcfg)
    from .memory import check_items

    # each image's file name, label and manifest row are held until the manifest is written (the images are not)
    check_items(per_class * max(len(mcfg.class_names), 1), (), f"a synthetic set of {per_class} images per class",
                "ask for fewer (--per-class)")
    if prompts is not None and mcfg.cond != "text":
        raise UserError(f"--prompts needs a text-conditional model; this one is cond={mcfg.cond}")
    if mcfg.cond == "text":
        from .text.captions import canonical_prompt

        if prompts is not None:
            from .text.retrieval import snap_prompts

            names, class_prompts = read_prompt_classes(prompts)
            flat = [p for ps in class_prompts for p in ps]
            texts, notes = snap_prompts(flat, Path(run), mcfg, nearest_caption)
            for line in notes:
                log(line)
            it = iter(texts)
            class_texts = [[next(it) for _ in ps] for ps in class_prompts]  # what each class is conditioned on
        elif mcfg.class_names:
            names, class_prompts = mcfg.class_names, [[canonical_prompt(c)] for c in mcfg.class_names]
            class_texts = class_prompts
        else:
            raise UserError("this text model has no class names: pass --prompts FILE")
    elif mcfg.num_classes == 0:
        raise UserError("synth needs a class- or text-conditional model (train with --cond class or --cond text)")
    else:
        names, class_prompts = mcfg.class_names, None
        class_texts = None
    scfg.validate(True)
    scfg = scfg.for_model(model)  # the run's default sampler and steps, written into synth.json
    out = Path(out)
    settings = {"run": str(Path(run).resolve()), "per_class": per_class, **asdict(scfg),
                "guidance": scfg.carried_guidance(True, text=mcfg.cond == "text"), "fingerprint": mcfg.fingerprint(), "prompts": class_prompts,
                "conditioned_on": class_texts}
    settings.pop("batch_size"), settings.pop("precision")
    if (out / "synth.json").exists():
        old = read_json(out / "synth.json", "synth settings")
        old.setdefault("conditioned_on", old.get("prompts"))  # sets from before nearest-caption conditioning
        diff = sorted(k for k in settings if old.get(k) != settings[k])
        if diff:
            raise UserError(f"{out} was made with other settings ({', '.join(diff)} differ); use another --out to make a new set")
    else:
        write_json(out / "synth.json", settings)
    dirs = [_dirname(n) for n in names]
    if len(set(dirs)) < len(dirs):  # names that collide once made safe: number them
        dirs = [f"{c:02d}_{d}" for c, d in enumerate(dirs)]
    total = per_class * len(names)
    files = [Path(dirs[i // per_class]) / f"{i:06d}{mod.item_suffix}" for i in range(total)]
    labels = torch.arange(total) // per_class
    pick = lambda per: [per[int(labels[i])][(i % per_class) % len(per[int(labels[i])])] for i in range(total)]  # noqa: E731
    image_prompts, image_texts = (pick(class_prompts), pick(class_texts)) if class_prompts else (None, None)
    snapped = image_texts != image_prompts
    bank = None
    if image_texts:
        from .text.bank import CaptionBank

        bank = CaptionBank.build(image_texts, mcfg.text_encoder, cache=False)
    written = 0
    for start in range(0, total, scfg.batch_size):
        stop = min(start + scfg.batch_size, total)
        missing = [i for i in range(start, stop) if not (out / files[i]).is_file()]
        if missing:
            if bank is not None:
                text = bank.cond(bank.index(image_texts[start:stop]))
                x = generate(model, stop - start, scfg, offset=start, text=text)  # model space [b, *shape]
            else:
                x = generate(model, stop - start, scfg, labels[start:stop], offset=start)
            keep = torch.tensor([i - start for i in missing])
            mod.write_items(x[keep], [out / files[i] for i in missing])
            written += len(missing)
        if progress is not None:
            progress(stop - start)
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = (["prompt"] if image_prompts else []) + (["caption"] if snapped else [])  # caption: what it was conditioned on
    w.writerow(["file", "label", "class_name", "seed", "sampler", "steps", "guidance"] + extra)
    for i in range(total):
        w.writerow([files[i].as_posix(), int(labels[i]), names[int(labels[i])], scfg.seed, scfg.sampler, scfg.steps,
                    settings["guidance"]] + ([image_prompts[i]] if image_prompts else []) + ([image_texts[i]] if snapped else []))
    atomic_write_bytes(out / "manifest.csv", buf.getvalue().encode())
    return {"written": written, "kept": total - written, "total": total}
