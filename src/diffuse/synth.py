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
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

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


# The default guidance of `diffuse synth`: the strength whose synthetic set trains the best classifier (CAS,
# Ravuri & Vinyals 2019), which is lower than the strength that scores best on FID and label accuracy (DEFAULT_GUIDANCE
# in generate.py): a classifier needs varied images, guidance trades variety for fidelity.
# Measured by benchmarks/synth_defaults.py (README, Evaluation, "synth's default guidance is chosen by CAS") on the
# 10-minute Fashion-MNIST models: class model, 500 per class, CAS ratio 0.909 / 0.905 / 0.904 / 0.880 at w = 1 / 1.5 /
# 2 / 3; text model, 200 per class, 0.837 at w = 1 against 0.793 at w = 3. So no guidance (w = 1), which also halves
# the network calls. The sampler stays the run's (DPM-Solver++(2M), 10 steps): at w = 1 on a 1,448-step class model,
# 500 per class, 2 seeds, it gave CAS 0.930 against 0.925 for Euler 20 and DDIM 20, 0.913 for DDPM 50 and 0.884 for
# Heun 10, at a half or less of their sampling time (README, "synth's sampler").
SYNTH_GUIDANCE = 1.0
SYNTH_TEXT_GUIDANCE = 1.0


@dataclass
class ClassPlan:
    """What a synthetic set's classes are: names, and for text models the prompts per class and what each class is
    conditioned on (the prompts, or their nearest training captions)."""

    names: list[str]
    prompts: list[list[str]] | None = None
    texts: list[list[str]] | None = None

    def items(self, per_class: int) -> tuple[torch.Tensor, list[str] | None, list[str] | None]:
        """(label [N], prompt of each item, text it is conditioned on) for ``per_class`` items of every class; item i
        has label i // per_class and cycles through its class's prompts."""
        total = per_class * len(self.names)
        labels = torch.arange(total) // per_class
        if self.prompts is None:
            return labels, None, None
        pick = lambda per: [per[int(labels[i])][(i % per_class) % len(per[int(labels[i])])] for i in range(total)]  # noqa: E731
        return labels, pick(self.prompts), pick(self.texts)


def plan_classes(run: Path, mcfg: Any, prompts: Path | None = None, nearest_caption: bool = True,
                 log: Callable[[str], None] = print) -> ClassPlan:
    """The classes of a synthetic set from a class model's labels, or a text model's ``prompts`` file (see
    read_prompt_classes; conditioned on their nearest training captions unless ``nearest_caption`` is off,
    text/retrieval.py), or one prompt per class of a text model (text/captions.default_prompts)."""
    if prompts is not None and mcfg.cond != "text":
        raise UserError(f"--prompts needs a text-conditional model; this one is cond={mcfg.cond}")
    if mcfg.cond == "text":
        if prompts is not None:
            from .text.retrieval import snap_prompts

            names, class_prompts = read_prompt_classes(prompts)
            flat = [p for ps in class_prompts for p in ps]
            texts, notes = snap_prompts(flat, Path(run), mcfg, nearest_caption)
            for line in notes:
                log(line)
            it = iter(texts)
            return ClassPlan(names, class_prompts, [[next(it) for _ in ps] for ps in class_prompts])
        if mcfg.class_names:
            from .text.captions import default_prompts

            class_prompts = [[p] for p in default_prompts(mcfg)]
            return ClassPlan(list(mcfg.class_names), class_prompts, class_prompts)
        raise UserError("this text model has no class names: pass --prompts FILE")
    if mcfg.num_classes == 0:
        raise UserError("synth needs a class- or text-conditional model (train with --cond class or --cond text)")
    return ClassPlan(list(mcfg.class_names))


def synth_config(scfg: SampleConfig, mcfg: Any, model: Any) -> SampleConfig:
    """``scfg`` with synth's default guidance where none was asked for (SYNTH_GUIDANCE); a distilled run keeps the
    guidance built into it."""
    if scfg.guidance is not None or getattr(model, "consistency", None) is not None:
        return scfg
    return replace(scfg, guidance=SYNTH_TEXT_GUIDANCE if mcfg.cond == "text" else SYNTH_GUIDANCE)


class ItemMaker:
    """Generates items ``start .. stop - 1`` of a synthetic set (model space), each fully determined by (seed, i)."""

    def __init__(self, model: Any, mcfg: Any, plan: ClassPlan, per_class: int, scfg: SampleConfig, run: Path):
        self.model, self.scfg = model, scfg
        self.labels, self.prompts, self.texts = plan.items(per_class)
        self.bank = None
        if self.texts:
            from .text.bank import CaptionBank
            from .text.retrieval import training_bank

            self.bank = training_bank(run, mcfg)  # training captions (the default prompts, snapped ones) come from it
            if self.bank is None or not set(self.texts) <= set(self.bank.texts):
                self.bank = CaptionBank.build(self.texts, mcfg.text_encoder, cache=False)

    def __len__(self) -> int:
        return len(self.labels)

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        if self.bank is not None:
            text = self.bank.cond(self.bank.index(self.texts[start:stop]))
            return generate(self.model, stop - start, self.scfg, offset=start, text=text)
        return generate(self.model, stop - start, self.scfg, self.labels[start:stop], offset=start)


def synthetic_images(run: Path, per_class: int, scfg: SampleConfig, device: str | torch.device = "cpu",
                     loaded: tuple[Any, Any] | None = None, log: Callable[[str], None] = print
                     ) -> tuple[torch.Tensor, torch.Tensor, SampleConfig]:
    """What ``diffuse synth RUN --per-class K`` writes with these sampling flags, in memory: (uint8 images [N, C, H, W],
    labels [N], the sampling settings used), for CAS (metrics/cas.py). ``loaded``: (model, config) where the caller has loaded the run."""
    from .pixels import to_uint8

    model, mcfg = loaded or load_model(Path(run), device)
    scfg = synth_config(scfg, mcfg, model).for_model(model)
    make = ItemMaker(model, mcfg, plan_classes(run, mcfg, log=log), per_class, scfg, Path(run))
    parts = [to_uint8(make(i, min(i + scfg.batch_size, len(make)))) for i in range(0, len(make), scfg.batch_size)]
    return torch.cat(parts), make.labels, scfg


def synth(run: Path, per_class: int, out: Path, scfg: SampleConfig, device: str | torch.device = "cpu",
          progress: Callable[[int], None] | None = None, prompts: Path | None = None, nearest_caption: bool = True,
          log: Callable[[str], None] = print) -> dict:
    """Write (or complete) the synthetic dataset; returns {"written", "kept", "total"}. Classes as plan_classes;
    guidance SYNTH_GUIDANCE unless ``scfg`` asks for one."""
    if per_class <= 0:
        raise UserError(f"--per-class must be a positive integer, got {per_class}")
    from .modalities import modality_of

    model, mcfg = load_model(Path(run), device)
    mod = modality_of(mcfg)
    from .memory import check_items

    # each image's file name, label and manifest row are held until the manifest is written (the images are not)
    check_items(per_class * max(len(mcfg.class_names), 1), (), f"a synthetic set of {per_class} images per class",
                "ask for fewer (--per-class)")
    plan = plan_classes(run, mcfg, prompts, nearest_caption, log)
    names, class_prompts, class_texts = plan.names, plan.prompts, plan.texts
    scfg = synth_config(scfg, mcfg, model)
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
    make = ItemMaker(model, mcfg, plan, per_class, scfg, Path(run))
    total, labels, image_prompts, image_texts = len(make), make.labels, make.prompts, make.texts
    files = [Path(dirs[i // per_class]) / f"{i:06d}{mod.item_suffix}" for i in range(total)]
    snapped = image_texts != image_prompts
    written = 0
    for start in range(0, total, scfg.batch_size):
        stop = min(start + scfg.batch_size, total)
        missing = [i for i in range(start, stop) if not (out / files[i]).is_file()]
        if missing:
            x = make(start, stop)  # model space [b, *shape]
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
