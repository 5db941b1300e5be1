"""The HTTP API: JSON endpoints beside the page, on the same job queue.

    GET    /api/runs                      the runs served, their controls and the server's limits
    POST   /api/jobs                      {"run", "n", "prompt", "negative_prompt", "label", "sampler", "steps",
                                           "guidance", "seed", "strength", "init", "mask"} (images as base64 PNG/JPEG)
                                          -> 202 {"id", "token", "status"}; 400 {"error"} for a bad request,
                                          503 {"error": "busy: ..."} (with Retry-After) past --max-queue
    GET    /api/jobs/{id}                 {"id", "status", "progress", "step", "steps", "error", "params", "files"}
    GET    /api/jobs/{id}/files/{name}    one result file (PNG with its parameters, WAV, samples.npz)
    DELETE /api/jobs/{id}                 cancel; header X-Job-Token must be the token POST returned (else 403)

No field of a request names a file: runs are the ones given at start, files only the ones a job wrote.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError
from .jobs import Busy, Jobs
from .jobs import Request as JobRequest

MAX_BODY = 32 << 20  # bytes of a request body (two base64 images well past max_input_pixels fit)


class JobIn(BaseModel):
    """The body of POST /api/jobs."""

    model_config = ConfigDict(extra="forbid")
    run: str = Field(max_length=200)
    n: int = 1
    prompt: str | None = Field(None, max_length=500)
    negative_prompt: str | None = Field(None, max_length=500)
    label: int | str | None = None
    sampler: str | None = Field(None, max_length=40)
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    strength: float = 1.0
    init: str | None = None  # base64 image
    mask: str | None = None  # base64 image, white = keep


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _b64(data: str | None, what: str) -> bytes | None:
    if data is None:
        return None
    if len(data) > MAX_BODY:
        raise UserError(f"{what} is too large")
    try:
        return base64.b64decode(data.split(",", 1)[-1] if data.startswith("data:") else data, validate=True)
    except (binascii.Error, ValueError):
        raise UserError(f"{what} is not base64 data") from None


def run_info(name: str, run: Any) -> dict[str, Any]:
    """What a client needs to build a request for a run (and the page its controls)."""
    return {"name": name, "modality": run.modality.name, "cond": run.cond, "task": run.task,
            "classes": run.class_names if run.cond == "class" else [], "shape": list(run.config.image_shape),
            "defaults": run.defaults(), "edits_pictures": run.modality.edits_pictures}


def add_routes(app: FastAPI, jobs: Jobs) -> None:
    """The JSON API on ``app``."""

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > MAX_BODY):
            return _error(413, f"request body over {MAX_BODY >> 20} MiB")
        if size is None and request.url.path.startswith("/api/") and request.method in ("POST", "PUT", "PATCH"):
            return _error(411, "send a Content-Length header (bodies are capped at {} MiB)".format(MAX_BODY >> 20))
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        if "json" not in request.headers.get("content-type", ""):
            return _error(400, "bad request: send a JSON object with the header Content-Type: application/json")
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return _error(400, f"bad request: {where}: {first.get('msg', 'invalid')}")

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        lim = jobs.limits
        return {"runs": [run_info(k, r) for k, r in jobs.runs.items()],
                "limits": {"max_n": lim.max_n, "max_steps": lim.max_steps, "max_queue": lim.max_queue,
                           "timeout_s": lim.timeout_s, "max_input_pixels": lim.max_input_pixels}}

    @app.post("/api/jobs", status_code=202)
    def submit(body: JobIn):
        try:
            fields = body.model_dump()
            fields["init"], fields["mask"] = _b64(body.init, "init"), _b64(body.mask, "mask")
            job = jobs.submit(JobRequest(**fields))
        except UserError as e:
            return _error(400, str(e))
        except Busy as e:
            return _error(503, str(e), **{"Retry-After": "5"})
        return JSONResponse({"id": job.id, "token": job.token, "status": job.status}, status_code=202)

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str):
        job = jobs.get(job_id)
        return _error(404, f"no job {job_id!r}") if job is None else job.public()

    @app.get("/api/jobs/{job_id}/files/{name}")
    def file(job_id: str, name: str):
        job = jobs.get(job_id)
        match = [p for p in (job.files if job else []) if p.name == name]
        if not match or not match[0].is_file():
            return _error(404, f"no file {name!r} in job {job_id!r}")
        return FileResponse(match[0], filename=name)

    @app.delete("/api/jobs/{job_id}")
    def cancel(job_id: str, x_job_token: str | None = Header(None)):
        try:
            job = jobs.cancel(job_id, x_job_token or "")
        except KeyError:
            return _error(404, f"no job {job_id!r}")
        except PermissionError as e:
            return _error(403, str(e))
        return {"id": job.id, "status": "cancelling" if not job.finished else job.status}
