"""`diffuse serve` as users meet it: a real server process, its HTTP API under bad and concurrent requests.
(The browser drives the page in test_serve_page.py; the job queue alone is in test_api.py.)"""

import base64
import io
import json
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image
from serve_helpers import Server

import diffuse
from diffuse.api import sample_kwargs

httpx = pytest.importorskip("httpx")
pytest.importorskip("gradio")


@pytest.fixture(scope="module")
def server(tiny_runs, tmp_path_factory):
    with Server([tiny_runs["class"], tiny_runs["text"]], tmp_path_factory.mktemp("serve"),
                "--max-queue", "4", "--max-n", "4", "--max-steps", "5000", "--timeout", "60") as s:
        yield s


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(side: int = 20000) -> bytes:
    """A valid grayscale PNG of side x side zeros (400 Mpixel for 20000), a few hundred KB on the wire."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(z.compress(row))
    parts.append(z.flush())
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def _wait(client, job_id, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        j = client.get(f"/api/jobs/{job_id}").json()
        if j["status"] in ("done", "failed", "cancelled"):
            return j
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_a_job_over_http_matches_the_python_api(server, tiny_runs, tmp_path):
    with server.client() as c:
        runs = c.get("/api/runs").json()
        assert [r["name"] for r in runs["runs"]] == ["class", "text"] and runs["limits"]["max_n"] == 4
        r = c.post("/api/jobs", json={"run": "class", "n": 3, "steps": 6, "label": "4", "seed": 11})
        assert r.status_code == 202, r.text
        j = _wait(c, r.json()["id"])
        assert j["status"] == "done" and j["params"]["label"] == 4 and j["step"] == j["steps"] == 6
        assert "token" not in j and not any("/tmp" in f for f in j["files"])  # no secrets, no server paths
        pngs = [f for f in j["files"] if f.endswith(".png")]
        got = [Image.open(io.BytesIO(c.get(f).content)) for f in pngs]
    want = diffuse.load(tiny_runs["class"]).sample(n=3, steps=6, label="4", seed=11).items()
    assert len(got) == 3 and all(g.size == (8, 8) and g.mode == "L" for g in got)
    for g, w in zip(got, want):
        assert np.array_equal(np.asarray(g), np.asarray(w))
    with server.client() as c:
        raw = c.get(pngs[1]).content
    (tmp_path / "one.png").write_bytes(raw)  # the file carries its parameters: they reproduce it in-process
    p = diffuse.read_params(tmp_path / "one.png")
    assert p["first"] == 1 and p["label"] == 4
    again = diffuse.load(tiny_runs["class"]).sample(**sample_kwargs(p)).items()[0]
    assert np.array_equal(np.asarray(again), np.asarray(got[1]))


BAD = [  # (body or raw bytes, status, words in the one-line error)
    ({"run": "nope"}, 400, "unknown run"),
    ({"run": "../../etc/passwd"}, 400, "unknown run"),
    ({"run": "class", "path": "/etc/passwd"}, 400, "path"),
    ({"run": "class", "n": 10**6}, 400, "n must"),
    ({"run": "class", "steps": -1}, 400, "steps must"),
    ({"run": "class", "seed": "x"}, 400, "seed"),
    ({"run": "class", "guidance": 1e308 * 10}, 400, "guidance"),
    ({"run": "class", "label": "giraffe"}, 400, "unknown class"),
    ({"run": "class", "label": 12}, 400, "out of range"),
    ({"run": "text", "label": 3}, 400, "class-conditional"),
    ({"run": "class", "sampler": "nope"}, 400, "unknown sampler"),
    ({"run": "class", "init": "/etc/passwd"}, 400, "base64"),
    ({"run": "class", "init": base64.b64encode(b"GIF89a not really").decode()}, 400, "init"),
    ({"run": "class", "init": base64.b64encode(_bomb_png()).decode()}, 400, "pixels"),
    ({"run": "class", "mask": base64.b64encode(_png(np.zeros((8, 8), np.uint8))).decode()}, 400, "needs an init"),
    (b"{not json", 400, "bad request"),
    (b"[]", 400, "bad request"),
]


def test_bad_requests_are_one_line_json_errors_and_the_server_stays_up(server):
    with server.client() as c:
        for body, status, needle in BAD:
            data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
            r = c.post("/api/jobs", content=data, headers={"content-type": "application/json"})
            assert r.status_code == status, (body if len(str(body)) < 200 else "bomb", r.text)
            err = r.json()["error"]
            assert needle in err and "\n" not in err and "Traceback" not in err, err
        r = c.post("/api/jobs", content=b'{"run": "class"}')  # curl -d without a JSON content type
        assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]
        assert c.post("/api/jobs", content=b"x" * (33 << 20)).status_code == 413
        assert c.post("/api/jobs", content=iter([b'{"run": "class"}'])).status_code == 411  # chunked: no length
        assert c.get("/api/jobs/nope").status_code == 404
        assert c.get("/api/jobs/nope/files/x.png").status_code == 404
        r = c.post("/api/jobs", json={"run": "class", "steps": 2})
        jid = r.json()["id"]
        _wait(c, jid)
        for name in ("../../../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "samples.npz/../../x"):
            r = c.get(f"/api/jobs/{jid}/files/{name}")
            assert r.status_code == 404 and b"root:" not in r.content
        for url in ("/gradio_api/file=/etc/passwd", "/file=/etc/passwd", "/gradio_api/file=../../../etc/passwd"):
            r = c.get(url)
            assert r.status_code >= 400 and b"root:" not in r.content, url
        assert c.get("/api/runs").status_code == 200
        schema = c.get("/api/openapi.json").json()  # the API's schema, served locally
        assert "/api/jobs" in schema["paths"] and c.get("/api/docs").status_code == 404  # Swagger would use a CDN
    assert server.alive() and "Traceback" not in server.log()


def test_concurrent_load_is_bounded_cancellable_and_memory_flat(server):
    """40 clients at once against --max-queue 4: at most 4 jobs accepted, the rest told busy (503, Retry-After), the
    API keeps answering, only the owner's token cancels, and the server's memory stays bounded."""
    rss0 = server.rss_mib()
    body = {"run": "class", "n": 4, "steps": 5000}

    def post(i):
        with server.client() as c:
            return c.post("/api/jobs", json={**body, "seed": i})

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(post, range(40)))
    codes = sorted(a.status_code for a in answers)
    accepted = [a.json() for a in answers if a.status_code == 202]
    assert set(codes) <= {202, 503} and 1 <= len(accepted) <= 4, codes
    busy = [a for a in answers if a.status_code == 503]
    assert busy and all(a.headers.get("retry-after") and a.json()["error"].startswith("busy") for a in busy)
    with server.client() as c:
        t0 = time.monotonic()
        assert c.get("/api/runs").status_code == 200 and time.monotonic() - t0 < 5  # answers while sampling
        first = accepted[0]
        wrong = c.delete(f"/api/jobs/{first['id']}", headers={"x-job-token": accepted[-1]["token"] + "x"})
        assert wrong.status_code == 403 and c.get(f"/api/jobs/{first['id']}").json()["status"] in ("queued", "running")
        for a in accepted:
            assert c.delete(f"/api/jobs/{a['id']}", headers={"x-job-token": a["token"]}).status_code == 200
        ends = [_wait(c, a["id"]) for a in accepted]
        assert all(e["status"] == "cancelled" and e["step"] < 5000 for e in ends), ends
        assert c.post("/api/jobs", json={"run": "class", "steps": 2}).status_code == 202  # room again
    assert server.rss_mib() - rss0 < 400, (rss0, server.rss_mib())
    assert server.alive() and "Traceback" not in server.log()
