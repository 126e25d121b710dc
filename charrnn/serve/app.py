"""The HTTP face of ``charrnn serve``: a Starlette app with the OpenAI completions API.

Routes: ``POST /v1/completions`` (plain or streamed as server-sent events), ``POST /v1/score``,
``GET /v1/models``, ``GET /health``, ``GET /metrics``, ``GET /`` (the playground). Every
refusal is an OpenAI-style error object (:mod:`.protocol`); the key (``Authorization: Bearer``)
is compared in constant time, and asked of every route but ``/health`` and the page itself.
Generation runs in each model's :class:`~.batcher.Batcher` thread; the handlers only wait.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store.checkpoint import LoadedArrays
from .batcher import Batcher, Busy, Closed
from .metrics import CONTENT_TYPE_LATEST, ServerMetrics
from .protocol import (
    MAX_QUEUE,
    MAX_STREAMS,
    ApiError,
    CompletionRequest,
    Limits,
    completion_object,
    parse_completion,
    parse_score,
)
from .streaming import EventStream, Job, watch

OPEN_PATHS = {"/health", "/"}  # no key asked: the health check and the page (no model data)


@dataclass
class ServedModel:
    """A loaded model and its id (its run folder's name)."""

    id: str
    loaded: LoadedArrays
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class Settings:
    """How the server behaves: limits, key, streams, the scoring device, the log."""

    limits: Limits = field(default_factory=Limits)
    api_key: str | None = None
    max_streams: int = MAX_STREAMS
    max_queue: int = MAX_QUEUE
    device: str = "auto"  # where /v1/score's torch model runs (generation: the NumPy engine)
    coalesce: float = 0.02  # seconds a stream's output gathers before it is sent, at least
    events_per_second: float = 800.0  # aimed at across all streams: see Server.pace
    log: Callable[[str], None] | None = None


class Server:
    """The app's state: the models, their batchers, the metrics, and the stop switch."""

    def __init__(self, models: list[ServedModel], settings: Settings) -> None:
        self.models = {m.id: m for m in models}
        self.settings = settings
        self.metrics = ServerMetrics()
        self.batchers = {
            m.id: Batcher(
                m.loaded.model,
                m.loaded.vocab,
                settings.max_streams,
                settings.max_queue,
                observe=self.metrics.observer(m.id),
            )
            for m in models
        }
        self.torch_models: dict[str, Any] = {}
        self.stopping = False

    def pace(self) -> float:
        """Seconds a stream's output gathers before its next event is sent: ``coalesce``, or
        longer with many streams, so that all of them together send about
        ``events_per_second`` events (256 streams: one event per 0.32 s each, with about 13
        characters). Each event costs the server (JSON, HTTP) and its client the same whether
        it holds one character or twenty: measured with bench/serve.py, 256 streams sent one
        event per character and spent the cores on events rather than on generation
        (docs/serve.md). The first event of a stream is never held back."""
        active = sum(b.active for b in self.batchers.values())
        return max(self.settings.coalesce, active / self.settings.events_per_second)

    def model(self, name: str | None) -> ServedModel:
        """The model a request names (the only one when it names none); 404 otherwise."""
        if name is None and len(self.models) == 1:
            return next(iter(self.models.values()))
        if name is None:
            raise ApiError(400, "model: this server holds several models: name one", "model")
        if name not in self.models:
            raise ApiError(404, f"model: no model {name!r} here", "model", code="model_not_found")
        return self.models[name]

    def stop(self) -> None:
        """End every open stream now (each gets its final event) and take no new ones."""
        self.stopping = True
        for b in self.batchers.values():
            b.close(timeout=0)

    def scorer(self, served: ServedModel) -> Any:
        """The torch model of ``served`` for scoring (loaded once)."""
        if served.id not in self.torch_models:
            from ..device import resolve_device
            from ..store.checkpoint import load_model

            device = resolve_device(self.settings.device)
            self.torch_models[served.id] = load_model(served.loaded.path, device)
        return self.torch_models[served.id].model


def _server(request: Request) -> Server:
    return request.app.state.server  # type: ignore[no-any-return]


async def _body(request: Request, limit: int) -> Any:
    """The request's JSON, read up to ``limit`` bytes (413 beyond)."""
    size = request.headers.get("content-length")
    if size is not None and size.isdigit() and int(size) > limit:
        raise ApiError(413, f"the request body is larger than {limit:,} bytes", code="too_large")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise ApiError(
                413, f"the request body is larger than {limit:,} bytes", code="too_large"
            )
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON ({e})") from None


def _start(server: Server, served: ServedModel, req: CompletionRequest) -> Job:
    if server.stopping:
        raise ApiError(503, "the server is stopping", kind="server_error")
    job = Job(req, server.settings.limits, server.metrics.first.observe)
    batcher = server.batchers[served.id]
    try:
        for s in job.streams:
            batcher.submit(s)
    except (Busy, Closed) as e:
        job.cancel()
        busy = ApiError(503, "every stream is busy: try again shortly", kind="server_error")
        busy.headers = {"Retry-After": "1"}
        raise busy from e
    return job


async def completions(request: Request) -> Any:
    server = _server(request)
    req = parse_completion(
        await _body(request, server.settings.limits.max_body), server.settings.limits
    )
    served = server.model(req.model)
    job = _start(server, served, req)
    cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    if req.stream:
        return EventStream(job, cid, created, served.id, server.pace, req.include_usage)
    watcher = asyncio.create_task(watch(request.receive, job))
    choices: list[dict[str, Any]] = [
        {"text": "", "index": i, "logprobs": None, "finish_reason": None}
        for i in range(len(job.streams))
    ]
    try:
        async for updates in job.pieces(server.pace):
            for u in updates:
                c = choices[u["index"]]
                c["text"] += u["text"]
                c["finish_reason"] = u["finish_reason"]
                if u["logprobs"] is not None:
                    lp = c["logprobs"] or {k: [] for k in u["logprobs"]}
                    c["logprobs"] = {k: lp[k] + u["logprobs"][k] for k in lp}
    finally:
        watcher.cancel()
        job.cancel()
    return JSONResponse(completion_object(cid, created, served.id, choices, job.usage()))


async def score(request: Request) -> Response:
    server = _server(request)
    name, text = parse_score(
        await _body(request, server.settings.limits.max_body), server.settings.limits
    )
    served = server.model(name)
    from .scoring import score as score_text

    def work() -> dict[str, Any]:
        return score_text(server.scorer(served), served.loaded.vocab, text)

    result = await asyncio.to_thread(work)
    return JSONResponse({**result, "model": served.id})


async def models(request: Request) -> Response:
    data = [
        {"id": m.id, "object": "model", "created": m.created, "owned_by": "charrnn"}
        for m in _server(request).models.values()
    ]
    return JSONResponse({"object": "list", "data": data})


async def health(request: Request) -> Response:
    server = _server(request)
    status = "stopping" if server.stopping else "ok"
    return JSONResponse({"status": status, "models": list(server.models)})


async def metrics(request: Request) -> Response:
    return Response(_server(request).metrics.text(), media_type=CONTENT_TYPE_LATEST)


def playground_html() -> str:
    """The playground page, shipped with the package."""
    return resources.files("charrnn.serve").joinpath("playground.html").read_text("utf-8")


async def playground(request: Request) -> Response:
    return HTMLResponse(playground_html())


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: "no such route", 405: "method not allowed"}.get(exc.status_code, exc.detail)
    body = ApiError(exc.status_code, f"{request.method} {request.url.path}: {message}").body()
    return JSONResponse(body, exc.status_code, headers=exc.headers)


async def _internal(request: Request, exc: Exception) -> Response:
    body = ApiError(500, "internal error (see the server's log)", kind="server_error").body()
    return JSONResponse(body, 500)


class Gate:
    """ASGI middleware: the key, one log line and one count per request."""

    def __init__(self, app: ASGIApp, server: Server) -> None:
        self.app, self.server = app, server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        key = self.server.settings.api_key
        if key and scope["path"] not in OPEN_PATHS and not _key_ok(scope, key):
            err = ApiError(
                401,
                "missing or wrong API key",
                kind="invalid_request_error",
                code="invalid_api_key",
            )
            await JSONResponse(err.body(), 401)(scope, receive, sending)
        else:
            await self.app(scope, receive, sending)
        self._record(scope, status[0], time.perf_counter() - t0)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope["path"] if scope["path"] in ROUTE_PATHS else "other"
        self.server.metrics.request(route, status)
        log = self.server.settings.log
        if log is not None:
            client = (scope.get("client") or ("-", 0))[0]
            log(f"{client} {scope['method']} {scope['path']} {status} {seconds * 1000:.1f} ms")


def _key_ok(scope: Scope, key: str) -> bool:
    given = b""
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            given = value[7:].strip()
    return hmac.compare_digest(given, key.encode())


ROUTES = [
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/score", score, methods=["POST"]),
    Route("/v1/models", models, methods=["GET"]),
    Route("/health", health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/", playground, methods=["GET"]),
]
ROUTE_PATHS = {r.path for r in ROUTES}


def create_app(models: list[ServedModel], settings: Settings | None = None) -> Starlette:
    """The app serving ``models``; ``app.state.server`` is its :class:`Server`."""
    server = Server(models, settings or Settings())

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        server.stop()
        await asyncio.gather(*(asyncio.to_thread(b.close) for b in server.batchers.values()))

    app = Starlette(
        routes=ROUTES,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal},
        lifespan=_as_context(lifespan),
    )
    app.state.server = server
    app.add_middleware(Gate, server=server)
    return app


def _as_context(fn: Callable[[Starlette], AsyncIterator[None]]) -> Any:
    from contextlib import asynccontextmanager

    return asynccontextmanager(fn)


def log_to_stderr(line: str) -> None:
    """The request log: one line per request on stderr."""
    print(f"charrnn: {line}", file=sys.stderr, flush=True)


def model_id(checkpoint: Path) -> str:
    """A model's id: its run folder's name (the checkpoint's own name outside a run)."""
    parent = checkpoint.parent
    from ..store.checkpoint import is_run_dir

    return parent.name if is_run_dir(parent) else checkpoint.name
