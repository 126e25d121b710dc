"""Signals on the command line: SIGINT (Ctrl-C), SIGTERM, and SIGHUP (the terminal or SSH
session that runs the command closed).

Every command ends on any of them the way it ends on Ctrl-C, never killed where it stands: an
exception unwinds it (:class:`Interrupted`, a KeyboardInterrupt), so that what it made is
cleaned up, then one line and exit 128 + the signal: 130, 143, 129 (:func:`end_on_signals`,
installed by :func:`charrnn.cli.main`). ``charrnn train``, once it trains, asks its run to stop
after the step and save instead (:class:`StopOnSignals`).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from .common import err

# Those a command stops on; SIGINT (Ctrl-C) raises KeyboardInterrupt on its own.
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupted(KeyboardInterrupt):
    """A signal that ends a command at once: exit 128 + ``signum``, one line
    (:func:`charrnn.cli.common.user_errors`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def end_on_signals() -> None:
    """Make SIGTERM and SIGHUP end a command the way Ctrl-C does: :class:`Interrupted` is
    raised where the command is."""
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT:
            signal.signal(signum, _raise_interrupted)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signum)


class StopOnSignals:
    """The signals of ``charrnn train`` (:data:`STOP_SIGNALS`), for the ``with`` block.

    During start-up, until ``training`` is set, the first one ends it at once (raises
    :class:`Interrupted`; later ones are ignored while the new run folder is removed). While
    training the first asks the run to stop after the step and save (:meth:`asked`); a second
    Ctrl-C aborts (KeyboardInterrupt), other later signals are ignored. ``signal`` is the first
    one received: exit 128 + it."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.training = False
        self._old: dict[int, Any] = {}

    def asked(self) -> bool:
        return self.signal is not None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.signal is None
        if first:
            self.signal = signum
        if not self.training:
            if first:
                raise Interrupted(signum)
            return
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
