"""What the training loop reports, as plain frozen records. Standard library only.

:class:`~charrnn.training.loop.Trainer` emits these to its callbacks; the run (saving,
metrics.jsonl)
and the command line (progress, summary) react to them. Losses of the training stream come per
token (what the optimizer sees) and per character (what users compare); validation comes as a
:class:`~charrnn.units.Score`, which has both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..units import Score


@dataclass(frozen=True)
class Started:
    step: int
    steps_per_epoch: int
    batch_size: int
    seq_len: int
    parameters: int
    resumed: bool


@dataclass(frozen=True)
class Stepped:
    step: int
    epoch: float
    loss: float  # running mean of recent training losses, nats/token
    lr: float
    tokens_per_sec: float
    elapsed: float  # seconds in this invocation
    progress: float  # 0..1 towards whichever limit comes first, or nan without limits
    loss_per_char: float  # ``loss`` in nats/char


@dataclass(frozen=True)
class Evaluated:
    step: int
    epoch: float
    val: Score
    train_loss: float | None  # nats/token, as Stepped.loss
    is_best: bool
    final: bool
    train_loss_per_char: float | None = None
    best: Score | None = None  # the best validation so far (this one when ``is_best``)
    averaged: bool = False  # the weights' average replaced them (a final validation only)


@dataclass(frozen=True)
class Skipped:
    step: int
    reason: str


@dataclass(frozen=True)
class Finished:
    step: int
    reason: str  # "max_steps", "max_epochs", "patience", "max_time" or "stopped"


Event = Started | Stepped | Evaluated | Skipped | Finished
Callback = Callable[[Event], None]
