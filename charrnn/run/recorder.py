"""What a run writes to ``metrics.jsonl`` while it trains: the training events turned into the
records that :mod:`charrnn.store.metrics` appends and reads (its docstring shows them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..store.metrics import MetricsLog, sig
from ..training.events import Evaluated, Event, Finished, Started, Stepped
from ..units import bits


def metrics_every(eval_every: int) -> int:
    """Steps between ``step`` records: about ten per evaluation interval (every 20 steps when
    the run never evaluates)."""
    return max(1, eval_every // 10) if eval_every > 0 else 20


class MetricsRecorder:
    """A training callback that turns events into metrics.jsonl records.

    ``clock()`` gives (seconds of training over all sessions, characters seen) at the moment of
    the event; step records are written every ``every`` steps only. ``chars_per_token`` turns the
    events' token rates into characters per second (1 for the character tokenizer).
    """

    def __init__(
        self,
        log: MetricsLog,
        every: int,
        clock: Callable[[], tuple[float, int]],
        chars_per_token: float = 1.0,
    ) -> None:
        self.log = log
        self.every = every
        self.clock = clock
        self.chars_per_token = chars_per_token
        self.last_step: Stepped | None = None

    def __call__(self, event: Event) -> None:
        record = self.record(event)
        if record is not None:
            record["wall"] = round(time.time(), 3)
            self.log.write(record)

    def record(self, event: Event) -> dict[str, Any] | None:
        """The record for ``event`` (None: nothing to write for it)."""
        elapsed, chars = self.clock()
        common = {"step": event.step, "time": sig(elapsed), "chars": chars}
        if isinstance(event, Started):
            return {
                "event": "start",
                **common,
                "resumed": event.resumed,
                "parameters": event.parameters,
            }
        if isinstance(event, Stepped):
            self.last_step = event
            if event.step % self.every:
                return None
            train = _train_fields(event.loss, event.loss_per_char, event, self.chars_per_token)
            return {"event": "step", **common, "epoch": sig(event.epoch), **train}
        if isinstance(event, Evaluated):
            train = _train_fields(
                event.train_loss, event.train_loss_per_char, self.last_step, self.chars_per_token
            )
            return {
                "event": "eval",
                **common,
                "epoch": sig(event.epoch),
                **train,
                "val_loss": sig(event.val.nats_per_token),
                "val_bits_per_char": sig(event.val.bits_per_char),
                "best": event.is_best,
                **({"averaged": True} if event.averaged else {}),
            }
        if isinstance(event, Finished):
            return {"event": "end", **common, "reason": event.reason}
        return None


def _train_fields(
    loss: float | None, loss_per_char: float | None, last: Stepped | None, chars_per_token: float
) -> dict[str, Any]:
    return {
        "train_loss": sig(loss),
        "train_bits_per_char": None if loss_per_char is None else sig(bits(loss_per_char)),
        "lr": None if last is None else sig(last.lr),
        "chars_per_sec": None if last is None else round(last.tokens_per_sec * chars_per_token),
    }
