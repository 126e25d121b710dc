"""`charrnn serve` under load: 1, 16, 64 and 256 concurrent streaming clients against one alone.

    python bench/serve.py RUN                     # a trained run (e.g. a 2x256 GRU); ~2 min
    python bench/serve.py RUN --clients 1,8 --chars 200 --quick   # smoke test

Starts `charrnn serve RUN` on a free loopback port (a child process), then for each number of
clients opens that many streaming completions at once (httpx, asyncio) and measures, per level:
the aggregate characters per second (all clients' characters over the level's wall time) and
its ratio to one client alone, the time to the first character (p50, p99), each client's rate
against the median (fairness: the lowest and highest ratio), and the server's resident memory
(RSS, from /proc) with the streams open against its idle RSS. Prints a markdown table; nothing
else should run on the machine meanwhile (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Client:
    """One streaming client's figures."""

    first: float  # seconds to the first character
    chars: int
    seconds: float  # from its request to its last character

    @property
    def rate(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Level:
    """All clients of one concurrency level."""

    clients: list[Client]
    wall: float
    rss: int  # bytes, server, sampled while the streams were open

    @property
    def aggregate(self) -> float:
        return sum(c.chars for c in self.clients) / self.wall

    def first(self, q: float) -> float:
        firsts = sorted(c.first for c in self.clients)
        return firsts[min(len(firsts) - 1, int(q * len(firsts)))]

    def fairness(self) -> tuple[float, float]:
        rates = [c.rate for c in self.clients]
        median = statistics.median(rates)
        return (min(rates) / median, max(rates) / median) if median else (0.0, 0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> int:
    """Resident memory of a process, bytes (0 where /proc is not there)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def one_client(http: httpx.AsyncClient, url: str, chars: int, seed: int) -> Client:
    body = {"prompt": "The ", "max_tokens": chars, "seed": seed, "stream": True}
    t0 = time.perf_counter()
    first, got = 0.0, 0
    async with http.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            text = json.loads(line[6:])["choices"][0]["text"]
            if text and not got:
                first = time.perf_counter() - t0
            got += len(text)
    return Client(first, got, time.perf_counter() - t0)


async def level(url: str, pid: int, n: int, chars: int) -> Level:
    limits = httpx.Limits(max_connections=n + 4, max_keepalive_connections=n + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one_client(http, url, chars, seed)) for seed in range(n)]
        await asyncio.sleep(min(1.0, 0.2 + n / 100))  # the streams are open: sample the RSS
        memory = rss(pid)
        clients = await asyncio.gather(*tasks)
        return Level(list(clients), time.perf_counter() - t0, memory)


def run_loop(coro: Coroutine[Any, Any, Level]) -> Level:
    """Run the load generator's clients on uvloop where it is installed (the serve extra has
    it), else asyncio's own loop: the clients share the server's cores, and the cheaper their
    loop, the more the figures are the server's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def start_server(run: str, port: int, threads: int | None) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "charrnn", "serve", run, "--port", str(port)]
    cmd += ["--max-streams", "1024"] + (["--threads", str(threads)] if threads else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench/serve.py: the server ended: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("bench/serve.py: the server did not become healthy in 120 s")


def table(levels: dict[int, Level], idle: int) -> list[str]:
    one = levels[min(levels)].aggregate
    out = [
        "| clients | chars/s (all) | x one client | first char p50 ms | p99 ms | fairness "
        "(min-max of median) | server RSS MB (x idle) |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, lv in levels.items():
        low, high = lv.fairness()
        ratio = lv.rss / idle if idle else 0.0
        out.append(
            f"| {n} | {lv.aggregate:,.0f} | {lv.aggregate / one:.1f} | {lv.first(0.5) * 1e3:.0f} "
            f"| {lv.first(0.99) * 1e3:.0f} | {low:.2f}-{high:.2f} | {lv.rss / 2**20:.0f} "
            f"({ratio:.2f}) |"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/serve.py", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("run", help="the run (or checkpoint) folder to serve")
    ap.add_argument("--clients", default="1,16,64,256", help="concurrency levels [1,16,64,256]")
    ap.add_argument("--chars", type=int, default=2000, help="characters per client [2000]")
    ap.add_argument("--threads", type=int, default=None, help="the server's --threads")
    ap.add_argument("--quick", action="store_true", help="fewer characters (smoke test)")
    args = ap.parse_args(argv)
    counts = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    if not counts or counts[0] < 1:
        ap.error("--clients: positive numbers, e.g. 1,16,64")
    chars = min(args.chars, 100) if args.quick else args.chars
    port = free_port()
    proc = start_server(args.run, port, args.threads)
    try:
        idle = rss(proc.pid)
        levels = {
            n: run_loop(level(f"http://127.0.0.1:{port}", proc.pid, n, chars)) for n in counts
        }
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"bench/serve.py {time.strftime('%Y-%m-%d %H:%M')}: {args.run}, {chars} chars per client")
    print(f"machine: {os.cpu_count()} cores; server idle RSS {idle / 2**20:.0f} MB")
    print("\n".join(table(levels, idle)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
