"""``charrnn serve``: trained models over HTTP (the OpenAI completions API, a playground)."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path

import typer

from ..serve.protocol import MAX_QUEUE, MAX_STREAMS, Limits
from .common import Number, device_param, err, fail, find_checkpoint, set_threads, threads_param

LIMITS = Limits()  # the defaults of the limit options: one source, the server's own

SERVE_EPILOG = (
    "Examples:\n\n"
    "  charrnn serve\n\n"
    "  charrnn serve checkpoints/verses-gru --port 9000 --api-key s3cret\n\n"
    '  curl -s localhost:8080/v1/completions -d \'{"prompt": "THE ", "max_tokens": 80}\''
)
EXTRA = "pip install 'charrnn[serve]'"
NEEDED = ("starlette", "uvicorn", "prometheus_client")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_command(
    runs: list[Path] = typer.Argument(
        None, help="Run or checkpoint folders [default: the newest run].", metavar="RUN..."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on.", metavar="ADDR"),
    port: int = typer.Option(
        8080, "--port", parser=Number(int, 0, 65535), help="Port (0: any free one).", metavar="N"
    ),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="CHARRNN_API_KEY",
        help="Ask every request for this key (Authorization: Bearer KEY) [env: CHARRNN_API_KEY].",
        metavar="KEY",
        show_envvar=False,
    ),
    max_streams: int = typer.Option(
        MAX_STREAMS,
        "--max-streams",
        parser=Number(int, 1, 1 << 16),
        help="Streams generated at once.",
        metavar="N",
    ),
    max_queue: int = typer.Option(
        MAX_QUEUE,
        "--max-queue",
        parser=Number(int, 0, 1 << 20),
        help="Streams that may wait for a free one (then 503).",
        metavar="N",
    ),
    max_body: int = typer.Option(
        LIMITS.max_body,
        "--max-body",
        parser=Number(int, 1),
        help="Request body bytes (then 413).",
        metavar="BYTES",
    ),
    max_prompt: int = typer.Option(
        LIMITS.max_prompt,
        "--max-prompt",
        parser=Number(int, 1),
        help="Prompt characters per request.",
        metavar="N",
    ),
    max_tokens: int = typer.Option(
        LIMITS.max_tokens,
        "--max-tokens",
        parser=Number(int, 1),
        help="Largest max_tokens a request may ask.",
        metavar="N",
    ),
    max_n: int = typer.Option(
        LIMITS.max_n,
        "--max-n",
        parser=Number(int, 1, 1024),
        help="Largest n (choices) per request.",
        metavar="N",
    ),
    time_limit: float = typer.Option(
        LIMITS.time_limit,
        "--time-limit",
        parser=Number(float, 0.0, open_low=True),
        help="Seconds a request may generate for.",
        metavar="SECONDS",
    ),
    device: str = device_param(),
    threads: int | None = threads_param(),
) -> None:
    """Serve trained models over HTTP: the OpenAI completions API, streamed, and a playground."""
    missing = [m for m in NEEDED if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"charrnn serve needs {', '.join(missing)}: {EXTRA}")
    set_threads(threads or 1)
    from ..serve.app import ServedModel, Settings, create_app, log_to_stderr, model_id
    from ..serve.protocol import Limits
    from ..serve.server import run
    from ..store.checkpoint import load_arrays, resolve_checkpoint

    paths = [resolve_checkpoint(p) for p in runs] if runs else [find_checkpoint(None)]
    models = [ServedModel(model_id(p), load_arrays(p)) for p in paths]
    if len({m.id for m in models}) != len(models):
        fail("two of the runs have the same folder name: serve them from separate servers")
    if not api_key and not _is_loopback(host):
        err.print(
            f"charrnn: warning: listening on {host} without an API key: anyone who can reach "
            "it can use it (pass --api-key)",
            markup=False,
        )
    limits = Limits(max_body, max_prompt, max_tokens, max_n, time_limit)
    settings = Settings(limits, api_key or None, max_streams, max_queue, device, log=log_to_stderr)
    app = create_app(models, settings)
    shown = f"[{host}]" if ":" in host else host
    names = ", ".join(m.id for m in models)
    err.print(f"charrnn: serving {names} at http://{shown}:{port}/ (Ctrl-C to stop)", markup=False)
    run(app, host, port)
