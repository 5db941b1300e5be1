"""Classification Accuracy Score (Ravuri & Vinyals 2019): train a fixed classifier on synthetic data and
test it on real data, next to the same classifier trained on as many real images; and the data-scarcity
case: a small real subset alone against the same subset plus synthetic images."""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..data import ImageDataset, resize_images
from .classifier import predict, train_classifier


def balanced_subset(ds: ImageDataset, per_class: int, seed: int = 0) -> ImageDataset:
    """``per_class`` random images of each class (deterministic in ``seed``)."""
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))
    idx = torch.cat([perm[ds.labels[perm] == c][:per_class] for c in range(ds.num_classes)])
    return ds.subset(idx)


def _merge(a: ImageDataset, b: ImageDataset) -> ImageDataset:
    return ImageDataset(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]), a.class_names, a.name + "+" + b.name)


def _test_accuracy(train: ImageDataset, test: ImageDataset, steps: int, seed: int = 0) -> float:
    net = train_classifier(train, min_steps=steps, epochs=0, seed=seed)  # same number of steps for every training set
    _, pred = predict(net, test.images)
    return float((pred == test.labels).float().mean())


def synthetic_dataset(images: torch.Tensor, labels: torch.Tensor, train: ImageDataset) -> ImageDataset:
    """Synthetic uint8 images [N, C, H, W] and their labels as a dataset at the training data's size."""
    return ImageDataset(resize_images(images, train.shape[-1]), labels, train.class_names, "synthetic")


def synthetic_accuracy(syn: ImageDataset, test: ImageDataset, steps: int = 600, seed: int = 0) -> float:
    """Real test accuracy of the CAS classifier trained on ``syn`` alone (``seed``: its initialisation and batches)."""
    return _test_accuracy(syn, test, steps, seed)


def cas(syn: ImageDataset, train: ImageDataset, test: ImageDataset, scarce_per_class: int = 100, steps: int = 600,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """CAS of the synthetic set ``syn`` (per_class images of each class, synthetic_dataset) and its real-data
    references; every classifier gets the same architecture and ``steps``."""
    per_class = int(torch.bincount(syn.labels).max())
    real = balanced_subset(train, per_class)
    scarce = balanced_subset(train, scarce_per_class, seed=1)
    log("CAS: training 4 classifiers (synthetic, real, scarce real, scarce real + synthetic) ...")
    out = {
        "cas_per_class": per_class,
        "cas_synthetic": synthetic_accuracy(syn, test, steps),
        "cas_real_equal_n": _test_accuracy(real, test, steps),
        "scarce_per_class": scarce_per_class,
        "scarce_real": _test_accuracy(scarce, test, steps),
        "scarce_real_plus_synthetic": _test_accuracy(_merge(scarce, syn), test, steps),
        "cas_classifier_steps": steps,
    }
    out["cas_ratio"] = out["cas_synthetic"] / out["cas_real_equal_n"]
    return out
