"""A request's streams gathered as they come, and cancelled together."""

from __future__ import annotations

import asyncio
from pathlib import Path

from charrnn.serve.batcher import Batcher
from charrnn.serve.protocol import Limits, parse_completion
from charrnn.serve.streaming import Job
from charrnn.store.checkpoint import load_arrays


def test_a_job_gathers_every_choice(trained_run: Path) -> None:
    loaded = load_arrays(trained_run)

    async def main() -> tuple[dict[int, str], dict[int, str | None], dict[str, int]]:
        req = parse_completion({"prompt": ["a", "bc"], "n": 2, "max_tokens": 30}, Limits())
        job = Job(req, Limits())
        b = Batcher(loaded.model, loaded.vocab)
        for s in job.streams:
            b.submit(s)
        texts: dict[int, str] = {}
        finish: dict[int, str | None] = {}
        async for updates in job.pieces(lambda: 0.005):
            for u in updates:
                texts[u["index"]] = texts.get(u["index"], "") + u["text"]
                finish[u["index"]] = u["finish_reason"]
        b.close()
        return texts, finish, job.usage()

    texts, finish, usage = asyncio.run(main())
    assert sorted(texts) == [0, 1, 2, 3] and all(len(t) == 30 for t in texts.values())
    assert set(finish.values()) == {"length"}
    assert usage == {"prompt_tokens": 3, "completion_tokens": 120, "total_tokens": 123}


def test_events_are_paced_by_the_server_s_load(trained_run: Path) -> None:
    """A job's updates after the first come at most once per pace() seconds, read again after
    each update (the server's pace grows with its streams: Server.pace)."""
    loaded = load_arrays(trained_run)
    paces: list[float] = []

    def pace() -> float:
        paces.append(0.05 if len(paces) < 2 else 0.0)
        return paces[-1]

    async def main() -> tuple[list[float], str]:
        req = parse_completion({"prompt": "a", "max_tokens": 3000}, Limits())
        job = Job(req, Limits())
        b = Batcher(loaded.model, loaded.vocab)
        for s in job.streams:
            b.submit(s)
        loop = asyncio.get_running_loop()
        times, text = [], ""
        async for updates in job.pieces(pace):
            times.append(loop.time())
            text += "".join(u["text"] for u in updates)
        b.close()
        return times, text

    times, text = asyncio.run(main())
    assert len(text) == 3000
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.05
    assert len(paces) == len(times)  # read once after each update


def test_the_server_s_pace_grows_with_its_streams(trained_run: Path) -> None:
    from charrnn.serve.app import ServedModel, Server, Settings

    server = Server([ServedModel("m", load_arrays(trained_run))], Settings())
    try:
        assert server.pace() == Settings().coalesce  # idle: the shortest interval
        server.batchers["m"].active = 16
        assert server.pace() == Settings().coalesce  # 16 / 800 = 0.02
        server.batchers["m"].active = 256
        assert server.pace() == 256 / Settings().events_per_second  # 0.32 s
    finally:
        server.batchers["m"].active = 0
