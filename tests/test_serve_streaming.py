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
        async for updates in job.pieces(0.005):
            for u in updates:
                texts[u["index"]] = texts.get(u["index"], "") + u["text"]
                finish[u["index"]] = u["finish_reason"]
        b.close()
        return texts, finish, job.usage()

    texts, finish, usage = asyncio.run(main())
    assert sorted(texts) == [0, 1, 2, 3] and all(len(t) == 30 for t in texts.values())
    assert set(finish.values()) == {"length"}
    assert usage == {"prompt_tokens": 3, "completion_tokens": 120, "total_tokens": 123}
