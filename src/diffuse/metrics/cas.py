"""Classification Accuracy Score (Ravuri & Vinyals 2019): train a fixed classifier on synthetic data and
test it on real data, next to the same classifier trained on as many real images; and the data-scarcity
case: a small real subset alone against the same subset plus synthetic images."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..data import ImageDataset, resize_images
from ..generate import SampleConfig, generate_uint8
from ..precond import Precond
from .classifier import predict, train_classifier


def balanced_subset(ds: ImageDataset, per_class: int, seed: int = 0) -> ImageDataset:
    """``per_class`` random images of each class (deterministic in ``seed``)."""
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    idx = torch.cat([perm[ds.labels[perm] == c][:per_class] for c in range(ds.num_classes)])
    return ds.subset(idx)


def _merge(a: ImageDataset, b: ImageDataset) -> ImageDataset:
    return ImageDataset(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]), a.class_names, a.name + "+" + b.name)


def _test_accuracy(train: ImageDataset, test: ImageDataset, steps: int) -> float:
    net = train_classifier(train, min_steps=steps, epochs=0)  # same number of steps for every training set
    _, pred = predict(net, test.images)
    return float((pred == test.labels).float().mean())


def cas(model: Precond, num_classes: int, train: ImageDataset, test: ImageDataset, per_class: int = 500,
        scarce_per_class: int = 100, scfg: SampleConfig | None = None, steps: int = 600,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """CAS and its real-data references; every classifier gets the same architecture and ``steps``."""
    scfg = scfg or SampleConfig()
    labels = torch.arange(num_classes * per_class) // per_class
    log(f"CAS: sampling {len(labels)} synthetic images ...")
    syn = ImageDataset(resize_images(generate_uint8(model, len(labels), scfg, labels), train.shape[-1]), labels, train.class_names, "synthetic")
    real = balanced_subset(train, per_class)
    scarce = balanced_subset(train, scarce_per_class, seed=1)
    log("CAS: training 4 classifiers (synthetic, real, scarce real, scarce real + synthetic) ...")
    out = {
        "cas_per_class": per_class,
        "cas_synthetic": _test_accuracy(syn, test, steps),
        "cas_real_equal_n": _test_accuracy(real, test, steps),
        "scarce_per_class": scarce_per_class,
        "scarce_real": _test_accuracy(scarce, test, steps),
        "scarce_real_plus_synthetic": _test_accuracy(_merge(scarce, syn), test, steps),
        "cas_classifier_steps": steps,
    }
    out["cas_ratio"] = out["cas_synthetic"] / out["cas_real_equal_n"]
    return out
