"""Shared pieces of the command line: the stderr console, output, option parsing.

Generated text and machine-readable results go to stdout; progress, notices and errors go to
stderr (see :mod:`.streams` for when they cannot be written). Exit codes: 0 success, 1 a
runtime error the user can fix (one line, no traceback), 2 a usage error, 128 + the signal when
interrupted: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (see :mod:`.signals`).
"""

from __future__ import annotations

import codecs
import functools
import math
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

from ..errors import CharRNNError, CheckpointError, OptionError, terminal_text
from ..store import checkpoint as ck
from .streams import StdoutError, shown

err = Console(stderr=True, soft_wrap=True, highlight=False)


def debug_enabled() -> bool:
    return os.environ.get("CHARRNN_DEBUG", "") not in ("", "0")


# ------------------------------------------------------------------------------ helpers


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)?", re.IGNORECASE)


def parse_duration(value: str | None) -> float | None:
    """``90``, ``90s``, ``10m``, ``2h``, ``1h30m``, ``250ms`` -> seconds."""
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


def human_bytes(n: float) -> str:
    """A size for people: ``512 B``, ``1.5 KB``, ... ``3.2 GB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def live_display() -> bool:
    """Redraw a live view only on a real terminal, and not under NO_COLOR or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return err.is_terminal


def checkpoints_root() -> Path:
    return Path(os.environ.get("CHARRNN_CHECKPOINTS") or "checkpoints")


def find_checkpoint(path: Path | None, how: str = "pass --checkpoint PATH") -> Path:
    """--checkpoint, else CHARRNN_CHECKPOINTS / ./checkpoints: a run, a checkpoint or a root.
    ``how``: the hint naming the command's own way to give one."""
    if path is not None:
        return ck.resolve_checkpoint(path)
    root = checkpoints_root()
    if (root / ck.CONFIG).is_file() or ck.is_run_dir(root):
        return ck.resolve_checkpoint(root)
    run = ck.newest_run(root)
    if run is None:
        raise CheckpointError(
            f"{root}: no trained runs found; train one with `charrnn train FILE` or {how}"
        )
    return ck.resolve_checkpoint(run)


def set_threads(threads: int | None) -> None:
    """``--threads`` for torch and for NumPy's BLAS, without importing either: both read these
    variables when they load (neither is loaded by the command line's own imports); torch, if
    already loaded, is told directly."""
    if threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


class StdoutClosed(Exception):
    """The reader of stdout went away (e.g. ``| head``)."""


def write_out(text: str) -> None:
    """Write UTF-8 to stdout whatever the locale, flushed so that readers see it at once.
    Raises StdoutClosed when its reader went away, StdoutError when it cannot be written."""
    try:
        sys.stdout.buffer.write(shown(text).encode("utf-8", "replace"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise StdoutClosed() from None
    except OSError as e:
        raise StdoutError(e) from None


class PacedWriter:
    """Text for stdout, written in batches at most ``interval`` seconds apart (and on
    :meth:`flush`): one system call per batch instead of one per generated character, while a
    reader of the pipe still sees the text as it is generated. The first write goes out at once
    (the time to the first character is what a reader notices)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.parts: list[str] = []
        self.last = time.monotonic() - interval

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
    # Cells hold data (file and run names): escaped, so that widths are as printed and no
    # control character of the data reaches the terminal.
    table = [tuple(terminal_text(c) for c in row) for row in (header, *rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def say(line: str, keep: str = "") -> None:
    """A line for the user on stderr. What charrnn writes there may quote the data (file and
    run names, characters of a corpus), so it is escaped here, once for every message
    (:func:`charrnn.errors.terminal_text`; ``keep``: characters left as they are)."""
    err.print(terminal_text(line, keep), markup=False)


def fail(message: str, code: int = 1) -> NoReturn:
    say(f"charrnn: error: {message}")
    raise typer.Exit(code)


F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn user errors into one line on stderr + exit 1 (2 for an OptionError), and Ctrl-C
    into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CharRNNError as e:
            if debug_enabled():
                traceback.print_exc()
            if isinstance(e, StdoutError):
                silence_stdout()  # what is still buffered for it must not fail again at exit
            err.print(f"charrnn: error: {e}", markup=False)
            raise typer.Exit(2 if isinstance(e, OptionError) else 1) from None
        except KeyboardInterrupt:
            if debug_enabled():
                traceback.print_exc()
            err.print("charrnn: interrupted", markup=False)
            raise typer.Exit(130) from None

    return cast(F, wrapper)


# ------------------------------------------------------------------------------ option values

# Upper bounds of size options: beyond them no model fits in memory, and a typo like
# --hidden 2560000 should be a usage error, not an out-of-memory crash minutes later.
MAX_LAYERS, MAX_WIDTH, MAX_SUBWORDS = 64, 1 << 15, 1 << 20
MAX_BATCH, MAX_THREADS, MAX_SAMPLES = 1 << 20, 1024, 1 << 14
MAX_RATE = 1000.0  # --lr, --weight-decay: far beyond any use, far below float32 overflow
MAX_EMA_DECAY = 0.999  # --ema-decay: a memory of about 1,000 steps; 1 would never move
MAX_SEED = 2**32 - 1  # NumPy's and torch's generators both take any seed in 0 .. 2**32-1


def choices(values: Sequence[str]) -> str:
    """A metavar listing an option's values, e.g. ``lstm|gru|rnn``."""
    return "|".join(values)


class Choice:
    """Parser of an option that takes one of the library's ``values`` (checked at parse time:
    a usage error, exit 2); :func:`choices` makes the option's metavar that lists them."""

    def __init__(self, values: Sequence[str]) -> None:
        self.values = tuple(values)
        self.__name__ = "choice"

    def __call__(self, value: str) -> str:
        if value not in self.values:
            *rest, last = self.values
            expected = f"{', '.join(rest)} or {last}" if rest else last
            raise typer.BadParameter(f"{value!r}: expected {expected}")
        return value


def codec(encoding: str) -> str:
    """Parser of ``--encoding``: a text encoding Python knows (else a usage error, exit 2)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise typer.BadParameter(f"unknown text encoding {encoding!r}") from None
    return encoding


def device_spec(spec: str) -> str:
    """Parser of ``--device``: auto, cpu, cuda or cuda:N (else a usage error, exit 2); whether
    this machine has that device is checked when it is used (exit 1)."""
    from ..device import DEVICE_SPEC  # the standard library only

    if not DEVICE_SPEC.fullmatch(spec.strip().lower()):
        raise typer.BadParameter(f"{spec!r}: expected auto, cpu, cuda or cuda:N")
    return spec


def device_option(spec: str) -> Any:
    """``--device`` (already checked by :func:`device_spec`) resolved to a torch device."""
    from ..device import resolve_device

    return resolve_device(spec)


class Number:
    """Parser of a number option (``typer.Option(parser=Number(...))``), checked at parse time
    so that a bad value is a usage error (exit 2, one line naming the option): NaN is refused
    always; infinity only where ``inf_means`` says what it means (e.g. "no limit"); ``low`` and
    ``high`` bound it (``open_low``: the low bound itself is refused)."""

    def __init__(
        self,
        kind: type[int] | type[float] = float,
        low: float | None = None,
        high: float | None = None,
        open_low: bool = False,
        inf_means: str | None = None,
    ) -> None:
        self.kind, self.low, self.high = kind, low, high
        self.open_low, self.inf_means = open_low, inf_means
        self.__name__ = "integer" if kind is int else "number"

    def __call__(self, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            x = value
        else:
            text = str(value).strip()
            try:
                x = int(text) if self.kind is int else float(text)
            except ValueError:
                what = "an integer" if self.kind is int else "a number"
                raise typer.BadParameter(f"{value!r} is not {what}") from None
        if isinstance(x, float) and math.isnan(x):
            raise typer.BadParameter("NaN is not a valid value")
        if isinstance(x, float) and math.isinf(x):
            if self.inf_means is None or x < 0:
                raise typer.BadParameter(f"{value} is not a finite number")
            return x
        low_out = self.low is not None and (x < self.low or (self.open_low and x == self.low))
        if low_out or (self.high is not None and x > self.high):
            raise typer.BadParameter(f"{value} is out of range ({self.describe()})")
        return x

    def describe(self) -> str:
        """The accepted values, e.g. ``0 < x <= 1`` or ``x >= 0; inf: no clipping``."""
        show = (lambda v: f"{int(v):,}") if self.kind is int else (lambda v: f"{v:g}")
        low = "" if self.low is None else f"{show(self.low)} {'<' if self.open_low else '<='} "
        high = "" if self.high is None else f" <= {show(self.high)}"
        text = f"{low}x{high}" if low or high else "any finite value"
        return text + (f"; inf: {self.inf_means}" if self.inf_means else "")


# ------------------------------------------------------------------------------ shared options


def encoding_option(help: str) -> Any:
    """``--encoding CODEC`` (utf-8), checked at parse time."""
    return typer.Option("utf-8", "--encoding", parser=codec, help=help, metavar="CODEC")


def errors_option(help: str) -> Any:
    """``--errors strict|replace|ignore`` (strict), checked at parse time."""
    from ..text.reading import DECODE_ERRORS

    return typer.Option(
        "strict",
        "--errors",
        parser=Choice(DECODE_ERRORS),
        help=help,
        metavar=choices(DECODE_ERRORS),
    )


def device_param() -> Any:
    """``--device auto|cpu|cuda|cuda:N`` (auto), checked at parse time."""
    return typer.Option(
        "auto", "--device", parser=device_spec, help="auto, cpu, cuda or cuda:N.", metavar="DEVICE"
    )


def threads_param(help: str = "CPU threads.") -> Any:
    """``--threads N`` (None: the command's own default), 1 to MAX_THREADS."""
    return typer.Option(
        None, "--threads", parser=Number(int, 1, MAX_THREADS), help=help, metavar="N"
    )
