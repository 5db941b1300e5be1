"""Generation jobs behind the web page and the HTTP API: a bounded queue, one sampling thread (one generation at a
time), per-job progress, cancellation by the job's owner only, a timeout, and a bounded history whose files are deleted
as it rolls over (so neither memory nor disk grows with the number of generations).

One thread does all the torch work, loading included: with libgomp (torch's CPU OpenMP), a second thread that has
run a parallel op makes every later parallel region of the first slower (measured: 0.32 s -> 0.51 s per 4-sample
call on 2 cores). So runs may be given as loaders, request threads decode uploads with Pillow and numpy only, and the
sampling thread loads, samples and writes.

    jobs = Jobs({"fmnist": lambda: diffuse.load("runs/fmnist")}, Limits(), out_dir)   # or loaded Run objects
    job = jobs.submit(Request(run="fmnist", n=4, label=3))    # Busy past --max-queue; UserError for a bad request
    jobs.wait(job.id); job.files                              # PNG (with parameters) / WAV per sample, and an .npz
    jobs.cancel(job.id, job.token)
"""

from __future__ import annotations

import io
import math
import queue
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..samplers import SAMPLERS


class Busy(Exception):
    """The queue is full: the client should retry later."""


class Cancelled(Exception):
    """Raised inside sampling when a job is cancelled or runs past its time limit."""


@dataclass
class Limits:
    """Caps on what one request may ask for (`diffuse serve` flags)."""

    max_queue: int = 16  # jobs waiting or running, over all runs
    max_n: int = 16
    max_steps: int = 100
    max_input_pixels: int = 4096 * 4096  # an uploaded image is refused above this, before it is decoded
    timeout_s: float = 120.0  # a job running longer is stopped
    keep_jobs: int = 64  # finished jobs remembered (their files too); older ones are forgotten and deleted

    def check(self) -> None:
        for name in ("max_queue", "max_n", "max_steps", "max_input_pixels", "keep_jobs"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not math.isfinite(self.timeout_s) or self.timeout_s <= 0:
            raise UserError(f"--timeout must be a positive number of seconds, got {self.timeout_s}")


@dataclass
class Request:
    """One generation request, as the page and the HTTP API receive it. ``init``/``mask`` are encoded image bytes or
    uint8 arrays (mask: white = keep); the server resizes them to the run's size."""

    run: str
    n: int = 1
    prompt: str | None = None
    negative_prompt: str | None = None
    label: int | str | None = None
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    strength: float = 1.0
    init: Any = None
    mask: Any = None

    def check(self, limits: Limits, runs: dict[str, Any]) -> None:
        if self.run not in runs:
            raise UserError(f"unknown run {self.run!r}; this server has {', '.join(runs)}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or not 1 <= self.n <= limits.max_n:
            raise UserError(f"n must be an integer from 1 to {limits.max_n}, got {self.n!r}")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or not 1 <= self.steps <= limits.max_steps):
            raise UserError(f"steps must be an integer from 1 to {limits.max_steps}, got {self.steps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise UserError(f"seed must be an integer from 0 to 2^31 - 1, got {self.seed!r}")
        if self.guidance is not None and not (math.isfinite(self.guidance) and 0 <= self.guidance <= 50):
            raise UserError(f"guidance must be a number from 0 to 50, got {self.guidance!r}")
        if not (math.isfinite(self.strength) and 0 <= self.strength <= 1):
            raise UserError(f"strength must be from 0 to 1, got {self.strength!r}")
        for name in ("prompt", "negative_prompt"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or len(v) > 500):
                raise UserError(f"{name} must be text of at most 500 characters")

    def sample_kwargs(self, run: Any, limits: Limits) -> dict[str, Any]:
        """Run.sample's arguments, with uploaded images decoded (size-checked first) and resized to the run's size."""
        kw: dict[str, Any] = {"n": self.n, "sampler": self.sampler or None, "steps": self.steps, "guidance": self.guidance,
                              "seed": self.seed, "label": self.label if self.label not in ("", None) else None}
        if kw["label"] is not None:  # checked now, so a bad one is a 400 and not a failed job
            from ..generate import round_robin_labels

            kw["label"] = run.label_index(kw["label"])
            round_robin_labels(1, len(run.class_names) if run.cond == "class" else 0, kw["label"])
        if kw["sampler"] is not None and kw["sampler"] not in SAMPLERS:
            raise UserError(f"unknown sampler {kw['sampler']!r}; one of {', '.join(SAMPLERS)}")
        if self.prompt and self.prompt.strip():
            kw["prompt"] = self.prompt
        if self.negative_prompt and self.negative_prompt.strip():
            kw["negative_prompt"] = self.negative_prompt
        c, *hw = run.config.image_shape
        if run.task == "superres":
            hw = [a // run.config.net.lowres_factor for a in hw]
        if (self.init is not None or self.mask is not None) and not run.modality.edits_pictures:
            raise UserError(f"init and mask images are for image runs; {self.run!r} makes {run.modality.name}")
        if self.init is not None:
            kw["init"] = fit(self.init, c, hw, "init image", limits.max_input_pixels)
            if run.task != "superres":
                kw["strength"] = self.strength
        if self.mask is not None:
            if self.init is None:
                raise UserError("a mask needs an init image")
            kw["mask"] = fit(self.mask, 1, hw, "mask", limits.max_input_pixels)
        return kw


def fit(obj: Any, channels: int, hw: list[int], what: str, max_pixels: int) -> np.ndarray:
    """An uploaded image (bytes or uint8 array) as uint8 [H, W, C] at the run's size (Lanczos), its size checked
    before it is decoded."""
    from PIL import Image

    from ..api import as_pixels
    from ..images import read_image

    if isinstance(obj, (bytes, bytearray)):
        arr = read_image(io.BytesIO(bytes(obj)), channels == 1, what, max_pixels)  # type: ignore[arg-type]
    else:
        arr = np.asarray(obj)
        if arr.ndim < 2 or arr.shape[0] * arr.shape[1] > max_pixels:
            raise UserError(f"{what} is too large or not an image: shape {list(arr.shape)}")
    x = as_pixels(arr, channels, what)[0]  # [H, W, C], no torch: this runs in a request thread (see the top)
    if list(x.shape[:2]) != list(hw):
        im = Image.fromarray(x[..., 0] if channels == 1 else x).resize((hw[1], hw[0]), Image.LANCZOS)
        x = np.asarray(im).reshape(hw[0], hw[1], channels)
    return x


@dataclass
class Job:
    id: str
    token: str  # the owner's secret: only it can cancel the job
    request: Request
    status: str = "queued"  # queued | running | done | failed | cancelled
    done: int = 0
    total: int = 0
    error: str | None = None
    files: list[Path] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    values: list[Any] = field(default_factory=list)  # the modality's web widget values (the page)
    preview: list[Path] = field(default_factory=list)  # one picture per sample (the page's session gallery)
    created: float = field(default_factory=time.time)
    started: float | None = None  # time.monotonic() when a worker took it
    seconds: float | None = None  # how long it ran (sampling and writing its files)
    finished_event: threading.Event = field(default_factory=threading.Event)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def progress(self) -> float:
        return 1.0 if self.status == "done" else (self.done / self.total if self.total else 0.0)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    def public(self) -> dict[str, Any]:
        """The job as the HTTP API shows it (no token, no paths)."""
        return {"id": self.id, "run": self.request.run, "status": self.status, "progress": round(self.progress, 4),
                "step": self.done, "steps": self.total, "error": self.error, "params": self.params,
                "seconds": None if self.seconds is None else round(self.seconds, 3),
                "files": [f"/api/jobs/{self.id}/files/{p.name}" for p in self.files]}


class Jobs:
    """The job queue of one server. ``runs``: name -> api.Run; files go under ``out_dir``/<job id>/."""

    def __init__(self, runs: dict[str, Any], limits: Limits, out_dir: Path):
        """``runs``: name -> api.Run, or a function that loads one (called in the sampling thread). Returns once
        every run is loaded; a run that fails to load raises its UserError here."""
        self.limits, self.out_dir = limits, Path(out_dir)
        self.runs: dict[str, Any] = {}
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.lock = threading.Lock()
        self.queue: queue.Queue = queue.Queue()
        loaded, failed = threading.Event(), []
        threading.Thread(target=self._worker, args=(runs, loaded, failed), daemon=True, name="diffuse-sampler").start()
        loaded.wait()
        if failed:
            raise failed[0]

    def pending(self) -> int:
        with self.lock:
            return sum(not j.finished for j in self.jobs.values())

    def submit(self, req: Request) -> Job:
        """Queue a checked request; UserError if it is bad, Busy if max_queue jobs are waiting or running."""
        req.check(self.limits, self.runs)
        kwargs = req.sample_kwargs(self.runs[req.run], self.limits)  # decode uploads now: bad ones fail here
        with self.lock:
            if sum(not j.finished for j in self.jobs.values()) >= self.limits.max_queue:
                raise Busy(f"busy: {self.limits.max_queue} jobs are queued or running; try again shortly")
            job = Job(secrets.token_hex(8), secrets.token_urlsafe(16), req)
            self.jobs[job.id] = job
            self._forget_old()
        self.queue.put((job, kwargs))
        return job

    def get(self, job_id: str) -> Job | None:
        with self.lock:
            return self.jobs.get(job_id)

    def cancel(self, job_id: str, token: str) -> Job:
        """Cancel a job; only its owner's token may. KeyError: no such job; PermissionError: not the owner's token."""
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if not secrets.compare_digest(str(token or ""), job.token):
            raise PermissionError("only the client that submitted a job can cancel it")
        job.cancel_event.set()
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        job = self.get(job_id)
        if job is None:
            raise KeyError(job_id)
        job.finished_event.wait(timeout)
        return job

    def _forget_old(self) -> None:
        """Keep at most keep_jobs finished jobs; delete the files of the ones dropped (called under the lock)."""
        finished = [j for j in self.jobs.values() if j.finished]
        for j in finished[: max(0, len(finished) - self.limits.keep_jobs)]:
            del self.jobs[j.id]
            shutil.rmtree(self.out_dir / j.id, ignore_errors=True)

    def _worker(self, runs: dict[str, Any], loaded: threading.Event, failed: list) -> None:
        try:
            self.runs = {name: r() if callable(r) else r for name, r in runs.items()}
        except Exception as e:  # noqa: BLE001 - handed to the constructor's thread
            failed.append(e)
        loaded.set()
        while not failed:
            job, kwargs = self.queue.get()
            run = self.runs[job.request.run]
            if job.cancel_event.is_set():
                self._finish(job, "cancelled", "cancelled before it started")
                continue
            job.status, job.started = "running", time.monotonic()
            deadline = time.monotonic() + self.limits.timeout_s

            def on_step(done: int, total: int, job: Job = job, deadline: float = deadline) -> None:
                job.done, job.total = done, total
                if job.cancel_event.is_set():
                    raise Cancelled("cancelled")
                if time.monotonic() > deadline:
                    raise Cancelled(f"stopped: it ran past the {self.limits.timeout_s:g} s time limit")

            try:
                samples = run.sample(**kwargs, on_step=on_step)
                self._store(job, run, samples)
                self._finish(job, "done")
            except Cancelled as e:
                self._finish(job, "cancelled", str(e))
            except UserError as e:
                self._finish(job, "failed", str(e))
            except OSError as e:  # a full disk, a removed work folder: this job fails, the server goes on
                shutil.rmtree(self.out_dir / job.id, ignore_errors=True)
                self._finish(job, "failed", f"could not write the results: {e.strerror or e}")
            except Exception as e:  # noqa: BLE001 - a bug must not kill the worker; the job says what happened
                self._finish(job, "failed", f"internal error: {type(e).__name__}: {str(e)[:200]}")

    def _store(self, job: Job, run: Any, samples: Any) -> None:
        folder = self.out_dir / job.id
        files = samples.save_items(folder)
        job.captions = [caption(samples, i, run) for i in range(len(samples))]
        job.values = run.modality.web_values(samples.x, files, job.captions)
        job.preview = sorted(folder.glob("*.png")) or files
        samples.save(folder / "samples.npz")
        job.files = files + [folder / "samples.npz"]
        job.params = samples.params

    def _finish(self, job: Job, status: str, error: str | None = None) -> None:
        with self.lock:
            job.status, job.error = status, error
            if job.started is not None:
                job.seconds = time.monotonic() - job.started
            self._forget_old()
        job.finished_event.set()


def caption(samples: Any, i: int, run: Any) -> str:
    """A short caption of sample i: its prompt or class, and its seed index."""
    p = samples.item_params(i)
    what = p.get("prompt") or (run.class_names[p["label"]] if "label" in p and p["label"] < len(run.class_names) else "")
    return f"{what} (seed {p['seed']}, #{p['first']})".strip()
