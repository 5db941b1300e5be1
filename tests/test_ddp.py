"""DDP under torchrun with 2 CPU ranks (gloo): synced weights, one writer, exact resume, sharded sampling."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffuse.checkpoint import load_tensors
from diffuse.train import TrainConfig, train

COMMON = ["--data", "digits", "--cond", "class", "--batch-size", "32", "--preset", "tiny", "--sample-every", "100000",
          "--checkpoint-every", "2", "--log-every", "1", "--warmup-steps", "2", "--device", "cpu",
          "--precision", "fp32"]  # fp32: on an AMX CPU "auto" is bf16, whose rounding differs between batch 32 and 2 x 16


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "diffuse", *args],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _state(run):
    return load_tensors(run / "state" / "state.safetensors")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    torchrun("train", *COMMON, "--steps", "6", "--out", str(root / "full"))
    torchrun("train", *COMMON, "--steps", "3", "--out", str(root / "part"))
    torchrun("train", *COMMON, "--steps", "6", "--resume", "--out", str(root / "part"))
    return root


def test_ranks_hold_identical_weights(runs):
    meta = _state(runs / "full")[1]
    assert meta["world_size"] == 2 and meta["step"] == 6
    a, b = meta["rank_checksums"]
    assert a == b


def test_checkpoints_and_logs_written_once(runs):
    lines = [json.loads(x) for x in (runs / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "event" not in r] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in lines if r.get("event") == "checkpoint"] == [2, 4, 6, 6]  # every 2 steps + the final save
    assert len(list((runs / "full" / "samples").glob("*.png"))) == 1
    assert not list((runs / "full").rglob("*.tmp"))


def test_resumed_two_rank_run_continues_exactly(runs):
    a, b = _state(runs / "full")[0], _state(runs / "part")[0]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_two_ranks_follow_the_single_process_trajectory(runs, tmp_path):
    """Each rank takes its half of the same global batch, so 2 ranks ~ 1 process (up to summation order)."""
    train(TrainConfig(out=str(tmp_path / "one"), steps=6, data="digits", cond="class", batch_size=32, preset="tiny",
                      sample_every=100000, checkpoint_every=2, log_every=1, warmup_steps=2, precision="fp32"))
    one, two = _state(tmp_path / "one")[0], _state(runs / "full")[0]
    for k in one:
        if k.startswith("net."):
            torch.testing.assert_close(one[k], two[k], rtol=1e-3, atol=2e-4, msg=k)


def test_sampling_is_sharded_and_matches_one_process(runs, tmp_path):
    torchrun("sample", str(runs / "full"), "--num-samples", "9", "--steps", "5", "--device", "cpu", "--out", str(tmp_path / "two.npz"))
    r = subprocess.run([sys.executable, "-m", "diffuse", "sample", str(runs / "full"), "--n", "9", "--steps", "5", "--out",
                        str(tmp_path / "one.npz")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert two["images"].shape == (9, 8, 8, 1)
    np.testing.assert_array_equal(two["images"], one["images"])
    np.testing.assert_array_equal(two["labels"], one["labels"])


def test_latent_auto_gives_every_rank_the_same_budget(tmp_path, monkeypatch):
    """--latent auto under torchrun: rank 0 trains the autoencoder, and every rank takes the same time off --minutes."""
    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path / "cache"))
    r = torchrun("train", *COMMON, "--minutes", "0.1", "--latent", "auto", "--out", str(tmp_path / "run"))
    # the ranks print at once, so their lines may share one line of stderr: find the message, not the line
    left = re.findall(r"diffusion: [\d.]+ of the [\d.]+ minutes are left after the autoencoder", r.stderr)
    assert len(left) == 2 and left[0] == left[1], r.stderr[-2000:]
    assert r.stderr.count("training one") == 1
    assert (tmp_path / "run" / "autoencoder" / "model.safetensors").is_file()
