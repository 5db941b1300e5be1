"""The web page of `diffuse serve` in a real browser (Debian's chromium driven by Playwright): generate from a prompt,
inpaint with the brush, switch runs, bad uploads, and no request leaves the machine.

Set DIFFUSE_PAGE_SCREENSHOT=path.png to keep a screenshot of the page after a generation."""

import io
import os
import shutil

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
    """A fresh page; fails the test on a JavaScript error or a request to anything but the server."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
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
    if os.environ.get("DIFFUSE_PAGE_SCREENSHOT"):
        page.screenshot(path=os.environ["DIFFUSE_PAGE_SCREENSHOT"], full_page=True)


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
