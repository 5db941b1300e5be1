"""The training side of a run directory, shared by every trainer: one writer at a time, never wedged, and a
checkpoint at least every few minutes.

- ``RunLock``: an OS lock (``fcntl.flock``) on ``RUN/.lock``. The kernel releases it when the process ends in
  any way, ``kill -9`` included, so a killed run never needs a lock removed by hand. Readers (``sample``,
  ``eval``) take no lock: every file they read is replaced atomically (checkpoint.py).
- ``start_mode``: whether to start fresh, resume from a checkpoint, or (re)start from step 0 with the saved
  configuration of a run that was killed before its first checkpoint.
- ``CheckpointClock``: a checkpoint is due every N steps or every M minutes, whichever comes first (as
  Lightning's ``every_n_train_steps`` / ``train_time_interval``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError


class RunLock:
    """Exclusive, non-blocking lock on ``run/.lock``; a second trainer on the same run gets one clear line."""

    def __init__(self, run: Path, create: bool = True):
        self.run, self.create, self.fd, self.made = Path(run), create, None, False

    def __enter__(self) -> "RunLock":
        if not self.create and not self.run.is_dir():
            raise UserError(f"run directory not found: {self.run}")
        try:
            self.made = not self.run.exists()
            self.run.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot create the run directory {self.run}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(f"{self.run} is being trained by another process (pid {holder}); wait for it to finish, "
                            f"or stop it (Ctrl-C saves a checkpoint) and pass --resume") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        remove_stale_temp_files(self.run)  # only a writer that died can have left them: we hold the lock now
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is None:
            return
        os.close(self.fd)  # closing releases the lock; the .lock file (last pid) stays, harmless and reused
        self.fd = None
        if self.made and [p.name for p in self.run.iterdir()] == [".lock"]:  # a new run that failed before writing anything
            (self.run / ".lock").unlink(missing_ok=True)
            self.run.rmdir()


def remove_stale_temp_files(run: Path) -> list[Path]:
    """Delete the ``.NAME.XXXX.tmp`` files an atomic write leaves when its process is killed mid-write."""
    gone = []
    for p in [*Path(run).glob(".*.tmp"), *Path(run).glob("*/.*.tmp")]:
        p.unlink(missing_ok=True)
        gone.append(p)
    return gone


# What `--resume` may change in a saved run: its budget and how often it checkpoints by time. Everything else is
# the run's saved configuration.
RESUMABLE = ("steps", "minutes", "checkpoint_minutes")


def resume_overrides(cfg: object) -> dict:
    """The RESUMABLE fields the caller set (not None), to apply over a run's saved configuration."""
    return {k: getattr(cfg, k) for k in RESUMABLE if getattr(cfg, k) is not None}


def start_mode(run: Path, resume: bool, state: str = "state/state.safetensors", what: str = "run") -> str:
    """``fresh`` (a new run), ``resume`` (continue from the checkpoint) or ``restart`` (the run's config.json
    exists but it was killed before its first checkpoint: start it again from step 0 with that config).
    Call it while holding the run's lock."""
    run = Path(run)
    has_config, has_state = (run / "config.json").is_file(), (run / state).is_file()
    if not resume:
        if has_config or has_state:
            raise UserError(f"{run} already holds {'an' if what[0] in 'aeiou' else 'a'} {what}; pass --resume to continue it or choose another --out")
        return "fresh"
    if not has_config:
        raise UserError(f"nothing to resume in {run}: it holds no config.json (start it without --resume)")
    return "resume" if has_state else "restart"


@dataclass
class CheckpointClock:
    """Is a checkpoint due? Every ``every_steps`` steps, or when ``every_minutes`` have passed since the last one."""

    every_steps: int
    every_minutes: float | None
    last: float = field(default_factory=time.monotonic)

    def due(self, step: int) -> bool:
        """Whether a checkpoint is due after ``step`` (a step multiple, or the time since the last one)."""
        timed = self.every_minutes is not None and time.monotonic() - self.last >= 60 * self.every_minutes
        return step % self.every_steps == 0 or timed

    def saved(self) -> None:
        """Restart the time interval (call after every checkpoint)."""
        self.last = time.monotonic()


def check_checkpoint_minutes(minutes: float | None) -> None:
    """The one validation of ``--checkpoint-minutes`` (every trainer has the flag)."""
    if minutes is not None and not (minutes > 0 and minutes < float("inf")):
        raise UserError(f"--checkpoint-minutes must be a positive number, got {minutes}")
