"""The training loop: silent, reporting through callbacks. It never prints and never saves.

Callers pass callbacks that receive events (:mod:`charrnn.training.events`: ``Started``,
``Stepped``, ``Evaluated``, ``Skipped``, ``Finished``); a :class:`~charrnn.run.session.Run`
saves a checkpoint when it sees ``Evaluated`` and the CLI renders them all. The loop walks the
training stream as ``batch_size`` contiguous rows in ``seq_len`` windows, carrying the hidden
state (see :mod:`charrnn.training.batches`): truncated backpropagation through time with
gradient-norm clipping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from ..errors import TrainingError
from ..model.rnn import CharRNN, Hidden, hidden_from_tensors, hidden_tensors
from ..units import Score, nats_per_char
from . import schedule
from .average import WeightAverage, replaces
from .batches import batchify, num_windows, window
from .config import TrainConfig, TrainerState
from .distributed import SINGLE, Dist, agree, gather_rows, rows
from .events import Callback, Evaluated, Event, Finished, Skipped, Started, Stepped
from .step import WindowStep
from .validation import Validation

__all__ = ["Trainer", "make_optimizer"]

MAX_NONFINITE = 5


# ---------------------------------------------------------------------------------- trainer


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not biases, not the embedding table)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.startswith("embedding") else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99))


class Trainer:
    def __init__(
        self,
        model: CharRNN,
        train_ids: torch.Tensor,
        val_ids: torch.Tensor | None,
        config: TrainConfig,
        callbacks: Sequence[Callback] = (),
        state: TrainerState | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        should_stop: Callable[[], bool] | None = None,
        dist: Dist = SINGLE,
        chars_per_token: float = 1.0,
        val_lengths: torch.Tensor | None = None,
        val_chars: int | None = None,
    ) -> None:
        """``chars_per_token``: characters per token of the training text (1 for characters),
        for the per-character training loss; ``val_lengths`` (V,): characters of each token id
        and ``val_chars``: characters of the whole validation text, for per-character validation
        figures (see :func:`charrnn.evaluation.evaluate_chunks`)."""
        self.model = model
        self.chars_per_token = chars_per_token
        self.config = config
        self.dist = dist
        self.device = next(model.parameters()).device
        # (B, L) over the whole corpus; this process trains its share of the rows (all of them
        # unless several processes share the batch). Stays on the CPU, memory-mapped.
        self.data = batchify(train_ids, config.batch_size)[rows(dist, config.batch_size)]
        self.steps_per_epoch = num_windows(self.data.size(1), config.seq_len)
        self.validation = Validation(val_ids, config, val_lengths, val_chars)
        self.callbacks = list(callbacks)
        self.resumed = state is not None
        self.state = state or TrainerState()
        if dist.enabled and self.state.hidden is not None:
            self.state.hidden = _hidden_rows(self.state.hidden, rows(dist, config.batch_size))
        self.optimizer = optimizer or make_optimizer(model, config)
        # The weights' moving average (none without validation), copied before DDP wraps it.
        self.average = WeightAverage.for_run(model, config, self.state, self.validation.available)
        self.stepper = WindowStep(model, self.optimizer, config, dist, self.state.grad_scale)
        self.should_stop = should_stop or (lambda: False)
        self._session_p0 = schedule.session_start(self.state.progress, self.state.finished)
        self._session_start = 0.0
        self._progress_high = 0.0  # the furthest progress of this session (see progress())
        self._nonfinite = 0  # steps in a row with a non-finite loss or gradient
        self._recent = _RunningMean()  # of the latest training losses (nats/token)
        self._last_time = 0.0
        self._rate = _Rate(0.0)

    def progress(self, session_elapsed: float) -> float:
        """Fraction of the run done (see :func:`charrnn.training.schedule.progress`), counting
        the time kept for the final validation as spent: the schedule reaches its end when the
        budget stops training."""
        spent = session_elapsed + self._eval_reserve()
        p = schedule.progress(
            self.config, self.state, self.steps_per_epoch, spent, self._session_p0
        )
        # The reserve is revised by each validation: progress never goes back for it.
        self._progress_high = max(self._progress_high, p) if p == p else p
        return self._progress_high

    def _eval_reserve(self) -> float:
        """Seconds a time budget keeps for the final validation: two evaluations where the
        weights' average is scored too."""
        return self.validation.reserve(self.model, 1 if self.average is None else 2)

    # -- loop -------------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        for cb in self.callbacks:
            cb(event)

    def _limit_reached(self, session_elapsed: float) -> tuple[str | None, float]:
        """Why to stop now (or None), and the schedule's progress; the same on every rank."""
        c, s = self.config, self.state
        # Keep time for the final evaluation inside the budget.
        out_of_time = (
            c.max_time is not None and session_elapsed + self._eval_reserve() >= c.max_time
        )
        flags = [float(out_of_time), float(self.should_stop()), self.progress(session_elapsed)]
        out_of_time_any, stop_any, progress = agree(self.dist, flags, self.device)
        reason = schedule.stop_reason(c, s, self._epochs(), bool(out_of_time_any), bool(stop_any))
        return reason, progress

    def global_state(self) -> TrainerState:
        """The state with every process's share of the carried hidden state (collective)."""
        s = self.state
        if not self.dist.enabled or s.hidden is None:
            return s
        full = [gather_rows(self.dist, t, dim=1) for t in hidden_tensors(s.hidden)]
        return replace(s, hidden=hidden_from_tensors(self.model.config.cell, full))

    def validate(self, final: bool = False) -> Score | None:
        """Evaluate on the validation stream, update best-so-far and emit :class:`Evaluated`."""
        if not self.validation.available:
            return None
        res = self.validation.score(self.model)
        self._record(res, final)
        return res

    def _record(self, res: Score, final: bool, averaged: bool = False) -> None:
        s = self.state
        is_best = schedule.record_validation(self.config, s, res.nats_per_token)
        cpt = self.chars_per_token
        self._emit(_evaluated(s, self._epochs(), res, is_best, final, cpt, averaged))

    def _validate_final(self, validated: bool) -> None:
        """The last validation of a finished run: the weights (unless ``validated`` at this step
        already) and their average (:mod:`.average`), which replaces them only as a new best
        (:func:`.average.replaces`); emits :class:`Evaluated` for what is kept, if not emitted."""
        avg, s = self.average, self.state
        if avg is None or avg.steps == 0:
            if not validated:
                self.validate(final=True)
            return
        trained = None if validated else self.validation.score(self.model)
        mean = self.validation.score(avg.model)
        bar = [s.best_val, s.last_val if trained is None else trained.nats_per_token]
        better = replaces(mean.nats_per_token, bar)
        if agree(self.dist, [float(better)], self.device)[0]:  # the same choice on every rank
            avg.copy_into(self.model)
            self._record(mean, final=True, averaged=True)
        elif trained is not None:
            self._record(trained, final=True)

    def _epochs(self) -> float:
        """Epochs done, fractional."""
        return self.state.epoch + self.state.window / self.steps_per_epoch

    def _skipped(self, loss_value: float) -> None:
        """A step with a non-finite loss or gradient: skip its window, or give up after
        MAX_NONFINITE in a row."""
        s = self.state
        self._nonfinite += 1
        self._emit(Skipped(s.step, f"non-finite loss or gradient (loss {loss_value})"))
        s.window += 1
        if self._nonfinite >= MAX_NONFINITE:
            s.hidden = None
            raise TrainingError(
                f"training diverged: {self._nonfinite} steps in a row had a non-finite loss or "
                "gradient; try a lower --lr or --clip"
            )

    def _stepped(self, loss_value: float, lr: float, progress: float, tokens: int) -> None:
        """Count a step taken and emit :class:`Stepped`."""
        s, now = self.state, time.perf_counter()
        s.step += 1
        s.window += 1
        s.tokens += tokens
        s.progress = progress
        s.train_loss = self._recent.add(loss_value)
        s.elapsed += now - self._last_time
        self._last_time = now
        self._rate.add(now, tokens)
        elapsed = now - self._session_start
        per_char = nats_per_char(s.train_loss, self.chars_per_token)
        rate, done = self._rate.per_second(now), self.progress(elapsed)
        self._emit(Stepped(s.step, self._epochs(), s.train_loss, lr, rate, elapsed, done, per_char))

    def run(self) -> TrainerState:
        """Train until a limit of the config or ``should_stop()``; a last validation follows
        unless stopped. Raises :class:`TrainingError` when training diverges."""
        c, s = self.config, self.state
        size, rows_, n_params = self.steps_per_epoch, self.data.size(0), self.model.num_parameters()
        self._emit(Started(s.step, size, rows_, c.seq_len, n_params, self.resumed))
        self.model.train()
        self._session_start = time.perf_counter()
        self._nonfinite, self._recent, self._rate = 0, _RunningMean(), _Rate(self._session_start)
        last_eval_step = s.step if self.resumed else -1
        hidden = s.hidden
        while True:
            self._last_time = time.perf_counter()  # evaluations are not training time
            reason, progress = self._limit_reached(self._last_time - self._session_start)
            if reason:
                break
            if s.window >= self.steps_per_epoch:
                s.epoch, s.window, hidden = s.epoch + 1, 0, None
            lr = schedule.learning_rate(c, s, progress)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            x, y = window(self.data, s.window, c.seq_len)  # (B, T) each
            loss_value, applied, hidden = self.stepper(x, y, hidden)
            if self.stepper.scaler is not None:
                s.grad_scale = self.stepper.scaler.state_dict()
            if not applied:
                hidden = None
                self._skipped(loss_value)
                continue
            self._nonfinite = 0
            self._stepped(loss_value, lr, progress, c.batch_size * y.size(1))
            if self.average is not None:
                self.average.update(self.model)
            elapsed = time.perf_counter() - self._session_start
            if self.validation.due(s.step, elapsed, self.dist, self.device):
                s.hidden = hidden
                self.validate()
                last_eval_step = s.step
        s.hidden, s.finished = hidden, reason != "stopped"
        if s.finished:
            self._validate_final(validated=last_eval_step == s.step)
        self._emit(Finished(s.step, reason))
        return s


def _evaluated(
    s: TrainerState,
    epochs: float,
    res: Score,
    is_best: bool,
    final: bool,
    chars_per_token: float,
    averaged: bool = False,
) -> Evaluated:
    """The event of a validation just recorded in ``s``."""
    best = None if s.best_val is None else Score.from_mean(s.best_val, res.tokens, res.chars)
    train = None if s.train_loss is None else nats_per_char(s.train_loss, chars_per_token)
    return Evaluated(s.step, epochs, res, s.train_loss, is_best, final, train, best, averaged)


class _RunningMean:
    """The mean of the last ``n`` values added."""

    def __init__(self, n: int = 50) -> None:
        self.values: deque[float] = deque(maxlen=n)

    def add(self, x: float) -> float:
        self.values.append(x)
        return sum(self.values) / len(self.values)


class _Rate:
    """Tokens per second over roughly the last two seconds."""

    def __init__(self, t0: float) -> None:
        self.t0, self.n = t0, 0

    def add(self, now: float, tokens: int) -> None:
        self.n += tokens
        if now - self.t0 > 2.0:
            self.t0, self.n = now - (now - self.t0) / 2, self.n // 2

    def per_second(self, now: float) -> float:
        return self.n / max(now - self.t0, 1e-9)


def _hidden_rows(hidden: Hidden, sl: slice) -> Hidden:
    if isinstance(hidden, tuple):
        return (hidden[0][:, sl].contiguous(), hidden[1][:, sl].contiguous())
    return hidden[:, sl].contiguous()
