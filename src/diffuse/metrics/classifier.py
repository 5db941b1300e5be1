"""The domain classifier: a small CNN trained once per dataset on its training split, cached on disk.

It scores label accuracy of conditional samples, and its 128-d penultimate layer is the feature space
for FID (an Inception network trained on ImageNet is a poor judge of 28x28 grayscale clothing, and
none can be downloaded here).
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from ..cache import cache_dir  # noqa: F401 (re-exported: older call sites import it from here)
from ..checkpoint import load_into, load_tensors, save_tensors
from ..data import ImageDataset, get_batch, to_model_space

CLASSIFIER_VERSION = 1
FEATURE_DIM = 128


class DomainClassifier(nn.Module):
    """conv-BN-ReLU x5 with two max-pools, global average pool -> 128-d features -> linear classes."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()

        def cbr(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(*cbr(in_channels, 32), *cbr(32, 32), nn.MaxPool2d(2), *cbr(32, 64), *cbr(64, 64),
                                  nn.MaxPool2d(2, ceil_mode=True), *cbr(64, FEATURE_DIM), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] in [-1, 1] -> [B, 128]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def dataset_hash(ds: ImageDataset) -> str:
    """Content hash of images and labels (what the cache is keyed by)."""
    h = hashlib.sha256(ds.images.numpy().tobytes())
    if ds.labels is not None:
        h.update(ds.labels.numpy().tobytes())
    return h.hexdigest()[:16]


def train_classifier(train: ImageDataset, epochs: int = 3, batch_size: int = 128, seed: int = 0, min_steps: int = 600) -> DomainClassifier:
    """Adam with a one-cycle learning rate, random shifts of up to 2 pixels as augmentation; ``epochs``
    passes, but at least ``min_steps`` steps for small datasets."""
    torch.manual_seed(seed)
    net = DomainClassifier(train.shape[0], train.num_classes).to(memory_format=torch.channels_last)
    steps = max(epochs * (len(train) // batch_size), min_steps)
    batch_size = min(batch_size, len(train))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    net.train()
    for step in range(steps):
        x, y = get_batch(train, batch_size, step, seed, flip=False)
        g = torch.Generator().manual_seed(seed * 31 + step)
        dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
        x = torch.roll(F.pad(x, (2, 2, 2, 2), value=-1.0), (dy, dx), (2, 3))[:, :, 2:-2, 2:-2]
        loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: DomainClassifier, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, C, H, W] -> (features [N, 128] float64, predicted labels [N])."""
    feats, preds = [], []
    for i in range(0, len(images), batch_size):
        x = to_model_space(images[i : i + batch_size]).contiguous(memory_format=torch.channels_last)
        f = net.features(x)
        feats.append(f.double())
        preds.append(net.head(f).argmax(1))
    return torch.cat(feats), torch.cat(preds)


def classifier_key(train: ImageDataset) -> str:
    """Cache key of the classifier trained on ``train`` (dataset content hash and classifier version)."""
    return f"{train.name}-{dataset_hash(train)}-v{CLASSIFIER_VERSION}"


def get_classifier(train: ImageDataset, test: ImageDataset, log=print) -> tuple[DomainClassifier, float]:
    """The cached classifier for this training set (trained on first use) and its test accuracy."""
    key = classifier_key(train)
    path = cache_dir() / "classifiers" / f"{key}.safetensors"
    net = DomainClassifier(train.shape[0], train.num_classes)
    if path.is_file():
        tensors, meta = load_tensors(path, "cached classifier")
        load_into(net, tensors, path)
        return net.eval(), float(meta["test_accuracy"])
    log(f"training the {train.name} domain classifier once (cached at {path}) ...")
    net = train_classifier(train)
    _, pred = predict(net, test.images)
    acc = float((pred == test.labels).float().mean())
    save_tensors(path, net.state_dict(), {"test_accuracy": acc, "train_hash": dataset_hash(train), "n_train": len(train)})
    return net, acc
