"""Evaluation of a run: FID in the domain classifier's feature space and label accuracy of conditional samples."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import load_dataset
from ..errors import UserError
from ..generate import SampleConfig, generate, round_robin_labels
from ..model import load_model
from ..precond import Precond
from .classifier import get_classifier, predict
from .fid import fid_from_features


METRICS = ("fid", "acc", "cas")


def evaluate(run_dir: Path, n: int = 1000, scfg: SampleConfig | None = None, log: Callable[[str], None] = print,
             progress: Callable[[int], None] | None = None, device: str | torch.device = "cpu",
             metrics: tuple[str, ...] = ("fid", "acc"), cas_per_class: int = 500, cas_steps: int = 600) -> dict[str, Any]:
    """Sample n images from the run and score them against the dataset's test split.

    ``metrics``: ``fid`` and ``acc`` (always computed together, from one set of samples) and ``cas``
    (Classification Accuracy Score, see cas.py; conditional models only).
    Reports ``fid`` (samples vs test split), ``fid_real`` (n real training images vs the test split: the
    floor FID reaches at this n, since FID is biased upwards at small n), ``label_accuracy`` (share of
    conditional samples the classifier puts in the requested class) and the classifier's own test accuracy.
    """
    if n < 2:
        raise UserError(f"--n must be at least 2 for FID, got {n}")
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown or not metrics:
        raise UserError(f"unknown --metrics {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}")
    if "cas" in metrics and (cas_per_class <= 0 or cas_steps <= 0):
        raise UserError(f"--cas-per-class and --cas-steps must be positive, got {cas_per_class} and {cas_steps}")
    model, mcfg = load_model(Path(run_dir), device)
    if "cas" in metrics and mcfg.num_classes == 0:
        raise UserError("--metrics cas needs a class-conditional model")
    res: dict[str, Any] = {"run": str(run_dir)}
    if "fid" in metrics or "acc" in metrics:
        res.update(evaluate_denoiser(model, mcfg.data, mcfg.data_dir, mcfg.num_classes, n, scfg, log, progress))
    if "cas" in metrics:
        from .cas import cas

        train = load_dataset(mcfg.data, "train", mcfg.data_dir)
        test = load_dataset(mcfg.data, "test", mcfg.data_dir)
        res.update(cas(model, mcfg.num_classes, train, test, cas_per_class, min(100, cas_per_class), scfg or SampleConfig(),
                       steps=cas_steps, log=log))
    return res


def evaluate_denoiser(model: Precond, data: str, data_dir: str | None, num_classes: int, n: int = 1000,
                      scfg: SampleConfig | None = None, log: Callable[[str], None] = print,
                      progress: Callable[[int], None] | None = None, shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """``evaluate`` for any denoiser (ours or a wrapped peer network), by dataset name."""
    scfg = scfg or SampleConfig()
    train = load_dataset(data, "train", data_dir)
    test = load_dataset(data, "test", data_dir)
    if train.labels is None:
        raise UserError(f"{data} has no labels, so no domain classifier can be trained for FID")
    clf, clf_acc = get_classifier(train, test, log)
    labels = round_robin_labels(n, num_classes)
    t0 = time.monotonic()
    images = generate(model, n, scfg, labels, progress, shape=shape, num_classes=num_classes)
    sample_seconds = time.monotonic() - t0
    feats, pred = predict(clf, images)
    test_feats, _ = predict(clf, test.images)
    real_idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:n]
    real_feats, _ = predict(clf, train.images[real_idx])
    out: dict[str, Any] = {
        "n": n,
        "fid": fid_from_features(feats, test_feats),
        "fid_real": fid_from_features(real_feats, test_feats),
        "reference": f"{data} test split ({len(test)} images)",
        "feature_net": f"domain classifier ({data}, 128-d penultimate layer)",
        "classifier_test_accuracy": clf_acc,
        "sample_seconds": sample_seconds,
        **{f"sample_{k}": v for k, v in asdict(scfg).items() if k not in ("batch_size", "precision")},
        "sample_guidance": scfg.guidance_for(num_classes),
        "note": "FID is biased upwards at small n; compare runs at equal n, and against fid_real",
    }
    if labels is not None:
        out["label_accuracy"] = float((pred == labels).float().mean())
    out["images"] = images  # uint8 [n, C, H, W], for grids; dropped by the CLI's JSON
    out["labels"] = labels
    return out
