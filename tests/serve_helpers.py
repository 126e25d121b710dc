"""A real ``charrnn serve`` in a subprocess on a free loopback port, for the serve tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from .conftest import CHARRNN

KEY = "test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """A running server: its URL, process and the key it asks."""

    def __init__(self, proc: subprocess.Popen[str], url: str, key: str | None) -> None:
        self.proc, self.url, self.key = proc, url, key

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}

    def healthy(self) -> bool:
        r = httpx.get(self.url + "/health", timeout=5)
        return r.status_code == 200 and r.json()["status"] == "ok"

    def gauge(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", headers=self.headers(), timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextmanager
def serve(run: Path, *args: str, key: str | None = KEY) -> Iterator[Served]:
    """``charrnn serve RUN ARGS`` until the block ends (then SIGTERM)."""
    port = free_port()
    cmd = [*CHARRNN, "serve", str(run), "--port", str(port), *args]
    if key:
        cmd += ["--api-key", key]
    env = {**os.environ}
    env.pop("CHARRNN_API_KEY", None)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    served = Served(proc, f"http://127.0.0.1:{port}", key)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if served.healthy():
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {proc.communicate()[1]}")
            time.sleep(0.05)
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
