"""A real `diffuse serve` process on a free local port, for the HTTP and browser tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``with Server([run_dir, ...], tmp) as s:`` starts ``diffuse serve`` and waits until /api/runs answers."""

    def __init__(self, runs, tmp: Path, *flags: str, startup_s: float = 180):
        self.port, self.tmp, self.startup_s = free_port(), Path(tmp), startup_s
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "diffuse", "serve", *map(str, runs), "--port", str(self.port), *flags]

    def __enter__(self) -> "Server":
        import httpx

        self.log_path = self.tmp / "server.log"
        env = {**os.environ, "GRADIO_TEMP_DIR": str(self.tmp / "gradio"), "TMPDIR": str(self.tmp)}
        self.proc = subprocess.Popen(self.args, stdout=self.log_path.open("w"), stderr=subprocess.STDOUT, env=env)
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.startup_s:
            if self.proc.poll() is not None:
                raise AssertionError(f"diffuse serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/api/runs", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.proc.kill()
        raise AssertionError(f"diffuse serve did not answer in {self.startup_s} s:\n{self.log()}")

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C does: a clean stop
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("diffuse serve did not stop on SIGINT") from None

    def client(self, **kw):
        import httpx

        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 60), **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")
