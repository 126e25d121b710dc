"""The validation stream of a training run: scoring a model on it (the weights as trained, or
their average), and the time that takes, which a time budget keeps for the final validation.
"""

from __future__ import annotations

import time

import torch

from ..evaluation import DEFAULT_BURN_IN, PARALLEL_WINDOW, evaluate_chunks, step_shape
from ..model.rnn import CharRNN
from ..units import Score
from .config import TrainConfig
from .distributed import Dist, agree

__all__ = ["EvalClock", "Validation", "validation_seconds"]


class Validation:
    """The validation ids of a run (``val_ids`` (N,), copied into memory up to
    ``config.eval_max_tokens``; training ids stay memory-mapped), scored by the protocol of
    ``config`` (:func:`charrnn.evaluation.evaluate_chunks`): ``lengths`` (V,) the characters of
    each token id and ``chars`` those of the whole validation text, for per-character figures
    (dropped when the ids are capped: the count would not match)."""

    def __init__(
        self,
        val_ids: torch.Tensor | None,
        config: TrainConfig,
        lengths: torch.Tensor | None = None,
        chars: int | None = None,
    ) -> None:
        self.config = config
        self.ids = None if val_ids is None else val_ids[: config.eval_max_tokens].long()
        capped = val_ids is not None and val_ids.numel() > config.eval_max_tokens
        self.chars = None if capped else chars
        self.lengths = lengths
        self.clock = EvalClock()

    @property
    def available(self) -> bool:
        """Whether there is a validation stream to score (two tokens or more)."""
        return self.ids is not None and self.ids.numel() >= 2

    def score(self, model: CharRNN) -> Score:
        """``model`` (a :class:`CharRNN`, or the averaged copy of one) on the stream, timed
        into :attr:`clock`. Needs :attr:`available`."""
        assert self.ids is not None
        t0 = time.perf_counter()
        res = evaluate_chunks(
            model,
            [self.ids],
            streams=self.config.eval_streams,
            lengths=self.lengths,
            chars=self.chars,
        )
        self.clock.record(time.perf_counter() - t0)
        return res

    def due(self, step: int, session_elapsed: float, dist: Dist, device: torch.device) -> bool:
        """Whether step ``step``, just taken ``session_elapsed`` seconds into the session,
        ends with a periodic evaluation: every ``config.eval_every`` steps, skipped while this
        session's evaluations would take more than ``config.eval_share`` of it. The same
        answer on every rank (an evaluation saves, and saving is collective)."""
        c = self.config
        if not c.eval_every or step % c.eval_every:
            return False
        if c.eval_share is None:
            return True
        over = self.clock.total + self.clock.last > c.eval_share * session_elapsed
        return not agree(dist, [float(over)], device)[0]

    def reserve(self, model: CharRNN, evaluations: int = 1) -> float:
        """Seconds a time budget keeps for a final validation of ``evaluations`` scorings
        (0 without a time limit or a stream; see :class:`EvalClock`)."""
        if self.config.max_time is None or self.ids is None or not self.available:
            return 0.0
        return evaluations * self.clock.reserve(model, self.ids.numel(), self.config)


class EvalClock:
    """The time validations take in this session: the last one, all of them, and before the
    first an estimate (:func:`validation_seconds`), for what a time budget keeps."""

    def __init__(self) -> None:
        self.last = 0.0  # seconds of the last validation
        self.total = 0.0  # of every validation of this session
        self.estimate: float | None = None

    def record(self, seconds: float) -> None:
        self.last = seconds
        self.total += seconds

    def reserve(self, model: CharRNN, n_tokens: int, c: TrainConfig) -> float:
        """The last validation's time, or the estimate before one; at most a quarter of the
        budget, so that training keeps the rest."""
        if self.last:
            return self.last
        if self.estimate is None:
            self.estimate = validation_seconds(model, n_tokens, c)
        return min(self.estimate, 0.25 * (c.max_time or 0.0))


def validation_seconds(model: CharRNN, n_tokens: int, c: TrainConfig) -> float:
    """About how long validating ``n_tokens`` tokens takes: a forward pass of the validation's
    streams over one window of the protocol, timed twice (the faster counts: a busy moment
    must not inflate it), scaled to the protocol's positions (its tokens per stream plus the
    burn-in), and a tenth more. The step has the protocol's shape, its logits within the
    protocol's memory budget (:func:`charrnn.evaluation.step_shape`: a large vocabulary gets
    shorter steps or fewer rows a step, the latter scaled back up). No weights and no random
    state change."""
    rows, steps = step_shape(c.eval_streams, model.config.vocab_size, PARALLEL_WINDOW)
    groups, was_training = -(-c.eval_streams // rows), model.training
    x = torch.zeros(rows, steps, dtype=torch.long, device=next(model.parameters()).device)
    model.eval()
    try:
        with torch.no_grad():
            model(x[:, :2])  # warm-up
            times = []
            for _ in range(2):
                t0 = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return 1.1 * groups * min(times) / steps * (n_tokens / c.eval_streams + DEFAULT_BURN_IN)
