"""Running the app under uvicorn: the stop on SIGTERM or Ctrl-C ends the open streams first
(each gets its final event), then uvicorn closes the connections and the process exits (0 for
SIGTERM; Ctrl-C is re-raised as KeyboardInterrupt: the command line's exit 130)."""

from __future__ import annotations

import asyncio
import signal
import sys
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from .app import Server

SWITCH_INTERVAL = 0.001  # seconds: see run()


class _Uvicorn(uvicorn.Server):
    """uvicorn, with the app's streams ended as soon as a stop signal comes."""

    def __init__(self, config: uvicorn.Config, state: Server) -> None:
        super().__init__(config)
        self.state = state
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.state.stop)
        super().handle_exit(sig, frame)


def run(app: Starlette, host: str, port: int, grace: int = 3) -> None:
    """Serve ``app`` on ``host``:``port`` until SIGTERM (returns) or Ctrl-C (raises
    KeyboardInterrupt)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=grace,
        lifespan="on",
    )
    server = _Uvicorn(config, app.state.server)
    # The batcher's thread holds the GIL between its NumPy calls; a thread waiting for it (the
    # event loop, with a request to read or an event to send) gets it after at most the
    # switch interval. 1 ms instead of Python's 5: bench/serve.py's first character at 64
    # clients 50-53 -> 46 ms p50, with the same characters per second (docs/serve.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    # uvicorn re-raises the signal it stopped for, with the handler it found: for SIGTERM a
    # handler that does nothing, so that the process exits 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
