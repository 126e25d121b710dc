"""An exponential moving average of the weights over a session's steps (EMA), tried at the
end of a run against the weights as trained.

After step n the average is ``a_n = a_{n-1} + w_n (p_n - a_{n-1})`` with
``w_n = max(1 - decay, 1 / n)``: the plain mean of the first ``1 / (1 - decay)`` steps, then an
EMA with that decay (about ``1 / (1 - decay)`` steps of memory: 100 at 0.99), so the starting
weights leave no trace (the bias of a plain EMA begun at step 1). The copy of the model and its
bookkeeping are :class:`torch.optim.swa_utils.AveragedModel`'s; only the weight ``w_n`` is
ours. Averaging the end of a trajectory is Polyak-Ruppert averaging (Polyak and Juditsky, 1992);
for neural networks see Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization" (2018), whose SWA is the uniform-mean variant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

import torch
from torch.optim.swa_utils import AveragedModel

from ..model.rnn import CharRNN
from .config import TrainConfig, TrainerState

__all__ = ["WeightAverage", "average_weight", "replaces"]


def average_weight(decay: float, n: int) -> float:
    """The weight of the ``n``-th step's parameters (n >= 1) in the average: ``1 / n`` until
    it falls to ``1 - decay``, then ``1 - decay``. Raises ValueError for ``n < 1`` or a decay
    outside [0, 1)."""
    if n < 1 or not 0.0 <= decay < 1.0:
        raise ValueError(f"need n >= 1 and 0 <= decay < 1, got n={n}, decay={decay}")
    return max(1.0 - decay, 1.0 / n)


def replaces(average: float, scores: Iterable[float | None]) -> bool:
    """Whether weights' average scoring ``average`` (nats/token on the validation text) takes
    the place of the weights as trained: it is finite and lower than every finite one of
    ``scores`` (the weights' own score and the run's best validation so far: the average is
    kept only as the run's new best). NaN and infinity never win; None scores are ignored."""
    others = [x for x in scores if x is not None and math.isfinite(x)]
    return math.isfinite(average) and all(average < x for x in others)


class WeightAverage:
    """The running average of a model's parameters (see the module docstring). ``update()``
    after each applied optimizer step; ``model`` is the averaged copy (same class, same device,
    float32 like the weights), for scoring; :meth:`copy_into` puts its weights into the model
    being trained (its parameters keep their identity: the optimizer still holds them).

    ``state`` (a run's trainer state) carries the average into checkpoints, so that a resumed
    run goes on with it exactly: its ``average`` and ``average_steps``, when set (a checkpoint
    restored), are loaded; then ``state.average`` holds the live averaged tensors and
    ``state.average_steps`` follows every update. Raises ValueError for a decay outside [0, 1)
    or a stored average whose tensors do not match the model's parameters."""

    def __init__(self, model: CharRNN, decay: float, state: TrainerState | None = None) -> None:
        average_weight(decay, 1)  # checks the decay
        self.decay = decay
        self._averaged = AveragedModel(model, multi_avg_fn=self._lerp, use_buffers=False)
        self._averaged.eval()
        self.state = state
        if state is None:
            return
        if state.average is not None and state.average_steps > 0:
            self._load(state.average, state.average_steps)
        state.average = [p.detach() for p in self.model.parameters()]
        state.average_steps = self.steps

    @classmethod
    def for_run(
        cls, model: CharRNN, config: TrainConfig, state: TrainerState, validates: bool
    ) -> WeightAverage | None:
        """The average a run keeps (``config.ema_decay``), or None: averaging off, or no
        validation text to tell whether the average is better (``validates``)."""
        if config.ema_decay <= 0 or not validates:
            return None
        return cls(model, config.ema_decay, state)

    @property
    def steps(self) -> int:
        """Updates folded in so far (AveragedModel's own count)."""
        return int(self._averaged.n_averaged)

    @property
    def model(self) -> CharRNN:
        """The averaged copy (a :class:`CharRNN` like the trained model)."""
        return cast(CharRNN, self._averaged.module)

    @torch.no_grad()
    def _load(self, tensors: Sequence[torch.Tensor], steps: int) -> None:
        params = list(self.model.parameters())
        shapes = [tuple(t.shape) for t in tensors]
        if shapes != [tuple(p.shape) for p in params]:
            raise ValueError(f"the stored weights' average has tensors of shapes {shapes}")
        for p, t in zip(params, tensors, strict=True):
            p.copy_(t)
        self._averaged.n_averaged.fill_(steps)

    def _lerp(
        self,
        averaged: Sequence[torch.Tensor],
        current: Sequence[torch.Tensor],
        n: torch.Tensor | int,
    ) -> None:
        w = average_weight(self.decay, int(n) + 1)  # n: the updates before this one
        for a, p in zip(averaged, current, strict=True):
            a.lerp_(p.detach(), w)

    def update(self, model: torch.nn.Module) -> None:
        """Fold ``model``'s current parameters into the average (the first update copies)."""
        self._averaged.update_parameters(model)
        if self.state is not None:
            self.state.average_steps = self.steps

    @torch.no_grad()
    def copy_into(self, model: torch.nn.Module) -> None:
        """Overwrite ``model``'s parameters with the average, in place."""
        for p, a in zip(model.parameters(), self.model.parameters(), strict=True):
            p.copy_(a)
