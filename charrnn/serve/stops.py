"""Stop strings for a stream that is pushed one piece at a time, with each piece's information
(log-probabilities) carried along with its characters.

The rule is :func:`charrnn.sample.policy.stop_at`'s, for up to four stop strings: stop strings
at the very start are dropped, not matched; the text ends where a stop string first appears
(not included); text is released as soon as it can no longer be part of a stop. With one stop
string the joined output is exactly ``cut_at_stop(generated, stop)``.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class StopCutter(Generic[T]):
    """Feed pieces with :meth:`feed`, end with :meth:`flush`; both return the text now safe to
    send and the infos of the pieces that start in it."""

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self.stops = tuple(s for s in stops if s)
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.marks: list[T | None] = []  # per pending character: its piece's info, or None
        self.started = False
        self.stopped = False

    def feed(self, piece: str, info: T) -> tuple[str, list[T], bool]:
        """(text to send, its pieces' infos, whether a stop string has ended the text)."""
        if self.stopped:
            return "", [], True
        if not self.stops:
            return piece, [info], False
        self.pending += piece
        self.marks += [info, *([None] * (len(piece) - 1))] if piece else []
        if not self.started:
            self._drop_leading()
            if any(s.startswith(self.pending) for s in self.stops):
                return "", [], False  # empty, or maybe the start of a leading stop
            self.started = True
        cuts = [c for c in (self.pending.find(s) for s in self.stops) if c >= 0]
        if cuts:
            self.stopped = True
            text, infos = self._release(min(cuts))
            self.pending, self.marks = "", []
            return text, infos, True
        if len(self.pending) > self.keep:
            text, infos = self._release(len(self.pending) - self.keep)
            return text, infos, False
        return "", [], False

    def flush(self) -> tuple[str, list[T], bool]:
        """What is still held back, at the end of the stream."""
        if self.stopped:
            return "", [], True
        return (*self._release(len(self.pending)), False)

    def _drop_leading(self) -> None:
        while True:
            lead = [s for s in self.stops if self.pending.startswith(s)]
            if not lead:
                return
            n = max(len(s) for s in lead)
            self.pending, self.marks = self.pending[n:], self.marks[n:]

    def _release(self, n: int) -> tuple[str, list[T]]:
        text, marks = self.pending[:n], self.marks[:n]
        self.pending, self.marks = self.pending[n:], self.marks[n:]
        return text, [m for m in marks if m is not None]
