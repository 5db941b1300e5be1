"""The web page of `diffuse serve` in a real browser (Debian's chromium driven by Playwright): generate from a prompt,
inpaint with the brush, switch runs, bad uploads, and no request leaves the machine.

The README's screenshot comes from test_readme_screenshot, which runs only when DIFFUSE_README_RUN names a trained
text run:

    DIFFUSE_README_RUN=runs/fmnist-text pytest tests/test_serve_page.py -k readme    # -> docs/serve_page.png
"""

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import Server

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (apt install chromium)")


@pytest.fixture(scope="module")
def server(tiny_runs, tmp_path_factory):
    with Server([tiny_runs["text"], tiny_runs["class"]], tmp_path_factory.mktemp("page")) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(server, browser):
    yield from _page(server, browser)


def _page(server, browser, height=1000):
    """A fresh page; fails the test on a JavaScript error or a request to anything but the server."""
    page = browser.new_page(viewport={"width": 1200, "height": height})
    outside, errors = [], []
    page.on("request", lambda r: None if r.url.startswith((server.url, "data:", "blob:")) else outside.append(r.url))
    page.on("pageerror", lambda e: errors.append(str(e)))
    with page.expect_response(lambda r: "/run/predict" in r.url, timeout=60_000):  # the load event sets the controls
        page.goto(server.url + "/")
    page.wait_for_selector("#generate")
    yield page
    page.close()
    assert not outside, f"the page fetched from outside the server: {outside}"
    assert not errors, errors


def _results(page, n):
    page.wait_for_function(f"document.querySelectorAll('#results img').length == {n}", timeout=60_000)
    out = []
    for i in range(n):
        r = page.request.get(page.locator("#results img").nth(i).get_attribute("src"))
        assert r.ok
        out.append(Image.open(io.BytesIO(r.body())))
    return out


def _toasts(page):
    page.wait_for_selector(".toast-message-text", timeout=30_000)
    return page.locator(".toast-message-text").all_inner_texts()


def test_generate_from_a_prompt(page, server):
    assert page.locator("#label").count() == 0  # a text run: no class picker
    page.fill("#prompt textarea", "a seven")
    page.click("#generate")
    imgs = _results(page, 4)
    assert all(im.size == (8, 8) and im.mode == "L" for im in imgs)
    assert '"prompt": "a seven"' in imgs[0].text["diffuse"]  # the PNG carries what made it
    assert 'prompt "a seven"' in page.inner_text("#status")
    assert page.locator("#history img").count() == 4
    assert page.locator("#downloads").inner_text().count("sample_") == 4


def test_inpaint_with_the_brush_keeps_the_unpainted_half(page, tmp_path):
    from diffuse.serve.jobs import fit

    a = np.zeros((8, 8), np.uint8)
    a[2:6, 2:6] = 200
    big = np.kron(a, np.ones((8, 8), np.uint8))  # 64x64: the server resizes it to the run's 8x8
    Image.fromarray(big).save(tmp_path / "init.png")
    page.locator("#mode label", has_text="inpaint").click()
    page.wait_for_selector("#editor canvas")  # the editor has started (an upload before that breaks it)
    page.locator("#editor input[type=file]").set_input_files(tmp_path / "init.png")
    page.wait_for_timeout(1500)  # the canvas draws the upload
    box = page.locator("#editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for dx in (30, 60, 90, 120):  # paint the right half of the picture (it is drawn about 290 px wide)
        page.mouse.move(cx + dx, cy - 130)
        page.mouse.down()
        page.mouse.move(cx + dx, cy + 130, steps=12)
        page.mouse.up()
    page.click("#generate")
    out = np.stack([np.asarray(im) for im in _results(page, 4)]).astype(int)
    want = fit((tmp_path / "init.png").read_bytes(), 1, [8, 8], "init", 10**6)[..., 0].astype(int)
    assert np.abs(out[:, :, :4] - want[None, :, :4]).max() <= 2  # kept
    assert np.abs(out[:, :, 5:] - want[None, :, 5:]).max() > 30  # regenerated
    assert len({o[:, 5:].tobytes() for o in out}) == 4  # four different fills


def test_a_bad_upload_is_one_clear_error_and_the_page_goes_on(page, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"this is not a png")
    page.locator("#mode label", has_text="img2img").click()
    page.wait_for_selector("#init input[type=file]", state="attached")
    page.locator("#init input[type=file]").set_input_files(tmp_path / "bad.png")
    page.wait_for_timeout(1000)
    page.click("#generate")
    msgs = _toasts(page)
    assert msgs == ["cannot read init image: not an image format Pillow reads (PNG, JPEG, WebP, ...)"], msgs
    page.locator(".toast-close").first.click()
    # Switch to the class run: the prompt goes, the class picker comes, and the bad file left behind does not matter.
    page.locator("#run input").click()
    page.get_by_role("option", name="class").click()
    page.wait_for_selector("#label", timeout=10_000)
    assert page.locator("#prompt").count() == 0
    page.locator("#label input").click()
    page.get_by_role("option", name="7", exact=True).click()
    page.locator("#mode label", has_text="generate").click()
    page.click("#generate")
    imgs = _results(page, 4)
    assert all('"label": 7' in im.text["diffuse"] for im in imgs), imgs[0].text
    assert "class 7" in page.inner_text("#status")


def test_an_audio_run_plays_its_wavs_and_shows_spectrograms(audio_run, browser, tmp_path):
    import soundfile as sf

    with Server([audio_run], tmp_path) as server:
        pages = _page(server, browser)
        page = next(pages)
        assert page.locator("#mode").count() == 0 and page.locator("#results").count() == 0  # no picture widgets
        page.locator("#label input").click()
        page.get_by_role("option", name="brass", exact=True).click()
        page.click("#generate")
        page.wait_for_function("document.querySelectorAll('#spectrograms img').length == 4", timeout=60_000)
        page.wait_for_selector("#clip audio", state="attached")  # the player
        page.wait_for_selector("#clip a[href*='.wav']", state="attached")
        wav = page.request.get(page.locator("#clip a[href*='.wav']").first.get_attribute("href"))  # its download
        data, sr = sf.read(io.BytesIO(wav.body()))
        assert sr == 16000 and data.shape == (16000,) and np.isfinite(data).all() and np.abs(data).max() > 0
        assert page.locator("#downloads").inner_text().count(".wav") == 4
        assert "class brass" in page.inner_text("#status")
        next(pages, None)


@pytest.mark.skipif(not os.environ.get("DIFFUSE_README_RUN"), reason="set DIFFUSE_README_RUN=RUN to remake the README's screenshot")
def test_readme_screenshot(browser, tmp_path):
    """docs/serve_page.png: 8 samples of "a sneaker" with the negative prompt "a sandal" from a real text run."""
    import diffuse

    run_dir = os.environ["DIFFUSE_README_RUN"]
    shape = diffuse.load(run_dir).config.image_shape
    with Server([run_dir], tmp_path) as server:
        pages = _page(server, browser, height=820)
        page = next(pages)
        page.fill("#prompt textarea", "a sneaker")
        page.fill("#negative textarea", "a sandal")
        page.get_by_text("Advanced").click()
        page.locator("#n input[type=number]").fill("8")
        page.locator("#n input[type=number]").press("Enter")
        page.click("#generate")
        imgs = _results(page, 8)
        assert all(im.size == (shape[2], shape[1]) for im in imgs)
        assert '"negative_prompt": "a sandal"' in imgs[0].text["diffuse"]
        page.get_by_text("Advanced").click()  # fold it again
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(__file__).resolve().parent.parent / "docs" / "serve_page.png"))
        next(pages, None)  # the page's own checks: no outside requests, no JavaScript errors


def test_an_upload_path_from_the_client_must_be_in_the_upload_folder(tmp_path):
    """Generate reads raw upload payloads, whose path a client could forge: only Gradio's upload folder is read."""
    from diffuse.errors import UserError
    from diffuse.serve.page import _mask_from_editor, _read_upload

    uploads = tmp_path / "gradio"
    (uploads / "abc").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(uploads / "abc" / "ok.png")
    assert _read_upload({"path": str(uploads / "abc" / "ok.png")}, uploads)[:4] == b"\x89PNG"
    for forged in ("/etc/passwd", str(uploads / ".." / ".." / "etc" / "passwd"), str(tmp_path / "elsewhere.png")):
        with pytest.raises(UserError, match="not on this server"):
            _read_upload({"path": forged}, uploads)
        with pytest.raises(UserError, match="not on this server"):
            _mask_from_editor({"background": {"path": forged}, "layers": []}, uploads)
