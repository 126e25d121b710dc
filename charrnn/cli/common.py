"""Shared pieces of the command line: the stderr console, output, option parsing.

Generated text and machine-readable results go to stdout; progress, notices and errors go to
stderr. Exit codes: 0 success, 1 a runtime error the user can fix (one line, no traceback),
2 a usage error, 130 interrupted (143 for SIGTERM during training).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import typer
from rich.console import Console

from .. import checkpoint as ck
from ..errors import CharRNNError, CheckpointError

err = Console(stderr=True, soft_wrap=True, highlight=False)


def debug_enabled() -> bool:
    return os.environ.get("CHARRNN_DEBUG", "") not in ("", "0")


# ------------------------------------------------------------------------------ helpers


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s|ms)?", re.IGNORECASE)


def parse_duration(value: str | None) -> float | None:
    """``90``, ``90s``, ``10m``, ``2h``, ``1h30m`` -> seconds."""
    if value is None:
        return None
    text = value.strip().lower()
    pos, total = 0, 0.0
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if not m or m.end() == pos:
            raise typer.BadParameter(f"{value!r} is not a duration like 90s, 10m or 2h")
        total += float(m.group(1)) * units[m.group(2)]
        pos = m.end()
    if not text or total <= 0:
        raise typer.BadParameter(f"{value!r} is not a positive duration like 90s, 10m or 2h")
    return total


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def live_display() -> bool:
    """Redraw a live view only on a real terminal, and not under NO_COLOR or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return err.is_terminal


def checkpoints_root() -> Path:
    return Path(os.environ.get("CHARRNN_CHECKPOINTS") or "checkpoints")


def find_checkpoint(path: Path | None) -> Path:
    """--checkpoint, else CHARRNN_CHECKPOINTS / ./checkpoints: a run, a checkpoint or a root."""
    if path is not None:
        return ck.resolve_checkpoint(path)
    root = checkpoints_root()
    if (root / ck.CONFIG).is_file() or ck.is_run_dir(root):
        return ck.resolve_checkpoint(root)
    run = ck.newest_run(root)
    if run is None:
        raise CheckpointError(
            f"{root}: no trained runs found; train one with `charrnn train FILE` "
            "or pass --checkpoint PATH"
        )
    return ck.resolve_checkpoint(run)


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


class StdoutClosed(Exception):
    """The reader of stdout went away (e.g. ``| head``)."""


def write_out(text: str) -> None:
    """Write UTF-8 to stdout whatever the locale, flushed so that readers see it at once."""
    try:
        sys.stdout.buffer.write(text.encode("utf-8", "replace"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise StdoutClosed() from None


class PacedWriter:
    """Text for stdout, written in batches at most ``interval`` seconds apart (and on
    :meth:`flush`): one system call per batch instead of one per generated character, while a
    reader of the pipe still sees the text as it is generated."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.parts: list[str] = []
        self.last = time.monotonic()

    def write(self, text: str) -> None:
        self.parts.append(text)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.flush()
            self.last = now

    def flush(self) -> None:
        if self.parts:
            text = "".join(self.parts)
            self.parts.clear()
            write_out(text)


def silence_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:
        pass


def out_or_quiet(text: str) -> None:
    """Write data to stdout; if its reader has gone (``| head``), stop writing quietly."""
    try:
        write_out(text)
    except StdoutClosed:
        silence_stdout()


def format_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], left: int = 1) -> str:
    """Aligned columns; the first ``left`` columns are left-aligned, the rest right-aligned."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def check_choice(value: str | None, choices: Sequence[str], option: str) -> None:
    """A usage error (exit 2) unless ``value`` is None or one of the library's ``choices``."""
    if value is not None and value not in choices:
        expected = (
            ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        )
        raise typer.BadParameter(f"expected {expected}", param_hint=option)


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"charrnn: error: {message}", markup=False)
    raise typer.Exit(code)


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn user errors into one line on stderr + exit 1, and Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CharRNNError as e:
            if debug_enabled():
                traceback.print_exc()
            err.print(f"charrnn: error: {e}", markup=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if debug_enabled():
                traceback.print_exc()
            err.print("charrnn: interrupted", markup=False)
            raise typer.Exit(130) from None

    return cast(F, wrapper)
