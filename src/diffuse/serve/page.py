"""The web page (Gradio): a run picker, the controls of the picked run's conditioning, one Generate button, editing
(img2img, an inpainting brush, a low-res upload for super-resolution runs), per-step progress, the modality's own
output widgets, this session's gallery and downloads. It submits to the same job queue as the HTTP API."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..samplers import SAMPLERS
from .http import run_info
from .jobs import Busy, Jobs, Request

MODES = ("generate", "img2img", "inpaint")
MAX_UPLOAD_BYTES = 64 << 20
HISTORY = 48  # pictures kept in a session's gallery


def _controls(info: dict[str, Any], mode: str, gr: Any, modalities: list[str], new_run: bool = True) -> list[Any]:
    """Visibility and values of the controls that depend on the run and the editing mode. The run's defaults (class
    list, steps, guidance) are set only when the run changes (``new_run``), so a mode switch keeps the user's picks."""
    text, cls, sr = info["cond"] == "text", info["cond"] == "class", info["task"] == "superres"
    image = info["edits_pictures"]
    d = info["defaults"]
    keep = gr.update()
    return [gr.update(visible=text), gr.update(visible=text),
            gr.update(visible=cls, choices=["(round robin)", *info["classes"]], value="(round robin)") if new_run
            else gr.update(visible=cls),
            gr.update(visible=image and not sr, value="generate" if sr or not image else mode),
            gr.update(visible=sr or (image and mode == "img2img"), label="Low-res image" if sr else "Init image"),
            gr.update(visible=image and not sr and mode == "inpaint"),
            gr.update(visible=image and not sr and mode == "img2img"),
            gr.update(value=d["steps"]) if new_run else keep,
            gr.update(value=float(d["guidance"]), interactive=info["cond"] != "none") if new_run else keep,
            *[gr.update(visible=m == info["modality"]) for m in modalities]]


UNREADABLE = "the upload is not an image this page can read (PNG, JPEG, WebP, ...)"


def _path(payload: Any, uploads: Path) -> Path | None:
    """The server-side file of a raw upload. Generate takes its inputs unprocessed (preprocess=False): Gradio's own
    decoding fails on a file Pillow cannot read with an internal message naming server paths, and would fail every
    later event while the bad file sits in a hidden widget. The path comes from the client, so only a file under
    Gradio's upload folder ``uploads`` is read."""
    if isinstance(payload, dict):
        payload = payload.get("path")
    if not payload:
        return None
    p = Path(str(payload)).resolve()
    if not p.is_relative_to(uploads.resolve()) or not p.is_file():
        raise UserError("that upload is not on this server: upload the image again")
    return p


def _read_upload(payload: Any, uploads: Path) -> bytes | None:
    p = _path(payload, uploads)
    if p is None:
        return None
    if p.stat().st_size > MAX_UPLOAD_BYTES:
        raise UserError(f"the upload is over {MAX_UPLOAD_BYTES >> 20} MiB")
    return p.read_bytes()


def _open(payload: Any, mode: str, uploads: Path) -> np.ndarray | None:
    from PIL import Image

    p = _path(payload, uploads)
    if p is None:
        return None
    try:
        with Image.open(p) as im:  # Image.MAX_IMAGE_PIXELS is the server's --max-input-pixels
            return np.asarray(im.convert(mode))
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for a bad or oversized file
        raise UserError(UNREADABLE) from None


def _mask_from_editor(value: dict[str, Any], uploads: Path) -> tuple[np.ndarray, np.ndarray]:
    """(init uint8 [H, W, 3], mask uint8 [H, W]: 255 = keep, 0 = painted) from a raw ImageEditor value."""
    bg = _open(value.get("background"), "RGB", uploads)
    if bg is None:
        raise UserError("inpainting needs an image: upload one into the editor")
    keep = np.full(bg.shape[:2], 255, np.uint8)
    for layer in value.get("layers") or []:
        layer = _open(layer, "RGBA", uploads)
        if layer is not None and layer.shape[:2] == keep.shape:
            keep[layer[..., 3] > 0] = 0
    if keep.all():
        raise UserError("paint the region to regenerate with the brush first")
    return bg, keep


def build_page(jobs: Jobs, gr: Any, uploads: Path) -> Any:
    """The Blocks of the page over ``jobs``' runs; ``uploads``: Gradio's upload folder (GRADIO_TEMP_DIR)."""
    infos = {k: run_info(k, r) for k, r in jobs.runs.items()}
    names = list(infos)
    first = infos[names[0]]
    order = sorted({i["modality"] for i in infos.values()})
    mods = {i["modality"]: jobs.runs[k].modality for k, i in reversed(infos.items())}
    lim = jobs.limits
    with gr.Blocks(title="diffuse", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown("## diffuse\nSample from the runs this server was started with.")
        state = gr.State({"job": None, "token": None, "history": []})
        with gr.Row():
            with gr.Column(scale=1):
                run = gr.Dropdown(names, value=names[0], label="Run", visible=len(names) > 1, elem_id="run")
                # Built with the first run's visibility: the image editor fails to start (a Gradio 6 client error)
                # when page.load hides it while it is still initialising.
                text, sr = first["cond"] == "text", first["task"] == "superres"
                prompt = gr.Textbox(label="Prompt", elem_id="prompt", lines=1, visible=text)
                negative = gr.Textbox(label="Negative prompt", elem_id="negative", lines=1, visible=text)
                label = gr.Dropdown(["(round robin)"], value="(round robin)", label="Class", elem_id="label",
                                    visible=first["cond"] == "class")
                mode = gr.Radio(list(MODES), value="generate", label="Mode", elem_id="mode",
                                visible=first["edits_pictures"] and not sr)
                init = gr.Image(type="filepath", label="Init image", sources=["upload"], elem_id="init",
                                visible=sr)
                editor = gr.ImageEditor(type="numpy", label="Paint the region to regenerate", elem_id="editor",
                                        sources=["upload"], brush=gr.Brush(colors=["#ff0000"], default_size=6),
                                        layers=False, visible=False)
                strength = gr.Slider(0, 1, value=0.6, step=0.05, label="Strength", elem_id="strength", visible=False)
                with gr.Row():
                    seed = gr.Number(0, precision=0, minimum=0, maximum=2**31 - 1, label="Seed", elem_id="seed")
                    dice = gr.Button("Random seed", elem_id="dice", size="sm")
                with gr.Accordion("Advanced", open=False):
                    sampler = gr.Dropdown(["(run default)", *SAMPLERS], value="(run default)", label="Sampler")
                    steps = gr.Slider(1, lim.max_steps, value=first["defaults"]["steps"], step=1, label="Steps",
                                      elem_id="steps")
                    guidance = gr.Slider(0, 10, value=float(first["defaults"]["guidance"]), step=0.1, label="Guidance")
                    n = gr.Slider(1, lim.max_n, value=min(4, lim.max_n), step=1, label="Number of samples", elem_id="n")
                with gr.Row():
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                    stop = gr.Button("Cancel", elem_id="cancel")
            with gr.Column(scale=1):
                outputs = []
                for m in order:
                    with gr.Group(visible=m == first["modality"]) as group:
                        comps = mods[m].web_outputs(gr)
                    outputs.append((m, group, comps))
                status = gr.Markdown(elem_id="status")
                files = gr.Files(label="Downloads", elem_id="downloads", interactive=False)
                history = gr.Gallery(label="This session", columns=6, height="auto", elem_id="history")

        dependent = [prompt, negative, label, mode, init, editor, strength, steps, guidance, *[g for _, g, _ in outputs]]
        for event in (run.change, page.load):
            event(lambda r, m: _controls(infos[r], m, gr, order), [run, mode], dependent, queue=False)
        mode.change(lambda r, m: _controls(infos[r], m, gr, order, new_run=False), [run, mode], dependent, queue=False)
        dice.click(lambda: random.randrange(2**31), None, seed)

        flat = [c for _, _, comps in outputs for c in comps]

        def generate(r, md, p, neg, lab, init_path, ed, st, smp, k, g, sd, num, s, progress=gr.Progress()):
            info = infos[r]
            try:
                req = Request(run=r, n=int(num), prompt=p or None, negative_prompt=neg or None, seed=int(sd or 0),
                              label=None if lab in (None, "", "(round robin)") or info["cond"] != "class" else lab,
                              sampler=None if smp in (None, "(run default)") else smp, steps=int(k),
                              guidance=None if info["cond"] == "none" else float(g))
                sr = info["task"] == "superres"
                if sr or md == "img2img":
                    req.init = _read_upload(init_path, uploads)
                    if req.init is None:
                        raise UserError("upload an image first" if not sr else "upload the low-res image first")
                    req.strength = 1.0 if sr else float(st)
                elif md == "inpaint":
                    req.init, req.mask = _mask_from_editor(ed or {}, uploads)
                job = jobs.submit(req)
            except (UserError, Busy) as e:
                raise gr.Error(str(e), print_exception=False) from None
            s = {**s, "job": job.id, "token": job.token}
            while not job.finished_event.wait(0.1):
                if job.total:
                    progress((job.done, job.total), desc="sampling", unit="steps")
            if job.status != "done":
                raise gr.Error(job.error or job.status, print_exception=False)
            history_items = ([(str(p), c) for p, c in zip(job.preview, job.captions)] + s["history"])[:HISTORY]
            s = {**s, "history": history_items}
            vals = []
            for m, _, comps in outputs:
                vals += job.values if m == info["modality"] else [gr.update() for _ in comps]
            pr = job.params
            line = (f"**{len(job.captions)} samples** from `{r}`: {pr['sampler']}, {pr['steps']} steps, "
                    f"guidance {pr['guidance']:g}, seed {pr['seed']}" + (f", prompt \"{pr['prompt']}\"" if pr.get("prompt") else "")
                    + (f", negative \"{pr['negative_prompt']}\"" if pr.get("negative_prompt") else "")
                    + (f", class {info['classes'][pr['label']]}" if pr.get("label") is not None else ""))
            time.sleep(0)  # let the last progress event out before the result
            return [*vals, line, [str(f) for f in job.files], history_items, s]

        go.click(generate, [run, mode, prompt, negative, label, init, editor, strength, sampler, steps, guidance, seed, n,
                            state], [*flat, status, files, history, state], concurrency_limit=lim.max_queue + 2,
                 preprocess=False)

        def cancel(s):
            if not s.get("job"):
                return "nothing to cancel"
            try:
                job = jobs.cancel(s["job"], s["token"])
            except (KeyError, PermissionError) as e:
                return f"cannot cancel: {e}"
            return "cancelling" if not job.finished else f"the job had already {job.status}"

        stop.click(cancel, state, status, queue=False)
    page.queue(max_size=2 * lim.max_queue, default_concurrency_limit=lim.max_queue + 2)
    return page
