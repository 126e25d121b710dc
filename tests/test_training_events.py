"""What the training loop reports (charrnn/training/events.py): plain frozen records, and the
order and content a real short Trainer run gives them in."""

from __future__ import annotations

import dataclasses
import math
import typing
from itertools import pairwise
from typing import Any

import pytest
import torch

from charrnn.model.rnn import CharRNN, Hidden, ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.events import Evaluated, Event, Finished, Skipped, Started, Stepped
from charrnn.training.loop import Trainer, WindowStep
from charrnn.units import Score

V = 10
IDS = torch.randint(0, V, (2000,), dtype=torch.int32, generator=torch.Generator().manual_seed(1))


def test_events_are_frozen_values() -> None:
    a = Finished(5, "max_steps")
    assert a == Finished(5, "max_steps") and a != Finished(5, "stopped")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.step = 6  # type: ignore[misc]
    assert hash(a) == hash(Finished(5, "max_steps"))  # usable as keys, safe to share
    assert set(typing.get_args(Event)) == {Started, Stepped, Evaluated, Skipped, Finished}


def test_events_hold_plain_data_only() -> None:
    """Standard library types (and Score, itself plain): callbacks may keep or log them."""
    for cls in typing.get_args(Event):
        for f in dataclasses.fields(cls):
            assert "Tensor" not in str(f.type), (cls.__name__, f.name)


def _trainer(events: list[Event], chars_per_token: float = 1.0, **kw: object) -> Trainer:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=V, cell="gru", layers=1, hidden=8, embed_dim=4))
    base: dict[str, object] = dict(batch_size=4, seq_len=8, max_steps=6, eval_every=3)
    base.update(warmup_steps=0, eval_streams=4)
    base.update(kw)
    tc = TrainConfig(**base)  # type: ignore[arg-type]
    return Trainer(model, IDS[:1600], IDS[1600:], tc, callbacks=[events.append],
                   chars_per_token=chars_per_token)  # fmt: skip


def test_a_run_reports_started_steps_evaluations_and_finished_in_order() -> None:
    events: list[Event] = []
    t = _trainer(events)
    t.run()
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Started", *["Stepped"] * 3, "Evaluated", *["Stepped"] * 3, "Evaluated",
                     "Finished"]  # fmt: skip

    started = events[0]
    assert started == Started(
        step=0, steps_per_epoch=t.steps_per_epoch, batch_size=4, seq_len=8,
        parameters=t.model.num_parameters(), resumed=False,
    )  # fmt: skip
    steps = [e for e in events if isinstance(e, Stepped)]
    assert [e.step for e in steps] == [1, 2, 3, 4, 5, 6]
    assert [e.progress for e in steps] == pytest.approx([i / 6 for i in range(1, 7)])
    assert all(a.elapsed <= b.elapsed for a, b in pairwise(steps))
    assert all(e.tokens_per_sec > 0 and math.isfinite(e.loss) for e in steps)
    assert [e.epoch for e in steps] == pytest.approx([i / t.steps_per_epoch for i in range(1, 7)])

    evals = [e for e in events if isinstance(e, Evaluated)]
    assert [e.step for e in evals] == [3, 6] and not any(e.final for e in evals)
    assert evals[0].is_best and evals[0].best is not None
    assert evals[0].best.nats_per_token == pytest.approx(evals[0].val.nats_per_token)
    assert evals[0].train_loss == steps[2].loss  # the running loss at that step
    assert isinstance(evals[1].val, Score) and evals[1].val.tokens > 0
    best = min(evals, key=lambda e: e.val.nats_per_token)
    assert evals[1].best is not None
    assert evals[1].best.nats_per_token == pytest.approx(best.val.nats_per_token)

    assert events[-1] == Finished(6, "max_steps")


def test_losses_per_character_follow_the_tokens_characters() -> None:
    events: list[Event] = []
    _trainer(events, chars_per_token=2.0, max_steps=3).run()
    steps = [e for e in events if isinstance(e, Stepped)]
    assert all(e.loss_per_char == pytest.approx(e.loss / 2.0) for e in steps)
    ev = next(e for e in events if isinstance(e, Evaluated))
    assert ev.train_loss is not None and ev.train_loss_per_char == pytest.approx(ev.train_loss / 2)


def test_a_last_step_between_evaluations_gets_a_final_one() -> None:
    events: list[Event] = []
    _trainer(events, max_steps=5, eval_every=3).run()
    evals = [(e.step, e.final) for e in events if isinstance(e, Evaluated)]
    assert evals == [(3, False), (5, True)]
    assert isinstance(events[-2], Evaluated) and events[-1] == Finished(5, "max_steps")


def test_a_stopped_run_finishes_without_a_final_evaluation() -> None:
    events: list[Event] = []
    t = _trainer(events, max_steps=50, eval_every=100)
    t.should_stop = lambda: t.state.step >= 2
    t.run()
    assert [type(e) for e in events] == [Started, Stepped, Stepped, Finished]
    assert events[-1] == Finished(2, "stopped")


def test_a_resumed_trainer_says_so_and_counts_on() -> None:
    events: list[Event] = []
    first = _trainer(events, max_steps=4, eval_every=2)
    first.run()
    more: list[Event] = []
    again = Trainer(
        first.model, IDS[:1600], IDS[1600:], dataclasses.replace(first.config, max_steps=6),
        callbacks=[more.append], state=first.state, optimizer=first.optimizer,
    )  # fmt: skip
    again.run()
    assert isinstance(more[0], Started) and more[0].resumed and more[0].step == 4
    assert [e.step for e in more if isinstance(e, Stepped)] == [5, 6]
    assert more[-1] == Finished(6, "max_steps")


class _OnceNaN:
    """The real window step, except that its ``bad``-th call reports a non-finite loss."""

    def __init__(self, real: WindowStep, bad: int) -> None:
        self.real, self.bad, self.calls = real, bad, 0
        self.scaler = real.scaler

    def __call__(self, x: torch.Tensor, y: torch.Tensor, hidden: Hidden | None) -> Any:
        self.calls += 1
        if self.calls == self.bad:
            return float("nan"), False, hidden
        return self.real(x, y, hidden)


def test_a_non_finite_step_is_skipped_with_its_reason() -> None:
    events: list[Event] = []
    t = _trainer(events, max_steps=3, eval_every=0)
    t.stepper = _OnceNaN(t.stepper, bad=2)  # type: ignore[assignment]
    t.run()
    skipped = [e for e in events if isinstance(e, Skipped)]
    assert skipped == [Skipped(1, "non-finite loss or gradient (loss nan)")]
    assert [type(e).__name__ for e in events][:4] == ["Started", "Stepped", "Skipped", "Stepped"]
    assert [e.step for e in events if isinstance(e, Stepped)] == [1, 2, 3]
