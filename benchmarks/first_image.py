"""Seconds to the first image: `diffuse sample` from process start to the file on disk, as a user feels it.

    python benchmarks/first_image.py runs/fmnist runs/fmnist-text [--repeats 5] [--json OUT]

For each run, ``--repeats`` fresh processes each run ``diffuse sample RUN --n 1 --out F.png`` (a text run with
``--prompt``); the table gives the median and min wall seconds, warm (the user's cache holds the caption
embeddings and the traced memory peaks) and cold (an empty cache: the first sample on a new machine); a text
run with a prompt that is a training caption and with one that is not. ``--stages`` adds a
breakdown measured in one fresh process per stage: the imports ``diffuse sample`` needs, the run load, the text
encoder's load, the caption bank, sampling, and writing the PNG (each stage's time is its own, after the ones
before it). Run it alone on the machine: two torch processes on 2 cores slow each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a sneaker"  # a training caption of the Fashion-MNIST text run
NEW_PROMPT = "a comfortable running shoe"  # in no training caption: its nearest one is looked up with the encoder
FIRST_PROMPT = "a comfortable running shoe, take {i}"  # the same, but new on every call (nothing cached for it)

STAGES = r"""
import json, sys, time
t = [time.perf_counter()]
mark = lambda: t.append(time.perf_counter())
import diffuse.cli  # what the entry point imports: typer, the command table
mark()
from pathlib import Path
from diffuse.api import Run
run = Run(Path(sys.argv[1]), "cpu")
mark()
text = run.config.cond == "text"
if text:
    from diffuse.text.encoder import get_encoder
    get_encoder(run.config.text_encoder)
mark()
if text:
    from diffuse.text.retrieval import snap_prompts
    snap_prompts([sys.argv[3]], Path(sys.argv[1]), run.config)
mark()
s = run.sample(n=1, seed=0, **({"prompt": sys.argv[3]} if text else {}))
mark()
s.save(sys.argv[2])
mark()
names = ["imports", "load run", "text encoder", "caption bank", "sample", "write png"]
print(json.dumps({k: b - a for k, a, b in zip(names, t, t[1:])}))
"""


def _command(run: Path, out: Path, prompt: str | None) -> list[str]:
    exe = Path(sys.executable).with_name("diffuse")
    cmd = [str(exe) if exe.is_file() else sys.executable, *([] if exe.is_file() else ["-m", "diffuse"])]
    return cmd + ["sample", str(run), "--n", "1", "--out", str(out)] + (["--prompt", prompt] if prompt else [])


def _is_text(run: Path) -> bool:
    return json.loads((run / "config.json").read_text())["model"].get("cond") == "text"


def wall(run: Path, repeats: int, cache: str | None, prompt: str | None = None) -> list[float]:
    """Seconds per fresh process; ``cache``: a DIFFUSE_CACHE folder (None: the user's), emptied before each one."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            env = dict(os.environ)
            if cache is not None:
                env["DIFFUSE_CACHE"] = str(Path(tmp) / f"cache{i}")  # empty every time
            out = Path(tmp) / f"first{i}.png"
            asked = prompt.format(i=f"{time.time_ns()}-{i}") if prompt else None  # {i}: a prompt never asked before
            t0 = time.perf_counter()
            subprocess.run(_command(run, out, asked), env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
            assert out.is_file(), out
    return times


def stages(run: Path, repeats: int) -> dict[str, float]:
    """Median seconds of each stage over ``repeats`` fresh processes."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            p = subprocess.run([sys.executable, "-c", STAGES, str(run), str(Path(tmp) / "s.png"), PROMPT],
                               check=True, capture_output=True, text=True)
            rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--stages", action="store_true", help="also the per-stage breakdown")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    res = {}
    for run in a.runs:
        if _is_text(run):
            r = {f"warm, {PROMPT!r}": wall(run, a.repeats, None, PROMPT),
                 f"warm, {NEW_PROMPT!r} (asked before)": wall(run, a.repeats, None, NEW_PROMPT),
                 f"warm, {FIRST_PROMPT!r} (never asked)": wall(run, a.repeats, None, FIRST_PROMPT),
                 f"cold, {PROMPT!r}": wall(run, a.repeats, "fresh", PROMPT)}
        else:
            r = {"warm": wall(run, a.repeats, None), "cold": wall(run, a.repeats, "fresh")}
        if a.stages:
            r["stages"] = stages(run, a.repeats)
        res[str(run)] = r
    print("| run | cache, prompt | median s | min s |\n|---|---|---|---|")
    for run, r in res.items():
        for kind, t in r.items():
            if kind != "stages":
                print(f"| {run} | {kind} | {statistics.median(t):.2f} | {min(t):.2f} |")
    for run, r in res.items():
        if "stages" in r:
            print(f"\n{run}: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["stages"].items()))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
