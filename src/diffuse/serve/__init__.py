"""`diffuse serve`: the web page (page.py) and the HTTP API (http.py) over one job queue (jobs.py), all calling the
public Python API (api.py).

Safe by default: it binds 127.0.0.1; only the runs named at start are served and no request field reaches the
file system; the queue is bounded and every job has caps and a time limit; nothing is fetched from the network
(no analytics, no version check, no share tunnel, no web fonts); nothing is unpickled.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import UserError
from .jobs import Limits

# Set before Gradio is imported: no telemetry, no Hugging Face Hub calls.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "GRADIO_SSR_MODE": "False"}
# Samples are small (28x28 for the default recipe): show them scaled up with sharp pixels, not blurred.
CSS = ".results img, #history img {image-rendering: pixelated}"


def run_names(paths: list[Path]) -> dict[str, Path]:
    """A unique name per run directory (its folder name; -2, -3 ... on a clash)."""
    names: dict[str, Path] = {}
    for p in paths:
        name, k = Path(p).resolve().name or "run", 2
        base = name
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names[name] = Path(p)
    return names


def build_app(runs: dict[str, Any], limits: Limits, work_dir: Path) -> tuple[Any, Any]:
    """(FastAPI app with the API and the page mounted at /, the job queue). ``runs``: name -> api.Run or a function
    that loads one (in the sampling thread, jobs.py)."""
    os.environ.update(OFFLINE_ENV)
    os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(work_dir) / "gradio"))
    try:
        import gradio as gr
        from fastapi import FastAPI
    except ImportError:
        raise UserError("diffuse serve needs Gradio: pip install -e '.[serve]'") from None
    from PIL import Image

    from .http import add_routes
    from .jobs import Jobs
    from .page import build_page

    limits.check()
    Image.MAX_IMAGE_PIXELS = limits.max_input_pixels  # Pillow refuses (not just warns) at twice this, before decoding
    jobs = Jobs(runs, limits, Path(work_dir) / "jobs")
    # No Swagger or ReDoc pages: both load their scripts from a CDN. The schema itself is served.
    app = FastAPI(title="diffuse", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    add_routes(app, jobs)
    # System fonts only: Gradio's default theme would fetch Google Fonts, and the page must work offline.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    page = build_page(jobs, gr, Path(os.environ["GRADIO_TEMP_DIR"]))
    app = gr.mount_gradio_app(app, page, path="/", theme=theme, css=CSS, ssr_mode=False, show_error=False,
                              footer_links=[], allowed_paths=[], max_file_size=64 << 20)
    return app, jobs


def serve(run_dirs: list[Path], host: str = "127.0.0.1", port: int = 7860, limits: Limits | None = None,
          device: str = "cpu", log=print) -> None:
    """Load the runs and serve them until interrupted."""
    import uvicorn

    from ..api import load

    limits = limits or Limits()
    limits.check()
    if not run_dirs:
        raise UserError("name at least one run directory to serve")
    if not 0 < port < 65536:
        raise UserError(f"--port must be from 1 to 65535, got {port}")
    runs = {name: (lambda p=p: load(p, device)) for name, p in run_names(run_dirs).items()}
    with tempfile.TemporaryDirectory(prefix="diffuse-serve-") as work:
        app, _ = build_app(runs, limits, Path(work))
        if host not in ("127.0.0.1", "localhost", "::1"):
            log(f"warning: serving on {host}: anyone who can reach this address can use the page and the API")
        log(f"serving {', '.join(runs)} on http://{'[' + host + ']' if ':' in host else host}:{port}/ "
            f"(API: /api/runs, /api/jobs; schema: /api/openapi.json)")
        # A browser tab keeps a connection open: Ctrl-C must not wait for it to close.
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
