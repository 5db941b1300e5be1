"""A run's training data as batches in the network's space, drawn reproducibly from (seed, step): pixels, or a fresh
posterior sample of each item's latent for a latent run (the posteriors from latent_cache.py); and the condition of
each batch (labels, captions, a low-res input). The trainer (loop.py) and the distiller (distill.py) both draw from here.

Items are drawn epoch by epoch (each item once per epoch), or, with class weights (``diffuse train --class-weight
Sandal=3``), with replacement in proportion to their class's weight (PyTorch's WeightedRandomSampler; LVIS's repeat
factors do the same by epochs): a class the model learns late gets more of the budget."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..cond import Cond
from ..data import ImageDataset, batch_index, get_batch, step_generator
from ..errors import UserError
from ..guidance import drop_labels
from ..text.bank import augment, index_cond


class Batches:
    """``data(step)`` -> the global batch (x0 [B, *shape], labels [B] or None); ``cond(...)`` -> its condition.
    ``text``: (caption bank, choices, group of each item) of a text run (bank.training_text); ``latents``: the
    normalised posterior (mean, std) of every item of a latent run (latent_cache.cached_posterior)."""

    def __init__(self, ds: ImageDataset, batch_size: int, seed: int, flip: bool = False,
                 latents: tuple[torch.Tensor, torch.Tensor] | None = None, text: tuple | None = None, num_classes: int = 0,
                 superres_factor: int = 0, frame_mask: float = 0.0, class_weights: dict[str, float] | None = None):
        self.ds, self.b, self.seed, self.flip, self.text = ds, batch_size, seed, flip, text
        self.weights = item_weights(ds, class_weights) if class_weights else None  # [N] or None (epochs)
        self._index: tuple[int | None, torch.Tensor | None] = (None, None)  # (step, its items)
        self.frame_mask = frame_mask
        self.num_classes, self.superres_factor = num_classes, superres_factor
        self.lat = latents

    def index(self, step: int) -> torch.Tensor:
        """The dataset items [B] of batch ``step``: the epoch walk, or a weighted draw from (seed, step). Kept for the
        step, which ``data`` and ``cond`` both ask for."""
        if self._index[0] != step:
            idx = (batch_index(len(self.ds), self.b, step, self.seed) if self.weights is None else
                   torch.multinomial(self.weights, self.b, replacement=True, generator=step_generator(self.seed, step, stream=1)))
            self._index = (step, idx)
        return self._index[1]

    def data(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        idx = self.index(step)
        if self.lat is None:
            return get_batch(self.ds, self.b, step, self.seed, self.flip, idx)
        eps = torch.randn(self.lat[0][idx].shape, generator=step_generator(self.seed, step, stream=4))
        return self.lat[0][idx] + self.lat[1][idx] * eps, (self.ds.labels[idx] if self.ds.labels is not None else None)

    def cond(self, step: int, x0: torch.Tensor, labels: torch.Tensor | None, g: torch.Generator, rows: slice,
             dropout: float, text_noise: float) -> Cond:
        """The condition of rows ``rows`` of the global batch: labels dropped to the null class with probability
        ``dropout`` (classifier-free guidance), captions drawn per item, dropped and noised (``text_noise``), the
        low-res input of a super-resolution run, and the given first frames of a share ``frame_mask`` of the clips."""
        nc = self.num_classes
        cond = Cond(labels=drop_labels(labels, dropout, nc, g)[rows] if nc else None)
        if self.text is not None:
            bank, choices, group = self.text
            ids = choices.sample(group[self.index(step)], g)
            cond.text = index_cond(augment(bank.cond(ids, torch.rand(self.b, generator=g) < dropout), text_noise, g), rows)
        if self.superres_factor:
            cond.lowres = F.avg_pool2d(x0[rows], self.superres_factor)
        if self.frame_mask:  # Open-Sora's frame mask: a share of the clips get their first 1 .. T/2 frames given, clean
            x = x0[rows]
            b, t = x.shape[0], x.shape[2]
            k = torch.randint(1, max(t // 2, 1) + 1, (b,), generator=g) * (torch.rand(b, generator=g) < self.frame_mask)
            m = (torch.arange(t)[None] < k[:, None]).to(x.dtype)[:, None, :, None, None].expand(b, 1, *x.shape[2:])
            cond.known, cond.known_mask = x * m, m
        return cond


def class_weight_of(names: list[str], key: str) -> list[int]:
    """The labels a ``--class-weight`` key names: a class name, or the first words of class names (moving-fmnist's
    ``Sandal`` names the 8 classes 'Sandal moving left', ...)."""
    return [i for i, n in enumerate(names) if n == key or n.startswith(key + " ")]


def parse_class_weights(items: list[str]) -> dict[str, float]:
    """--class-weight's ['Sandal=3', 'Shirt=2'] -> {'Sandal': 3.0, 'Shirt': 2.0} (values checked by TrainConfig)."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, w = item.rpartition("=")
        try:
            out[name.strip()] = float(w)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UserError(f"--class-weight {item!r}: give NAME=W, e.g. Sandal=3")
    return out


def check_class_weights(weights: dict[str, float], names: list[str] | None = None) -> None:
    """One ``error:`` line for a weight that is not a positive finite number or, given the data's class ``names``,
    a key that names none of them."""
    for key, w in weights.items():
        if isinstance(w, bool) or not (isinstance(w, (int, float)) and 0 < w < float("inf")):
            raise UserError(f"--class-weight {key}={w}: the weight must be a positive finite number")
        if names is not None and not class_weight_of(names, key):
            raise UserError(f"--class-weight {key}={w:g}: no class is named {key!r} or starts with it in this data "
                            f"(classes: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})")


def item_weights(ds: ImageDataset, class_weights: dict[str, float]) -> torch.Tensor:
    """Each item's sampling weight [N] (1 where no key names its class; keys that name the same class multiply)."""
    if ds.labels is None:
        raise UserError("--class-weight needs a labelled dataset (classes to weigh); this data has no classes")
    check_class_weights(class_weights, ds.class_names)
    per_class = torch.ones(len(ds.class_names), dtype=torch.float64)
    for key, w in class_weights.items():
        per_class[class_weight_of(ds.class_names, key)] *= w
    return per_class[ds.labels]
