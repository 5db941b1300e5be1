"""--class-weight: the trainer draws a class's items in proportion to its weight (with replacement, from (seed, step)),
every item once per epoch without the flag; the run remembers the weights; bad weights and unknown names are one line."""

import json
import math

import pytest
import torch
from cli_helpers import diffuse, one_line_error

from diffuse.data import ImageDataset, batch_index
from diffuse.errors import UserError
from diffuse.train import TrainConfig
from diffuse.train.batches import Batches, item_weights

NAMES = ["Sandal moving left", "Sandal moving right", "Sneaker moving left", "Sneaker moving right", "Bag"]


def _data(n_per_class: int = 40) -> ImageDataset:
    labels = torch.arange(len(NAMES)).repeat_interleave(n_per_class)
    return ImageDataset(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels, NAMES, "toy")


def test_keys_name_a_class_or_the_first_words_of_class_names():
    ds = _data(2)
    w = item_weights(ds, {"Sandal": 3.0, "Sneaker moving left": 2.0, "Bag": 0.5})
    assert w.tolist() == [3.0] * 4 + [2.0] * 2 + [1.0] * 2 + [0.5] * 2
    assert item_weights(ds, {"Sandal": 2.0, "Sandal moving left": 3.0}).tolist()[:4] == [6.0, 6.0, 2.0, 2.0]  # keys multiply
    with pytest.raises(UserError, match="no class is named 'Sand'"):  # whole words only
        item_weights(ds, {"Sand": 2.0})
    with pytest.raises(UserError, match="needs a labelled dataset"):
        item_weights(ImageDataset(ds.images, None, [], "toy"), {"Sandal": 2.0})
    for bad in (0.0, -1.0, math.inf, math.nan, True):
        with pytest.raises(UserError, match="positive finite"):
            item_weights(ds, {"Sandal": bad})


def test_weighted_draws_follow_the_weights_and_depend_only_on_seed_and_step():
    ds, b, steps = _data(), 64, 200
    batches = Batches(ds, b, seed=3, class_weights={"Sandal": 3.0, "Bag": 0.5})
    counts = torch.bincount(torch.cat([ds.labels[batches.index(s)] for s in range(steps)]), minlength=len(NAMES)).double()
    want = torch.tensor([3.0, 3.0, 1.0, 1.0, 0.5])
    p = want / want.sum()
    sd = (steps * b * p * (1 - p)).sqrt()
    assert ((counts - steps * b * p).abs() < 4 * sd).all(), (counts, steps * b * p)
    assert torch.equal(batches.index(17), Batches(ds, b, seed=3, class_weights={"Sandal": 3.0, "Bag": 0.5}).index(17))
    assert not torch.equal(batches.index(17), Batches(ds, b, seed=4, class_weights={"Sandal": 3.0, "Bag": 0.5}).index(17))
    plain = Batches(ds, b, seed=3)  # no weights: the epoch walk, as before the flag
    assert all(torch.equal(plain.index(s), batch_index(len(ds), b, s, 3)) for s in range(5))
    x, labels = batches.data(5)  # the pixels and labels of the same drawn items
    assert torch.equal(labels, ds.labels[batches.index(5)]) and x.shape == (b, 1, 4, 4)


def test_the_trainer_draws_by_the_runs_weights_and_keeps_them(tmp_path, monkeypatch):
    import diffuse.train.loop as loop

    seen = []

    class Recording(loop.Batches):
        def data(self, step):
            x, labels = super().data(step)
            seen.append(labels)
            return x, labels

    monkeypatch.setattr(loop, "Batches", Recording)
    run = tmp_path / "r"
    diffuse("train", "--data", "digits", "--cond", "class", "--steps", "3", "--preset", "tiny", "--batch-size", "32",
            "--class-weight", "3=1e6", "--out", run)
    labels = torch.cat(seen)
    assert (labels == 3).float().mean() > 0.95, torch.bincount(labels)  # 1e6 : 9 odds
    assert json.loads((run / "config.json").read_text())["train"]["class_weights"] == {"3": 1e6}
    seen.clear()
    diffuse("train", "--out", run, "--resume", "--steps", "4")  # a resumed run draws by its own weights
    assert (torch.cat(seen) == 3).all()
    saved = json.loads((run / "config.json").read_text())["train"]
    del saved["class_weights"]  # a run written before the flag loads, drawing by epochs
    assert TrainConfig.from_saved(saved, run / "config.json").class_weights == {}


def test_bad_class_weights_are_one_line_and_write_nothing(tmp_path):
    base = ("train", "--data", "digits", "--cond", "class", "--steps", "1", "--preset", "tiny")
    for flag, needle in (("3", "give NAME=W"), ("=2", "give NAME=W"), ("3=x", "give NAME=W"), ("3=0", "positive finite"),
                         ("3=-2", "positive finite"), ("3=nan", "positive finite"), ("3=inf", "positive finite"),
                         ("dog=2", "no class is named 'dog'")):
        out = tmp_path / flag.replace("=", "_")
        one_line_error(diffuse(*base, "--class-weight", flag, "--out", out, check=False), needle)
        assert not out.exists(), flag
