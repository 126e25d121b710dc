"""A completion request's streams as the event loop sees them: a :class:`Job` gathers the
output of its streams (prompts x n) as it comes, :class:`EventStream` sends it as server-sent
events, and a client that hangs up cancels its streams at once (:func:`watch`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from starlette.types import Receive, Scope, Send

from .batcher import Stream, StreamSpec
from .protocol import CompletionRequest, Limits, completion_object, logprobs_object, usage_object


class Job:
    """The streams of one completion request (prompts x n), sharing one wake-up event."""

    def __init__(
        self,
        req: CompletionRequest,
        limits: Limits,
        on_first: Callable[[float], None] | None = None,
    ) -> None:
        self.wake = asyncio.Event()
        self.on_first = on_first
        self.n = req.n
        loop = asyncio.get_running_loop()
        self.streams = [
            Stream(
                StreamSpec(
                    prompt,
                    replace(req.config, seed=seed),
                    req.stops,
                    req.logprobs,
                    limits.time_limit,
                ),
                loop,
                self.wake,
            )
            for prompt in req.prompts
            for seed in req.seeds()
        ]
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        for s in self.streams:
            s.cancel()
        self.wake.set()

    async def pieces(self, pace: Callable[[], float]) -> AsyncIterator[list[dict[str, Any]]]:
        """Lists of choice updates (text, logprobs, finish reason) as they come: the first
        as soon as there is one, then at most one per ``pace()`` seconds, read after each
        list (the server's :meth:`~.app.Server.pace`)."""
        offsets = [0] * len(self.streams)
        done = [False] * len(self.streams)
        while not all(done) and not self.cancelled:
            await self.wake.wait()
            self.wake.clear()
            out = []
            for i, s in enumerate(self.streams):
                if done[i]:
                    continue
                text, infos, finish = s.take()
                if text and not offsets[i] and self.on_first and s.first is not None:
                    self.on_first(s.first - s.created)
                if text or infos or finish:
                    lp = logprobs_object(infos, offsets[i]) if s.spec.logprobs is not None else None
                    out.append({"text": text, "index": i, "logprobs": lp, "finish_reason": finish})
                    offsets[i] += len(text)
                done[i] = finish is not None
            if out:
                yield out
            wait = pace()
            if wait and not all(done):
                await asyncio.sleep(wait)

    def usage(self) -> dict[str, int]:
        """Tokens read (each prompt once) and generated."""
        prompt = sum(s.prompt_tokens for s in self.streams[:: self.n])
        return usage_object(prompt, sum(s.tokens for s in self.streams))


async def watch(receive: Receive, job: Job) -> None:
    """Cancel ``job`` when its client hangs up."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            job.cancel()
            return


class EventStream:
    """A streamed completion: ``data: {chunk}`` events, then ``data: [DONE]``; a client that
    hangs up cancels its streams at once."""

    def __init__(
        self,
        job: Job,
        cid: str,
        created: int,
        model: str,
        pace: Callable[[], float],
        usage: bool,
    ) -> None:
        self.job, self.cid, self.created, self.model = job, cid, created, model
        self.pace, self.include_usage = pace, usage

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        watcher = asyncio.create_task(watch(receive, self.job))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async for updates in self.job.pieces(self.pace):
                chunk = completion_object(self.cid, self.created, self.model, updates, None)
                await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
            if self.include_usage and not self.job.cancelled:
                chunk = completion_object(self.cid, self.created, self.model, [], self.job.usage())
                await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        except OSError:
            pass  # the client is gone
        finally:
            watcher.cancel()
            self.job.cancel()


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"
