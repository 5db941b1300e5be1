"""``diffuse serve``: the web page and the HTTP API over one or more runs (serve/)."""

from __future__ import annotations

from pathlib import Path

import typer

from .cli_common import _DEVICE, _device, app


@app.command()
def serve(
    runs: list[Path] = typer.Argument(..., help="run directories to serve (a run picker appears when there are several)"),
    host: str = typer.Option("127.0.0.1", help="address to bind; anything but localhost prints a warning"),
    port: int = typer.Option(7860, help="TCP port"),
    max_queue: int = typer.Option(16, help="jobs queued or running at once, over all runs; past it a request is told 'busy'"),
    max_n: int = typer.Option(16, help="samples per request"),
    max_steps: int = typer.Option(100, help="sampler steps per request"),
    max_input_pixels: int = typer.Option(4096 * 4096, help="an uploaded image larger than this is refused before decoding"),
    timeout: float = typer.Option(120.0, help="seconds a job may run before it is stopped"),
    keep_jobs: int = typer.Option(64, help="finished jobs (and their files) remembered; older ones are deleted"),
    device: str = _DEVICE,
) -> None:
    """Serve a web page (Gradio) and a JSON API (/api/jobs) for sampling and editing with trained runs."""
    from .serve import serve as run_server
    from .serve.jobs import Limits

    limits = Limits(max_queue=max_queue, max_n=max_n, max_steps=max_steps, max_input_pixels=max_input_pixels,
                    timeout_s=timeout, keep_jobs=keep_jobs)
    run_server(list(runs), host, port, limits, str(_device(device)), log=lambda s: typer.echo(s, err=s.startswith("warning")))
