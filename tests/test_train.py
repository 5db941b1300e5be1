"""Trainer: exact resume, atomic checkpoints, kill -9, corrupt/mismatched checkpoints, NaN."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffuse.checkpoint import load_tensors
from diffuse.errors import UserError
from diffuse.model import load_model
from diffuse.train import TrainConfig, train

FAST = dict(data="digits", cond="class", batch_size=32, log_every=1, sample_every=10_000, checkpoint_every=10_000, warmup_steps=2)


def _weights(run: Path) -> dict:
    return load_tensors(run / "state" / "state.safetensors")[0]


def test_resume_equals_uninterrupted(tmp_path):
    train(TrainConfig(out=str(tmp_path / "a"), steps=6, **FAST))
    train(TrainConfig(out=str(tmp_path / "b"), steps=3, **FAST))
    res = train(TrainConfig(out=str(tmp_path / "b"), steps=6), resume=True)
    assert res.step == 6
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "event" not in r]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in lines if r.get("event") == "checkpoint"] == [3, 6]
    assert all(k in lines[0] for k in ("loss", "lr", "img_per_s"))
    assert (tmp_path / "b" / "samples").is_dir() and any((tmp_path / "b" / "samples").glob("*.png"))


def test_refuses_to_overwrite_and_to_resume_nothing(tmp_path):
    train(TrainConfig(out=str(tmp_path / "r"), steps=1, **FAST))
    with pytest.raises(UserError, match="already holds a run"):
        train(TrainConfig(out=str(tmp_path / "r"), steps=1, **FAST))
    with pytest.raises(UserError, match="run directory not found"):
        train(TrainConfig(out=str(tmp_path / "none"), steps=1, **FAST), resume=True)


def test_corrupt_and_mismatched_checkpoints(tmp_path):
    train(TrainConfig(out=str(tmp_path / "r"), steps=1, **FAST))
    train(TrainConfig(out=str(tmp_path / "u"), steps=1, **{**FAST, "cond": "none"}))
    # a checkpoint from another model (unconditional weights in a conditional run)
    (tmp_path / "r" / "model.safetensors").write_bytes((tmp_path / "u" / "model.safetensors").read_bytes())
    with pytest.raises(UserError, match="different model|does not match"):
        load_model(tmp_path / "r")
    (tmp_path / "r" / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="corrupt"):
        load_model(tmp_path / "r")
    (tmp_path / "r" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_model(tmp_path / "r")


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "n"
    train(TrainConfig(out=str(run), steps=2, **FAST))
    before = (run / "model.safetensors").read_bytes()
    import diffuse.train.loop as loop

    monkeypatch.setattr(loop, "denoising_loss", lambda *a, **k: torch.full((32,), float("nan"), requires_grad=True))
    with pytest.raises(UserError, match="NaN"):
        train(TrainConfig(out=str(run), steps=20), resume=True)
    assert (run / "model.safetensors").read_bytes() == before
    load_model(run)


def test_kill_9_keeps_last_checkpoint_and_resume_finishes(tmp_path):
    run = tmp_path / "k"
    cmd = [sys.executable, "-m", "diffuse", "train", "--data", "digits", "--steps", "5000", "--batch-size", "16",
           "--checkpoint-every", "5", "--sample-every", "100000", "--out", str(run)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "state" / "state.safetensors"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and load_tensors(state)[1]["step"] >= 10):
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    step = load_tensors(state)[1]["step"]  # the last good checkpoint is intact and loadable
    assert 10 <= step < 5000
    load_model(run)
    r = subprocess.run(cmd[:-2] + ["--out", str(run), "--resume", "--steps", str(step + 5)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert load_tensors(state)[1]["step"] == step + 5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_and_exit_cleanly(tmp_path, sig):
    run = tmp_path / "t"
    cmd = [sys.executable, "-m", "diffuse", "train", "--data", "digits", "--steps", "100000", "--batch-size", "16",
           "--log-every", "1", "--sample-every", "100000", "--checkpoint-every", "100000", "--out", str(run)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 3):
        time.sleep(0.2)
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "interrupted" in out and "Traceback" not in err
    assert load_tensors(run / "state" / "state.safetensors")[1]["step"] >= 3


def test_runs_saved_before_text_and_superres_fields_still_load():
    """The fingerprint of a plain model must not change when later optional U-Net fields are at their defaults."""
    import hashlib
    import json
    from dataclasses import asdict

    from diffuse.model import ModelConfig
    from diffuse.nets.unet import preset

    cfg = ModelConfig(net=preset("tiny", image_size=8, num_classes=10), cond="class", class_names=list("0123456789"))
    net = asdict(cfg.net)
    for k in ("text_dim", "lowres_factor", "image_width"):  # fields that did not exist when the first runs were saved
        net.pop(k)
    pre = {k: v for k, v in asdict(cfg.precond).items() if k != "frame_noise"}  # a later precond field, likewise
    old = hashlib.sha256(json.dumps({"arch": "unet", "net": net, "precond": pre}, sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.fingerprint() == old
    text = ModelConfig(net=preset("tiny", image_size=8, text_dim=384), cond="text")
    assert text.fingerprint() != ModelConfig(net=preset("tiny", image_size=8)).fingerprint()


def test_lognormal_noise_levels_follow_p_mean_and_p_std(tmp_path):
    """--p-mean / --p-std set the training noise levels: ln(sigma) ~ N(p_mean, p_std^2); unset, the recipe's EDM
    default (-1.2, 1.2); a non-positive spread is one error line."""
    from cli_helpers import diffuse, one_line_error

    from diffuse.train.loop import _sample_sigma

    assert (TrainConfig(data="digits").resolved().p_mean, TrainConfig(data="digits").resolved().p_std) == (-1.2, 1.2)
    # latent video trains nearer the middle of the noise range; pixel video, a flag, and runs saved before the flag keep theirs
    assert TrainConfig(data="moving-fmnist", latent="auto").resolved().p_mean == 0.0
    assert TrainConfig(data="moving-fmnist").resolved().p_mean == -1.2
    assert TrainConfig(data="moving-fmnist", latent="auto", p_mean=-0.5).resolved().p_mean == -0.5
    old = {**TrainConfig(data="moving-fmnist", latent="auto").to_dict(), "p_mean": -1.2}  # every saved config holds its p_mean
    assert TrainConfig.from_saved(old, tmp_path / "config.json").resolved().p_mean == -1.2
    for mean, std in ((-1.2, 1.2), (0.4, 0.5)):
        cfg = TrainConfig(data="digits", p_mean=mean, p_std=std).resolved()
        log_sigma = _sample_sigma(cfg, torch.zeros(1), 20_000, torch.Generator().manual_seed(0)).log()
        assert abs(log_sigma.mean().item() - mean) < 0.05 and abs(log_sigma.std().item() - std) < 0.05
    one_line_error(diffuse("train", "--p-std", "0", "--out", tmp_path / "r", check=False), "--p-std must be positive")
    one_line_error(diffuse("train", "--p-mean", "40", "--out", tmp_path / "r", check=False), "--p-mean must be in [-10, 10]")


def test_sigma_data_sets_the_preconditioning_the_run_keeps(tmp_path):
    """--sigma-data S: the data's standard deviation that EDM's preconditioning and loss weight assume. The run keeps it
    in its model record, so sampling and --resume use it: the trained denoiser at sigma is c_skip x + c_out F, with
    c_skip = S^2 / (sigma^2 + S^2) (a zero network output makes it exactly that); out of range is one error line."""
    from cli_helpers import diffuse, one_line_error

    train(TrainConfig(out=str(tmp_path / "s"), steps=3, **FAST, sigma_data=1.0))
    model, mcfg = load_model(tmp_path / "s")
    assert mcfg.precond.sigma_data == 1.0 and TrainConfig(data="digits").sigma_data == 0.5
    from diffuse.cond import Cond

    with torch.no_grad():
        for p in model.net.parameters():
            p.zero_()  # F = 0
        x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 2.0])
        want = x / (sigma**2 + 1).view(-1, 1, 1, 1)  # Wiener's factor for unit-variance data
        assert torch.allclose(model(x, sigma, Cond(labels=torch.tensor([1, 2]))), want, atol=1e-6)
    train(TrainConfig(out=str(tmp_path / "s"), steps=5, **FAST), resume=True)  # the saved S, not the default
    assert load_model(tmp_path / "s")[1].precond.sigma_data == 1.0
    one_line_error(diffuse("train", "--sigma-data", "0", "--out", tmp_path / "r", check=False), "--sigma-data is the data's")


def test_lr_decay_warms_up_holds_then_falls_to_zero_at_the_end_of_the_budget(tmp_path):
    """--lr-decay F: after the warm-up the rate holds, then falls linearly to 0 over the last F of the budget (seconds
    for --minutes, steps for --steps, the further along when both); 0 keeps it constant; the metrics log records it."""
    from cli_helpers import diffuse, one_line_error

    from diffuse.train.config import lr_at

    c = TrainConfig(data="digits", lr=1e-3, warmup_steps=10, lr_decay=0.25, minutes=10).resolved()
    assert lr_at(c, 4, 1.0) == pytest.approx(5e-4)  # warm-up: (4 + 1) / 10
    assert lr_at(c, 100, 0.5 * 600) == lr_at(c, 100, 0.75 * 600) == pytest.approx(1e-3)  # stable
    assert lr_at(c, 100, 0.875 * 600) == pytest.approx(5e-4) and lr_at(c, 100, 600.0) == 0.0  # half-way down; the end
    s = TrainConfig(data="digits", lr=1e-3, warmup_steps=0, lr_decay=0.5, steps=100).resolved()
    assert [lr_at(s, k, 0.0) for k in (40, 75, 100)] == pytest.approx([1e-3, 5e-4, 0.0])
    both = TrainConfig(data="digits", lr=1e-3, warmup_steps=0, lr_decay=0.5, steps=100, minutes=1).resolved()
    assert lr_at(both, 10, 45.0) == pytest.approx(5e-4)  # time is further along (75%) than steps (10%)
    flat = TrainConfig(data="digits", lr=1e-3, warmup_steps=0, steps=100).resolved()
    assert lr_at(flat, 99, 1e6) == pytest.approx(1e-3)
    train(TrainConfig(out=str(tmp_path / "d"), steps=8, **{**FAST, "warmup_steps": 0}, lr=1e-3, lr_decay=0.5))
    lrs = [r["lr"] for r in map(json.loads, (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs == pytest.approx([1e-3] * 4 + [1e-3, 7.5e-4, 5e-4, 2.5e-4])  # step k (0-based) logs after it: 1 - k/8 over 0.5
    one_line_error(diffuse("train", "--lr-decay", "1", "--out", tmp_path / "r", check=False), "--lr-decay is a share")
    # the recipe's default (audio decays over 30%, images not), a flag over it, and runs saved before it resume without
    assert (TrainConfig(data="notes").resolved().lr_decay, TrainConfig(data="digits").resolved().lr_decay) == (0.3, 0.0)
    assert TrainConfig(data="notes", lr_decay=0.0).resolved().lr_decay == 0.0
    old = {k: v for k, v in TrainConfig(data="notes").resolved().to_dict().items() if k != "lr_decay"}
    assert TrainConfig.from_saved(old, tmp_path / "config.json").resolved().lr_decay == 0.0


def test_ema_half_life_ramps_up_with_the_images_seen(tmp_path, monkeypatch):
    """The EMA's half-life is --ema-kimg, capped at --ema-rampup times the images seen (EDM's ramp-up): beta^(images
    per step) halves the old average in exactly that many images; the trainer passes the run's ratio."""
    from cli_helpers import diffuse, one_line_error

    import diffuse.train.loop as loop
    from diffuse.train.ema import ema_beta

    for nimg, ratio, half in ((1000, 0.05, 50), (1000, 0.2, 200), (10**6, 0.2, 20_000), (10**6, None, 20_000)):
        beta = ema_beta(32, nimg, 20_000, ratio)
        assert beta ** (half / 32) == pytest.approx(0.5)
    seen = []
    real = loop.ema_beta
    monkeypatch.setattr(loop, "ema_beta", lambda *a: (seen.append(a), real(*a))[1])
    diffuse("train", "--data", "digits", "--steps", "2", "--preset", "tiny", "--ema-rampup", "0.3", "--out", tmp_path / "r")
    assert [a[3] for a in seen] == [0.3, 0.3] and [a[1] for a in seen] == [128, 256]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["ema_rampup_ratio"] == 0.3
    one_line_error(diffuse("train", "--ema-rampup", "0", "--out", tmp_path / "x", check=False), "--ema-rampup is a share")
