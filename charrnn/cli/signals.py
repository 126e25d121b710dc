"""Signals on the command line: SIGINT (Ctrl-C), SIGTERM, and SIGHUP (the terminal or SSH
session that runs the command closed).

Each ends any command at once with one line, ``charrnn: interrupted`` (``charrnn: interrupted
(SIGTERM)``, ...), and exit 128 + the signal: 130, 143, 129 (:func:`end_on_signals`, installed
by :func:`charrnn.cli.main`). ``charrnn train`` (:class:`StopOnSignals`) ends the same way during
its start-up, after removing the run folder it made (nothing is saved in it yet), and once it
trains asks its run to stop after the step and save.

Ending at once means from inside the handler (``os._exit``), not by an exception raised
wherever the program happens to be (Python's KeyboardInterrupt): such an exception can fall
inside an import (leaving a module half made: torch's imports take a second), a destructor or
a callback (where Python swallows it, and the signal is lost).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

from .common import err

# Those a command stops on (the ones this platform has).
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def exit_line(signum: int) -> str:
    """``charrnn: interrupted`` (Ctrl-C), ``charrnn: interrupted (SIGTERM)``, ..."""
    name = "" if signum == signal.SIGINT else f" ({signal.Signals(signum).name})"
    return f"charrnn: interrupted{name}"


def end_now(signum: int) -> NoReturn:
    """Say so in one line and end the process with 128 + ``signum``, from a signal handler:
    written straight to the descriptor (the handler may have cut a print short), and a
    stderr that cannot be written (a closed terminal) does not matter."""
    with contextlib.suppress(OSError):
        os.write(2, (exit_line(signum) + "\n").encode())
    os._exit(128 + signum)


def end_on_signals() -> None:
    """Make Ctrl-C, SIGTERM and SIGHUP end a command at once with one line (:func:`end_now`)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _end)


def _end(signum: int, frame: FrameType | None) -> None:
    end_now(signum)


class StopOnSignals:
    """The signals of ``charrnn train`` (:data:`STOP_SIGNALS`), for the ``with`` block.

    During start-up, until ``training`` is set, the first one ends the process at once:
    ``clean_up`` (which removes the run folders made so far; later signals wait for it), then
    :func:`end_now`. While
    training the first asks the run to stop after the step and save (:meth:`asked`); a second
    Ctrl-C aborts (KeyboardInterrupt), other later signals are ignored. ``signal`` is the first
    one received: exit 128 + it."""

    def __init__(self, clean_up: Callable[[], None] = lambda: None) -> None:
        self.signal: int | None = None
        self.training = False
        self.clean_up = clean_up
        self._old: dict[int, Any] = {}

    def asked(self) -> bool:
        return self.signal is not None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.signal is None
        if first:
            self.signal = signum
        if not self.training:
            if not first:
                return  # the first one's clean-up goes on, then ends the process
            try:
                self.clean_up()
            finally:
                end_now(signum)
        if not first:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        if signum == signal.SIGINT:
            why, abort = "interrupted", "Ctrl-C again to abort"
        else:
            why, abort = signal.Signals(signum).name, "Ctrl-C to abort"
        err.print(
            f"{why}: stopping after this step and saving a checkpoint ({abort})", markup=False
        )

    def __enter__(self) -> StopOnSignals:
        for signum in STOP_SIGNALS:
            self._old[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
