"""The README's screenshot of the web page: serve a run, type a prompt in chromium, generate, save the page.

    python docs/screenshot_page.py runs/fmnist-text --prompt "a sneaker" --negative "a sandal" --out docs/serve_page.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from playwright.sync_api import sync_playwright  # noqa: E402
from serve_helpers import Server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--prompt", default="a sneaker")
    ap.add_argument("--negative", default="")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve_page.png")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Server(args.runs, Path(tmp)) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 820})
        with page.expect_response(lambda r: "/run/predict" in r.url, timeout=60_000):
            page.goto(server.url + "/")
        page.fill("#prompt textarea", args.prompt)
        page.fill("#negative textarea", args.negative)
        page.get_by_text("Advanced").click()
        page.locator("#n input[type=number]").fill(str(args.n))
        page.locator("#n input[type=number]").press("Enter")
        page.click("#generate")
        page.wait_for_function(f"document.querySelectorAll('#results img').length == {args.n}", timeout=120_000)
        page.get_by_text("Advanced").click()  # fold it again
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
