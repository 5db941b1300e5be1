"""`diffuse serve` under load: what HTTP costs over the Python API, a burst of clients against the bounded queue, and
memory and disk over many jobs.

    python benchmarks/serve_load.py runs/fmnist-text --jobs 200 --clients 40

1. Latency: the same request (n=4, the run's default sampler and steps) through `Run.sample` in this process and
   through POST /api/jobs + polling, medians of --repeats, run one after the other (never at once).
2. Burst: --clients threads each submit one job (n=1) at the same moment against --max-queue 8, retrying on 503 after
   its Retry-After; counts of 202 and 503 answers, time until every job is done, and the longest wait of
   GET /api/runs while the queue is full.
3. Soak: --jobs jobs one after another (n=1, 4 steps); the server's RSS (/proc/PID/status) and the number of result
   files it keeps (--keep-jobs 16), sampled along the way: both must level off.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402
from serve_helpers import Server  # noqa: E402

import diffuse  # noqa: E402


def wait(c: httpx.Client, job_id: str) -> dict:
    while True:
        j = c.get(f"/api/jobs/{job_id}").json()
        if j["status"] in ("done", "failed", "cancelled"):
            return j
        time.sleep(0.02)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=200)
    args = ap.parse_args()

    run = diffuse.load(args.run)
    req = {"n": 4, "seed": 1, **({"prompt": "a sneaker"} if run.cond == "text" else {})}
    with tempfile.TemporaryDirectory() as tmp, \
            Server([args.run], Path(tmp), "--max-queue", "8", "--keep-jobs", "16", "--max-n", "16") as server, \
            server.client() as c:
        name = c.get("/api/runs").json()["runs"][0]["name"]
        api_s, http_s, job_s = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            run.sample(**req)
            api_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            j = wait(c, c.post("/api/jobs", json={"run": name, **req}).json()["id"])
            assert j["status"] == "done", j
            http_s.append(time.perf_counter() - t0)
            job_s.append(j["seconds"])
        api_m, http_m = statistics.median(api_s), statistics.median(http_s)
        print(f"latency (n=4, {j['params']['sampler']}, {j['params']['steps']} steps): Python API {api_m:.3f} s, "
              f"HTTP {http_m:.3f} s (the job itself {statistics.median(job_s):.3f} s in the server), HTTP / API "
              f"{http_m / api_m:.2f}x (medians of {args.repeats})", flush=True)

        codes: dict[int, int] = {}
        lock, slowest = threading.Lock(), [0.0]

        def client(i: int) -> None:
            with server.client() as cc:
                while True:
                    r = cc.post("/api/jobs", json={"run": name, "n": 1, "seed": i, **({"prompt": "a bag"} if run.cond == "text" else {})})
                    with lock:
                        codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 202:
                        assert wait(cc, r.json()["id"])["status"] == "done"
                        return
                    assert r.status_code == 503 and r.headers["retry-after"], r.text
                    time.sleep(0.2)  # a polite client; Retry-After says 5 s

        def probe(stop: threading.Event) -> None:
            with server.client() as cc:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    assert cc.get("/api/runs").status_code == 200
                    slowest[0] = max(slowest[0], time.perf_counter() - t0)
                    time.sleep(0.05)

        stop = threading.Event()
        pt = threading.Thread(target=probe, args=(stop,))
        pt.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        burst_s = time.perf_counter() - t0
        stop.set()
        pt.join()
        print(f"burst: {args.clients} clients, --max-queue 8: {codes.get(202, 0)} accepted, {codes.get(503, 0)} busy "
              f"answers (retried), all done in {burst_s:.1f} s; slowest GET /api/runs meanwhile {slowest[0] * 1000:.0f} ms",
              flush=True)

        files_root = Path(tmp)
        rows = []
        for k in range(1, args.jobs + 1):
            j = wait(c, c.post("/api/jobs", json={"run": name, "n": 1, "steps": 4, "seed": k}).json()["id"])
            assert j["status"] == "done"
            if k in (1, 20, args.jobs // 2, args.jobs):
                kept = sum(1 for p in files_root.rglob("*") if p.is_file() and p.suffix in (".png", ".wav", ".npz"))
                rows.append((k, server.rss_mib(), kept))
        print("soak: jobs done | server RSS (MiB) | result files kept")
        for k, rss, kept in rows:
            print(f"  {k:5d} | {rss:7.0f} | {kept}")
        assert server.alive()


if __name__ == "__main__":
    main()
