"""Evaluation of a run: sample metrics (FID, KID, precision/recall, label accuracy), CAS and bits/dim.

Sample metrics compare n generated images with the dataset's test split in a feature space: the cached domain
classifier's (default) or the FID Inception network's (``features="inception"``, local weights only). The test
split's features are cached per feature network and split content hash.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import ImageDataset, load_dataset, to_model_space
from ..errors import UserError
from ..generate import SampleConfig, round_robin_labels
from ..model import load_model
from ..precond import Precond
from .fid import fid_from_features, kid_from_features
from .judge import judge_for, reference_features  # noqa: F401 (reference_features re-exported)

METRICS = ("fid", "kid", "pr", "acc", "cas", "bpd")
SAMPLE_METRICS = ("fid", "kid", "pr", "acc")
FEATURES = ("classifier", "inception")


def parse_metrics(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """'fid,kid' -> ('fid', 'kid'); one clear error for unknown names."""
    items = tuple(m.strip() for m in (spec.split(",") if isinstance(spec, str) else spec) if m.strip())
    unknown = sorted(set(items) - set(METRICS))
    if unknown or not items:
        raise UserError(f"unknown --metrics {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    return items


def evaluate(run_dir: Path, n: int = 1000, scfg: SampleConfig | None = None, log: Callable[[str], None] = print,
             progress: Callable[[int], None] | None = None, device: str | torch.device = "cpu",
             metrics: str | tuple[str, ...] = ("fid", "acc"), cas_per_class: int = 500, cas_steps: int = 600,
             features: str = "classifier", inception_weights: str | Path | None = None, bpd_n: int = 100,
             vlb_steps: int | None = None, ode_steps: int = 64) -> dict[str, Any]:
    """Evaluate a run directory. ``metrics`` (comma list or tuple) from METRICS:
    ``fid``, ``kid``, ``pr`` (improved precision/recall), ``acc`` (label accuracy): one set of n samples;
    ``cas``: Classification Accuracy Score (cas.py; class models only);
    ``bpd``: bits/dim of ``bpd_n`` test images by the VLB (``vlb_steps`` of the VP process, all by default) and the
    probability-flow ODE (``ode_steps`` Heun steps, Hutchinson divergence)."""
    metrics = parse_metrics(metrics)
    if n < 2:
        raise UserError(f"--n must be at least 2 for FID, got {n}")
    if features not in FEATURES:
        raise UserError(f"unknown --features {features!r}; choose classifier or inception")
    if cas_per_class <= 0 or cas_steps <= 0:  # every flag is checked, whether or not its metric was asked for
        raise UserError(f"--cas-per-class and --cas-steps must be positive, got {cas_per_class} and {cas_steps}")
    if bpd_n <= 0 or ode_steps <= 0 or (vlb_steps is not None and vlb_steps < 2):
        raise UserError(f"--bpd-n and --ode-steps must be positive and --vlb-steps at least 2, got {bpd_n}, {ode_steps}, {vlb_steps}")
    from ..modalities import modality_of

    model, mcfg = load_model(Path(run_dir), device)
    mod = modality_of(mcfg)
    if set(metrics) - set(mod.metrics):
        raise UserError(f"--metrics {','.join(sorted(set(metrics) - set(mod.metrics)))} is not defined for {mod.name} runs; "
                        f"choose from {', '.join(mod.metrics)}")
    if features not in mod.features:
        raise UserError(f"--features {features} is not defined for {mod.name} runs; choose from {', '.join(mod.features)}")
    inception = None
    if features == "inception" and set(metrics) & {"fid", "kid", "pr"}:
        from .inception import load_inception

        inception = load_inception(inception_weights)  # fails before any sampling if the file is wrong
    from ..memory import check_items

    check_items(max(n, cas_per_class * len(mcfg.class_names) if "cas" in metrics else 0), mcfg.image_shape,
                f"evaluating {n} samples", "ask for fewer (--n, --cas-per-class)")
    if "cas" in metrics and not (mcfg.num_classes or (mcfg.cond == "text" and mcfg.class_names)):
        raise UserError("--metrics cas needs a class-conditional model, or a text model trained on labelled data")
    res: dict[str, Any] = {"run": str(run_dir)}
    if mcfg.task == "superres":
        raise UserError("eval scores generators; for a super-resolution model use benchmarks/editing.py")
    prompts = class_prompts(mcfg)
    if set(metrics) & set(SAMPLE_METRICS):
        res.update(evaluate_denoiser(model, mcfg.data, mcfg.data_dir, mcfg.num_classes, n, scfg, log, progress,
                                     metrics=metrics, inception=inception, prompts=prompts, text_encoder=mcfg.text_encoder,
                                     modality=mod))
    test = load_dataset(mcfg.data, "test", mcfg.data_dir)
    if "cas" in metrics:
        from ..synth import synthetic_images
        from .cas import cas, synthetic_dataset

        train = load_dataset(mcfg.data, "train", mcfg.data_dir)
        log(f"CAS: sampling {cas_per_class} synthetic images per class, as `diffuse synth` makes them ...")
        images, labels, used = synthetic_images(Path(run_dir), cas_per_class, scfg or SampleConfig(), loaded=(model, mcfg), log=log)
        res["cas_sampling"] = {"sampler": used.sampler, "steps": used.steps,
                               "guidance": used.carried_guidance(True, text=mcfg.cond == "text")}
        res.update(cas(synthetic_dataset(images, labels, train), train, test, min(100, cas_per_class), steps=cas_steps, log=log))
    if "bpd" in metrics:
        if mcfg.latent is not None or mcfg.image_size:
            raise UserError("--metrics bpd is the likelihood of pixels at the data's own size; this model runs on "
                            + ("autoencoder latents" if mcfg.latent is not None else f"data resized to {mcfg.image_size}"))
        res.update(bits_per_dim(model, test, bpd_n, vlb_steps, ode_steps, log, prompts=prompts, text_encoder=mcfg.text_encoder))
    return res


def class_prompts(mcfg: Any) -> list[tuple[str, int]] | None:
    """(prompt, class) per class for a text model trained on labelled data: the run's prompts when it stored one per
    class (a caption of the data, e.g. "a violin playing C3"), else 'a photo of a <class>'; None for other models."""
    if mcfg.cond != "text":
        return None
    if not mcfg.class_names:
        raise UserError("scoring a text model needs class names to prompt with (a text model trained on a labelled dataset)")
    from ..text.captions import default_prompts

    return [(p, i) for i, p in enumerate(default_prompts(mcfg))]


def bits_per_dim(model: Precond, test: ImageDataset, n: int = 100, vlb_steps: int | None = None, ode_steps: int = 64,
                 log: Callable[[str], None] = print, batch_size: int = 50, prompts: list[tuple[str, int]] | None = None,
                 text_encoder: str = "minilm") -> dict[str, Any]:
    """Bits/dim of the first n test images, by both routes in likelihood.py. The condition is each image's label
    (class models) or its class prompt (text models, ``prompts``)."""
    from ..likelihood import ode_bpd, vlb_bpd, vp_abar_for

    if model.cfg.frame_noise:
        raise UserError("bits/dim assume white noise; this run shares its noise across frames (--frame-noise)")
    n = min(n, len(test))
    device = next(model.parameters()).device
    abar = vp_abar_for(model)
    vlb, ode = [], []
    t0 = time.monotonic()
    for i in range(0, n, batch_size):
        x0 = to_model_space(test.images[i : i + batch_size]).to(device)
        cond = test.labels[i : i + batch_size].to(device) if test.labels is not None and model.net.cfg.num_classes else None
        if prompts and test.labels is not None:
            from ..generate import prompt_cond
            from ..text.bank import cond_to

            text, _ = prompt_cond([prompts[int(k)][0] for k in test.labels[i : i + batch_size]], len(x0), text_encoder)
            cond = cond_to(text, device)
        g = torch.Generator(device=device).manual_seed(i)
        vlb.append(vlb_bpd(model, x0, abar, cond, steps=vlb_steps, generator=g)["bpd"])
        lo, hi = model.sigma_range
        ode.append(ode_bpd(model, x0, max(lo, 1e-3), hi, cond, steps=ode_steps, generator=g)["bpd"])
        log(f"bits/dim: {min(i + batch_size, n)}/{n} test images")
    v, o = torch.cat(vlb), torch.cat(ode)
    return {"bpd_n": n, "bpd_vlb": float(v.mean()), "bpd_vlb_sem": float(v.std() / len(v) ** 0.5) if n > 1 else 0.0,
            "bpd_vlb_steps": vlb_steps or len(abar), "bpd_ode": float(o.mean()),
            "bpd_ode_sem": float(o.std() / len(o) ** 0.5) if n > 1 else 0.0, "bpd_ode_steps": ode_steps,
            "bpd_seconds": time.monotonic() - t0}


def evaluate_denoiser(model: Precond, data: str, data_dir: str | None, num_classes: int, n: int = 1000,
                      scfg: SampleConfig | None = None, log: Callable[[str], None] = print,
                      progress: Callable[[int], None] | None = None, shape: tuple[int, ...] | None = None,
                      metrics: tuple[str, ...] = ("fid", "acc"), inception: torch.nn.Module | None = None,
                      prompts: list[tuple[str, int]] | None = None, text_encoder: str = "minilm",
                      modality: Any = None) -> dict[str, Any]:
    """The sample metrics for any denoiser (ours or a wrapped peer network), by dataset name, in the features of the
    modality's judge (metrics/judge.py; images by default). FID is always reported with ``fid_real`` (n real training
    items vs the test split: the floor at this n), and with whatever other floors the judge has (``fid_vocoder``).
    Text models: ``prompts`` lists (prompt, intended class); samples cycle through them and ``label_accuracy``
    is prompt adherence, the share the domain classifier puts in the intended class."""
    from ..generate import generate
    from ..modalities import get_modality

    scfg = (scfg or SampleConfig()).for_model(model)  # the sampler and steps actually used, reported below
    mod = modality or get_modality(None)
    judge = judge_for(mod, data, data_dir, log, inception)
    text = None
    if prompts:
        from ..generate import prompt_cond

        text, which = prompt_cond([p for p, _ in prompts], n, text_encoder)
        labels = torch.tensor([prompts[i][1] for i in which.tolist()])
    else:
        labels = round_robin_labels(n, num_classes)
    t0 = time.monotonic()
    x = generate(model, n, scfg, None if prompts else labels, progress, shape=shape, num_classes=num_classes, text=text)
    sample_seconds = time.monotonic() - t0
    feats, pred = judge.score(x)
    ref = judge.reference()
    real_idx = torch.randperm(len(judge.train), generator=torch.Generator().manual_seed(0))[:n]
    floors = judge.floors(real_idx)
    out: dict[str, Any] = {
        "n": n,
        "fid": fid_from_features(feats, ref),
        **{k: fid_from_features(f, ref) for k, f in floors.items()},
        "reference": f"{data} test split ({len(judge.test)} items)",
        "feature_net": judge.feature_net,
        "classifier_test_accuracy": judge.classifier_test_accuracy,
        "sample_seconds": sample_seconds,
        **{f"sample_{k}": v for k, v in asdict(scfg).items() if k not in ("batch_size", "precision")},
        "sample_guidance": scfg.carried_guidance(bool(num_classes) or bool(prompts), text=bool(prompts)),
        "note": "FID and KID are biased at small n; compare runs at equal n and feature network, and against the *_real floors",
    }
    real_feats = floors["fid_real"]
    if "kid" in metrics:
        out["kid"], out["kid_std"] = kid_from_features(feats, ref)
        out["kid_real"], _ = kid_from_features(real_feats, ref)
    if "pr" in metrics:
        from .precision_recall import precision_recall

        ref_n = ref[torch.randperm(len(ref), generator=torch.Generator().manual_seed(1))[:n]]  # equal set sizes
        out["precision"], out["recall"] = precision_recall(ref_n, feats)
        out["precision_real"], out["recall_real"] = precision_recall(ref_n, real_feats)
    if labels is not None and "acc" in metrics:
        out["label_accuracy"] = float((pred == labels).float().mean())
    out["images"] = mod.preview(x)  # uint8 [n, C, H, W] pictures, for grids; dropped by the CLI's JSON
    out["labels"] = labels
    return out
