"""The server's measurements in Prometheus' text format (``GET /metrics``), through the
``prometheus-client`` library, in a registry of the server's own (two servers in one process,
as in the tests, do not share counters)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ServerMetrics"]

_FIRST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
_STEP_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


class ServerMetrics:
    """Requests by route and status, characters generated, active and queued streams per model,
    time to first character, step time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "charrnn_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=r,
        )
        self.generated = Counter(
            "charrnn_generated_tokens",
            "Tokens generated (characters for a character model).",
            ["model"],
            registry=r,
        )
        self.active = Gauge(
            "charrnn_active_streams", "Streams being generated.", ["model"], registry=r
        )
        self.queued = Gauge(
            "charrnn_queued_streams", "Streams waiting for a free row.", ["model"], registry=r
        )
        self.first = Histogram(
            "charrnn_time_to_first_character_seconds",
            "From a stream's arrival to its first generated text.",
            buckets=_FIRST_BUCKETS,
            registry=r,
        )
        self.step = Histogram(
            "charrnn_step_seconds",
            "One batched step of a model (every active stream).",
            buckets=_STEP_BUCKETS,
            registry=r,
        )

    def observer(self, model: str):  # type: ignore[no-untyped-def]
        """The batcher's callback for ``model``: (active, queued, tokens drawn, seconds)."""
        active, queued = self.active.labels(model), self.queued.labels(model)
        generated, step = self.generated.labels(model), self.step

        def observe(n_active: int, n_queued: int, tokens: int, seconds: float) -> None:
            active.set(n_active)
            queued.set(n_queued)
            if tokens:
                generated.inc(tokens)
                step.observe(seconds)

        return observe

    def request(self, route: str, status: int) -> None:
        self.requests.labels(route, str(status)).inc()

    def text(self) -> bytes:
        """Every measurement in the text format."""
        return generate_latest(self.registry)
