"""Nothing lost, nothing wedged: kills before the first checkpoint, two trainers on one run, time-based
checkpoints, a full or read-only disk, NaN weights, and requests that cannot fit in memory."""

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from cli_helpers import diffuse, one_line_error

from diffuse.checkpoint import load_tensors
from diffuse.cli import main
from diffuse.errors import UserError
from diffuse.train import TrainConfig, train
from diffuse.train.rundir import RunLock

FAST = dict(data="digits", cond="class", batch_size=16, log_every=1, sample_every=10**6, checkpoint_every=10**6, warmup_steps=2)


def _state(run: Path) -> dict:
    return load_tensors(run / "state" / "state.safetensors")[0]


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _cli(capsys, *args) -> tuple[int, list[str]]:
    """In-process CLI call: (exit status, its stderr's error lines). A failure must end in exactly one
    ``error:`` line (progress bars may come before it) and print no traceback."""
    capsys.readouterr()
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert "Traceback" not in err and (rc == 0 or err.strip().splitlines()[-1] == lines[-1]), err
    return rc, lines


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_from_step_0(tmp_path):
    train(TrainConfig(out=str(tmp_path / "ref"), steps=4, **FAST))
    run = tmp_path / "r"
    train(TrainConfig(out=str(run), steps=1, **FAST))
    for p in (run / "state" / "state.safetensors", run / "model.safetensors"):  # as killed between config.json and step 0
        p.unlink()
    with pytest.raises(UserError, match="already holds a run"):  # without --resume it is refused, as before ...
        train(TrainConfig(out=str(run), steps=4, **FAST))
    res = train(TrainConfig(out=str(run), steps=4), resume=True)  # ... and --resume now starts it, with its saved config
    assert res.step == 4
    _same(_state(tmp_path / "ref"), _state(run))


def test_the_reported_wedge_kill_9_right_after_start(tmp_path):
    """The issue's reproduction: kill -9 as soon as config.json exists, then --resume must work."""
    run = tmp_path / "R"
    cmd = [sys.executable, "-m", "diffuse", "train", "--data", "digits", "--cond", "class", "--steps", "30",
           "--checkpoint-every", "20", "--batch-size", "16", "--out", str(run)]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (run / "config.json").exists() and time.time() < deadline:
        time.sleep(0.01)
    p.kill()
    p.wait()
    r = diffuse(*cmd[3:], "--resume")
    assert "Traceback" not in r.stderr
    assert load_tensors(run / "state" / "state.safetensors")[1]["step"] == 30
    assert not list(run.rglob(".*.tmp"))


def test_a_second_trainer_gets_one_line_and_kill_9_releases_the_lock(tmp_path):
    run = tmp_path / "L"
    train(TrainConfig(out=str(run), steps=1, **FAST))
    with RunLock(run):
        r = diffuse("train", "--out", run, "--resume", "--steps", "2", check=False)
        one_line_error(r, "being trained by another process")
        r = diffuse("train-autoencoder", "--out", run, "--resume", check=False)
        one_line_error(r, "being trained by another process")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from diffuse.train.rundir import RunLock; "
                               f"RunLock({str(run)!r}).__enter__(); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=f"pid {holder.pid}"):
        RunLock(run).__enter__()
    holder.kill()
    holder.wait()
    with RunLock(run):  # the kernel released it with the process
        pass


def test_sample_and_eval_while_training_read_the_last_good_checkpoint(tmp_path):
    run = tmp_path / "T"
    p = subprocess.Popen([sys.executable, "-m", "diffuse", "train", "--data", "digits", "--cond", "class", "--steps", "100000",
                          "--batch-size", "16", "--checkpoint-every", "3", "--sample-every", "100000", "--out", str(run)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 200):
            time.sleep(0.1)
        for _ in range(3):  # checkpoints are being replaced all along
            r = diffuse("sample", run, "--n", "10", "--steps", "4", "--out", tmp_path / "s.npz")
            assert "Traceback" not in r.stderr
        r = diffuse("eval", run, "--n", "50", "--steps", "4", "--json")
        assert '"fid"' in r.stdout
        assert p.poll() is None  # the trainer was not disturbed
    finally:
        p.kill()
        p.wait()


def test_checkpoints_are_time_based_too(tmp_path, monkeypatch):
    """With a step interval that is never reached, --checkpoint-minutes alone still checkpoints: in both trainers."""
    import diffuse.train.autoencoder as ae_mod
    from diffuse.train.autoencoder import AETrainConfig, train_autoencoder

    run = tmp_path / "c"
    train(TrainConfig(out=str(run), steps=12, checkpoint_minutes=1e-9, **FAST))
    events = [line for line in (run / "metrics.jsonl").read_text().splitlines() if '"checkpoint"' in line]
    assert len(events) >= 12  # one per step (the clock is always due), plus the final one
    saved = []
    real = ae_mod._save_state
    monkeypatch.setattr(ae_mod, "_save_state", lambda out, ae, disc, o, od, m, step, s: (saved.append(step), real(out, ae, disc, o, od, m, step, s)))
    train_autoencoder(AETrainConfig(out=str(tmp_path / "ae"), steps=5, batch_size=16, checkpoint_minutes=1e-9), log=lambda m: None)
    assert saved[:6] == [0, 1, 2, 3, 4, 5]
    one = []
    monkeypatch.setattr(ae_mod, "_save_state", lambda out, ae, disc, o, od, m, step, s: (one.append(step), real(out, ae, disc, o, od, m, step, s)))
    train_autoencoder(AETrainConfig(out=str(tmp_path / "ae2"), steps=5, batch_size=16), log=lambda m: None)
    assert one == [0, 5]  # the default (2 minutes, 1000 steps) does not fire in a 5-step run: step 0 and the end only


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_disk_errors_during_a_checkpoint_keep_the_last_good_one(tmp_path, monkeypatch, capsys, err):
    run = tmp_path / "d"
    assert main(["train", "--data", "digits", "--cond", "class", "--steps", "3", "--batch-size", "16", "--out", str(run),
                 "--sample-every", "1000000", "--checkpoint-every", "2"]) == 0
    good = _state(run)
    model_before = (run / "model.safetensors").read_bytes()
    import diffuse.checkpoint as ck

    real, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) >= 2:  # the first write of this run goes through; the next one hits the full / read-only disk
            raise OSError(err, os.strerror(err))
        real(fd)

    monkeypatch.setattr(ck.os, "fsync", failing_fsync)
    rc, lines = _cli(capsys, "train", "--out", run, "--resume", "--steps", "20")
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: cannot write") and os.strerror(err) in lines[0], lines
    monkeypatch.setattr(ck.os, "fsync", real)
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*.tmp"))
    assert _state(run).keys() == good.keys()  # intact and loadable: the step-3 checkpoint or the one written before the failure
    assert load_tensors(run / "state" / "state.safetensors")[1]["step"] in (3, 4)
    if load_tensors(run / "state" / "state.safetensors")[1]["step"] == 3:
        _same(_state(run), good)
        assert (run / "model.safetensors").read_bytes() == model_before
    monkeypatch.setattr(ck.os, "fsync", failing_fsync)  # a sample grid and a synth image hit the same disk
    calls.clear()
    calls.append(0)
    rc, lines = _cli(capsys, "sample", run, "--n", "4", "--steps", "2", "--out", tmp_path / "g.png")
    assert rc == 2 and len(lines) == 1 and "cannot write" in lines[0] and not (tmp_path / "g.png").exists()
    calls.clear()
    calls.append(0)
    rc, lines = _cli(capsys, "synth", run, "--per-class", "1", "--steps", "2", "--out", tmp_path / "syn")
    assert rc == 2 and len(lines) == 1 and "cannot write" in lines[0]
    assert not list((tmp_path / "syn").rglob(".*.tmp"))


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_a_real_full_disk(tmp_path):
    """A tmpfs that holds one checkpoint but not the temp file of the next: one line, the last good one kept."""
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, "5m"):  # state 2.9 MB + model 0.7 MB fit once; a second state's temp file does not
        pytest.skip("mounting a tmpfs needs root")
    try:
        run = mnt / "run"
        r = diffuse("train", "--data", "digits", "--cond", "class", "--steps", "50", "--batch-size", "16", "--checkpoint-every", "5",
                    "--sample-every", "1000000", "--out", run, check=False)
        one_line_error(r, "No space left on device")
        assert not list(run.rglob(".*.tmp"))
        step = load_tensors(run / "state" / "state.safetensors")[1]["step"]
        assert step % 5 == 0 and step < 50  # an earlier checkpoint (step 0 has no optimizer moments yet, so step 5 fits too)
        r = diffuse("sample", run, "--n", "4", "--steps", "2", "--out", tmp_path / "ok.png")  # still usable
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_nan_in_the_ema_never_reaches_model_safetensors(tmp_path, monkeypatch):
    run = tmp_path / "n"
    train(TrainConfig(out=str(run), steps=2, **FAST))
    before = (run / "model.safetensors").read_bytes()
    import diffuse.train.loop as loop

    real = loop.ema_update

    def poisoned(ema, model, beta):
        real(ema, model, beta)
        next(ema.parameters()).data.fill_(float("nan"))

    monkeypatch.setattr(loop, "ema_update", poisoned)
    with pytest.raises(UserError, match="NaN"):
        train(TrainConfig(out=str(run), steps=6, checkpoint_every=2), resume=True)
    assert (run / "model.safetensors").read_bytes() == before
    assert load_tensors(run / "state" / "state.safetensors")[1]["step"] == 2


def test_nan_weights_and_nan_data_are_refused_at_load(tmp_path):
    import numpy as np
    from safetensors.torch import load_file, save_file

    run = tmp_path / "w"
    train(TrainConfig(out=str(run), steps=1, **FAST))
    t = load_file(run / "model.safetensors")
    k = next(iter(t))
    t[k] = torch.full_like(t[k], float("nan"))
    from safetensors import safe_open

    with safe_open(run / "model.safetensors", "pt") as f:
        meta = f.metadata()
    save_file(t, run / "model.safetensors", metadata=meta)
    one_line_error(diffuse("sample", run, "--out", tmp_path / "a.png", check=False), "NaN/inf weights")
    imgs = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    imgs[3, 2, 2] = np.nan
    np.savez(tmp_path / "bad.npz", images=imgs)
    one_line_error(diffuse("train", "--data", tmp_path / "bad.npz", "--out", tmp_path / "x", check=False), "non-finite")
    assert not (tmp_path / "x").exists()


def test_memory_guard_traces_the_true_activation_peak():
    """Against an analytic reference: a chain of Linear layers keeps at most two activations alive at once."""
    from diffuse.memory import forward_peak_bytes

    net = torch.nn.Sequential(torch.nn.Linear(100, 1000), torch.nn.ReLU(), torch.nn.Linear(1000, 10))
    for b in (1, 64, 10_000):
        x = torch.empty(b, 100, device="meta")
        # Linear(100->1000) output, ReLU's new output while its input is alive, then the last Linear's output
        assert forward_peak_bytes(net, x) == 4 * b * (1000 + 1000)
    with pytest.raises(UserError, match="cannot run on inputs"):
        forward_peak_bytes(net, torch.empty(3, 7, device="meta"))


def test_a_traced_peak_is_cached_per_network_and_shape_and_a_bad_cache_is_traced_again(monkeypatch, tmp_path):
    import diffuse.memory as memory

    monkeypatch.setenv("DIFFUSE_CACHE", str(tmp_path))
    net = torch.nn.Sequential(torch.nn.Linear(100, 1000), torch.nn.ReLU(), torch.nn.Linear(1000, 10))
    x = torch.empty(8, 100, device="meta")
    traced = memory.forward_peak_bytes(net, x)
    files = list((tmp_path / "memory").glob("*.json"))
    assert traced == 4 * 8 * 2000 and len(files) == 1
    calls = []
    real = memory._traced_peak
    monkeypatch.setattr(memory, "_traced_peak", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert memory.forward_peak_bytes(net, x) == traced and not calls  # from the cache
    assert memory.forward_peak_bytes(net, torch.empty(9, 100, device="meta")) == 4 * 9 * 2000 and len(calls) == 1
    wider = torch.nn.Sequential(torch.nn.Linear(100, 2000), torch.nn.ReLU(), torch.nn.Linear(2000, 10))
    assert memory.forward_peak_bytes(wider, x) == 4 * 8 * 4000 and len(calls) == 2  # another network: its own entry
    files[0].write_text("{not json")
    assert memory.forward_peak_bytes(net, x) == traced and len(calls) == 3  # a torn cache file is traced again
    import diffuse.checkpoint as ck

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "atomic_write_bytes", full)  # a full or read-only cache costs the trace, nothing else
    assert memory.forward_peak_bytes(net, torch.empty(10, 100, device="meta")) == 4 * 10 * 2000 and len(calls) == 4


def test_memory_guard_refuses_what_cannot_fit_and_batches_the_rest(tmp_path, capsys, monkeypatch):
    run = tmp_path / "m"
    train(TrainConfig(out=str(run), steps=1, **FAST))
    rc, lines = _cli(capsys, "sample", run, "--n", 10**12, "--out", tmp_path / "a.npz")
    assert rc == 2 and len(lines) == 1 and "of memory" in lines[0] and "--n" in lines[0]
    import diffuse.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 200 * 2**20)  # a 200 MiB machine
    rc, lines = _cli(capsys, "sample", run, "--n", 4096, "--batch-size", 4096, "--steps", "1", "--out", tmp_path / "b.npz")
    assert rc == 2 and len(lines) == 1 and "--batch-size" in lines[0], lines
    rc, lines = _cli(capsys, "sample", run, "--n", 4096, "--batch-size", 256, "--steps", "1", "--out", tmp_path / "b.npz")
    assert rc == 0 and (tmp_path / "b.npz").is_file()
    rc, lines = _cli(capsys, "eval", run, "--n", 4096, "--batch-size", 4096, "--steps", "1")
    assert rc == 2 and "of memory" in lines[-1]
    rc, lines = _cli(capsys, "synth", run, "--per-class", 500, "--batch-size", 5000, "--steps", "1", "--out", tmp_path / "s")
    assert rc == 2 and "of memory" in lines[-1]


def test_twenty_kill_9s_each_resumed_end_equal_to_an_uninterrupted_run(tmp_path):
    """kill -9 at 20 random moments (import, data loading, a step, a checkpoint write), each followed by --resume;
    the run then finishes with weights, EMA and optimizer state equal to an uninterrupted run's, bit for bit."""
    import random

    rng = random.Random(20)
    run = tmp_path / "k"
    base = [sys.executable, "-m", "diffuse", "train", "--data", "digits", "--cond", "class", "--batch-size", "16",
            "--checkpoint-every", "3", "--sample-every", "1000000", "--log-every", "1", "--steps", "100000"]
    steps_at_kill = []
    for i in range(20):
        log = open(tmp_path / f"stderr{i}.txt", "w")
        p = subprocess.Popen(base + ["--out", str(run)] + (["--resume"] if i else []), stdout=subprocess.DEVNULL, stderr=log)
        if i == 0:  # the first kill comes once the run exists; every later one at any moment of the process's life
            while not (run / "config.json").exists() and p.poll() is None:
                time.sleep(0.01)
        time.sleep(rng.uniform(0.3, 7.0))  # startup takes ~4 s on 2 cores, so about half land mid-training
        assert p.poll() is None, f"trainer {i} exited before its kill: {(tmp_path / f'stderr{i}.txt').read_text()[-500:]}"
        p.kill()
        p.wait()
        log.close()
        err = (tmp_path / f"stderr{i}.txt").read_text()
        assert "Traceback" not in err and "error:" not in err, err[-500:]
        state = run / "state" / "state.safetensors"
        steps_at_kill.append(load_tensors(state)[1]["step"] if state.exists() else -1)
    assert sum(b > a for a, b in zip(steps_at_kill, steps_at_kill[1:])) >= 3, steps_at_kill  # kills also land mid-training
    final = max(steps_at_kill) + 7
    r = subprocess.run(base[:-1] + [str(final), "--out", str(run), "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-800:]
    r = subprocess.run(base[:-1] + [str(final), "--out", str(tmp_path / "ref")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-800:]
    _same(_state(tmp_path / "ref"), _state(run))
    assert (tmp_path / "ref" / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    assert not list(run.rglob(".*.tmp"))
    print(f"20 kills survived; checkpointed step at each kill: {steps_at_kill}; finished at step {final}")
