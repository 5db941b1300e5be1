"""The Judge interface (metrics/judge.py has the judges and their registry): the base class, the reference-feature
cache and the run's labelled splits. Its own module so that a judge defined elsewhere (metrics/video.py) imports it
without an import cycle through the registry (tests/test_layers.py)."""

from __future__ import annotations

from typing import Callable

import torch

from ..checkpoint import load_tensors, save_tensors
from ..data import ImageDataset, load_dataset
from ..errors import UserError
from .classifier import cache_dir, dataset_hash


def reference_features(key: str, ds: ImageDataset, featurize: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Features of every image of ``ds``, cached under DIFFUSE_CACHE/reference keyed by the feature network's key
    and the split's content hash (so a changed dataset or network never reuses stale statistics)."""
    path = cache_dir() / "reference" / f"{key}-{ds.name}-{dataset_hash(ds)}.safetensors"
    if path.is_file():
        t, _ = load_tensors(path, "cached reference features")
        if "features" in t and len(t["features"]) == len(ds):
            return t["features"].double()
    f = featurize(ds.images)
    save_tensors(path, {"features": f.float()}, {"n": len(ds), "feature_key": key})
    return f


class Judge:
    """The interface; ``train`` and ``test`` are the run's dataset splits."""

    feature_net = "?"
    classifier_test_accuracy = float("nan")
    train: ImageDataset
    test: ImageDataset

    def score(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-space samples [N, *shape] -> (features [N, D] float64, predicted labels [N])."""
        raise NotImplementedError

    def reference(self) -> torch.Tensor:
        """Features of the test split (cached), the reference of the Frechet distance."""
        raise NotImplementedError

    def floors(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of real training items ``idx`` ("fid_real": the floor at this n) and of whatever else the modality
        puts between a perfect model and the user (the vocoder, for audio)."""
        raise NotImplementedError


def _splits(data: str, data_dir: str | None) -> tuple[ImageDataset, ImageDataset]:
    train, test = load_dataset(data, "train", data_dir), load_dataset(data, "test", data_dir)
    if train.labels is None:
        raise UserError(f"{data} has no labels, so no domain classifier can be trained to score samples")
    return train, test
