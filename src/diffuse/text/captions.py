"""Training captions.

Labelled datasets: varied captions from each class name, by templates x synonyms x attributes
("a photo of a sneaker", "a pair of trainers", "a grey pullover, front view"). Fashion-MNIST and digits
have hand-written synonym lists; any other class name is used as is. Image folders: a captions file,
CSV with columns ``file,text`` or JSONL with ``{"file": ..., "text": ...}`` lines (several lines per file
are allowed), ``file`` relative to the folder.

The held-out prompts of benchmarks/ use other words; tests check that none of them leak in here.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from ..errors import UserError

SYNONYMS: dict[str, list[str]] = {
    # Fashion-MNIST
    "T-shirt/top": ["t-shirt", "tee", "top", "tee shirt", "short-sleeved top"],
    "Trouser": ["trousers", "pants", "pair of trousers", "pair of pants", "slacks"],
    "Pullover": ["pullover", "sweater", "jumper", "knit sweater"],
    "Dress": ["dress", "frock", "gown", "summer dress"],
    "Coat": ["coat", "jacket", "overcoat", "winter coat"],
    "Sandal": ["sandal", "pair of sandals", "flip-flop", "open shoe"],
    "Shirt": ["shirt", "button-up shirt", "collared shirt", "blouse"],
    "Sneaker": ["sneaker", "pair of trainers", "running shoe", "trainer", "sports shoe"],
    "Bag": ["bag", "handbag", "purse", "tote bag"],
    "Ankle boot": ["ankle boot", "boot", "short boot", "bootie"],
    # digits
    **{str(i): [w, f"digit {i}", f"number {w}", f"handwritten {w}"] for i, w in
       enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])},
}

TEMPLATES = ["{x}", "a {x}", "a photo of a {x}", "an image of a {x}", "a picture of a {x}", "a {a} {x}",
             "a photo of a {a} {x}", "a small {x}", "a product photo of a {x}", "a {x} on a black background",
             "a grayscale photo of a {x}", "a {x}, front view", "a low-resolution photo of a {x}"]
ATTRIBUTES = ["dark", "light", "grey", "plain", "simple", "patterned", "bright"]


PLURALS = ("trousers", "pants", "slacks")


def _article(text: str) -> str:
    """'a apple' -> 'an apple'; no article before a plural noun ('a photo of trousers')."""
    text = re.sub(r"\ba (?=(?:\w+ )?(?:%s)\b)" % "|".join(PLURALS), "", text)
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def class_captions(name: str) -> list[str]:
    """Every training caption for class ``name`` (deduplicated, in a fixed order)."""
    words = _words(name)
    out: list[str] = []
    for x in words:
        for t in TEMPLATES:
            for a in ATTRIBUTES if "{a}" in t else [""]:
                out.append(_article(t.format(x=x, a=a)))
    return list(dict.fromkeys(out))


def captions_of_classes(names: list[str]) -> list[str]:
    """The distinct training captions of a labelled dataset with these class names, in caption-bank order."""
    return list(dict.fromkeys(t for name in names for t in class_captions(name)))


def canonical_prompt(name: str) -> str:
    """The plain prompt used to score a text model per class: 'a photo of a <first synonym>'."""
    return _article(f"a photo of a {_words(name)[0]}")


def default_prompts(mcfg) -> list[str]:
    """One prompt per class of a text model: the run's own (a caption of its data, e.g. "a violin playing C3") when
    it stored one per class, else 'a photo of a <class>'."""
    if len(mcfg.prompts) == len(mcfg.class_names):
        return list(mcfg.prompts)
    return [canonical_prompt(c) for c in mcfg.class_names]


def _words(name: str) -> list[str]:
    return SYNONYMS.get(name, [name.replace("_", " ").replace("-", " ").lower()])


def read_captions_file(path: Path, files: list[str]) -> list[list[str]]:
    """Captions per image of an image-folder dataset, in the dataset's order; every image needs at least one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"captions file not found: {path}")
    rows: list[tuple[str, str]] = []
    try:
        if path.suffix.lower() == ".jsonl":
            for i, line in enumerate(path.read_text().splitlines(), 1):
                if line.strip():
                    r = json.loads(line)
                    rows.append((str(r["file"]), str(r["text"])))
        else:
            with open(path, newline="") as f:
                for r in csv.DictReader(f):
                    rows.append((str(r["file"]), str(r["text"])))
    except (json.JSONDecodeError, KeyError, TypeError, csv.Error, UnicodeDecodeError) as e:
        raise UserError(f"cannot read captions file {path}: needs columns/keys file and text ({type(e).__name__}: {e})") from None
    by_file: dict[str, list[str]] = {}
    for f, t in rows:
        if t.strip():
            by_file.setdefault(f, []).append(t.strip())
    missing = [f for f in files if f not in by_file]
    if missing:
        raise UserError(f"{len(missing)} images have no caption in {path}, e.g. {missing[0]!r}")
    return [by_file[f] for f in files]
