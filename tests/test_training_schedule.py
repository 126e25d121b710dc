"""The learning-rate schedule and the run's progress (charrnn/training/schedule.py): warm-up,
the cosine, plateau and constant shapes, best-so-far and patience, and why a run stops."""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import pytest

from charrnn.training.config import TrainConfig, TrainerState
from charrnn.training.schedule import (
    PLATEAU_PATIENCE,
    learning_rate,
    progress,
    record_validation,
    session_start,
    stop_reason,
)

LR = 1e-2


def _lr(step: int, p: float, **kw: object) -> float:
    tc = TrainConfig(lr=LR, **kw)  # type: ignore[arg-type]
    return learning_rate(tc, TrainerState(step=step), p)


# ----------------------------------------------------------------------------- learning rate


def test_warm_up_rises_linearly_to_the_peak() -> None:
    lrs = [_lr(step, 0.0, warmup_steps=4, schedule="constant") for step in range(6)]
    assert lrs == pytest.approx([LR / 4, LR / 2, 3 * LR / 4, LR, LR, LR])


def test_no_warm_up_starts_at_the_peak() -> None:
    assert _lr(0, 0.0, warmup_steps=0, schedule="constant") == LR


def test_cosine_falls_from_the_peak_to_its_floor() -> None:
    kw = dict(warmup_steps=0, schedule="cosine", min_lr_ratio=0.1)
    assert _lr(0, 0.0, **kw) == pytest.approx(LR)
    assert _lr(0, 0.5, **kw) == pytest.approx(LR * (0.1 + 0.9 * 0.5))
    assert _lr(0, 1.0, **kw) == pytest.approx(LR * 0.1)
    curve = [_lr(0, p / 20, **kw) for p in range(21)]
    assert all(a > b for a, b in pairwise(curve))  # strictly falling
    # The cosine's shape, not a straight line: slow at first, fastest in the middle.
    assert _lr(0, 0.0, **kw) - _lr(0, 0.25, **kw) < _lr(0, 0.25, **kw) - _lr(0, 0.5, **kw)


def test_cosine_with_a_zero_floor_ends_at_zero() -> None:
    assert _lr(0, 1.0, warmup_steps=0, min_lr_ratio=0.0) == pytest.approx(0.0, abs=1e-15)


def test_warm_up_and_cosine_multiply() -> None:
    assert _lr(1, 0.5, warmup_steps=4, min_lr_ratio=0.0) == pytest.approx(LR * 0.5 * 0.5)


def test_without_limits_cosine_stays_at_the_peak() -> None:
    assert _lr(100, float("nan"), warmup_steps=0, schedule="cosine") == LR


@pytest.mark.parametrize("p", [0.0, 0.7, 1.0, float("nan")])
def test_constant_ignores_progress(p: float) -> None:
    assert _lr(50, p, warmup_steps=10, schedule="constant") == LR


def test_plateau_scales_with_the_state_not_with_progress() -> None:
    tc = TrainConfig(lr=LR, warmup_steps=0, schedule="plateau")
    s = TrainerState(step=100, plateau_scale=0.25)
    assert learning_rate(tc, s, 0.0) == learning_rate(tc, s, 0.9) == pytest.approx(LR / 4)


# ----------------------------------------------------------------------------- validations


def test_record_validation_keeps_the_best_and_counts_the_rest() -> None:
    tc = TrainConfig(schedule="cosine")
    s = TrainerState()
    seen = []
    for step, loss in [(10, 2.0), (20, 1.5), (30, 1.7), (40, 1.5), (50, 1.2)]:
        s.step = step
        seen.append((record_validation(tc, s, loss), s.bad_evals))
    assert seen == [(True, 0), (True, 0), (False, 1), (False, 2), (True, 0)]  # a tie is no best
    assert (s.best_val, s.best_step, s.last_val) == (1.2, 50, 1.2)
    assert s.plateau_scale == 1.0  # only the plateau schedule lowers lr


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_validation_is_never_the_best(bad: float) -> None:
    tc = TrainConfig()
    s = TrainerState()
    assert not record_validation(tc, s, bad)
    assert s.best_val is None and s.bad_evals == 1
    assert s.last_val is not None and math.isnan(s.last_val) == math.isnan(bad)
    assert record_validation(tc, s, 3.0) and s.best_val == 3.0


def test_plateau_halves_the_rate_after_validations_without_a_new_best() -> None:
    tc = TrainConfig(schedule="plateau")
    s = TrainerState()
    record_validation(tc, s, 1.0)
    scales = []
    for _ in range(2 * PLATEAU_PATIENCE):
        record_validation(tc, s, 1.1)
        scales.append(s.plateau_scale)
    assert scales == [1.0] * (PLATEAU_PATIENCE - 1) + [0.5] * PLATEAU_PATIENCE + [0.25]
    record_validation(tc, s, 1.05)  # not better than 1.0: still counting
    assert s.plateau_bad == 1
    record_validation(tc, s, 0.9)  # a new best resets the count, keeps the lowered rate
    assert s.plateau_bad == 0 and s.plateau_scale == 0.25 and s.bad_evals == 0


# ----------------------------------------------------------------------------- stopping


def _stop(tc: TrainConfig, s: TrainerState, epochs: float = 0.0, time: bool = False,
          stop: bool = False) -> str | None:  # fmt: skip
    return stop_reason(tc, s, epochs, time, stop)


def test_each_limit_stops_the_run_with_its_reason() -> None:
    assert _stop(TrainConfig(max_steps=10), TrainerState(step=9)) is None
    assert _stop(TrainConfig(max_steps=10), TrainerState(step=10)) == "max_steps"
    assert _stop(TrainConfig(max_epochs=2.0), TrainerState(), epochs=1.99) is None
    assert _stop(TrainConfig(max_epochs=2.0), TrainerState(), epochs=2.0) == "max_epochs"
    assert _stop(TrainConfig(patience=3), TrainerState(bad_evals=2)) is None
    assert _stop(TrainConfig(patience=3), TrainerState(bad_evals=3)) == "patience"
    assert _stop(TrainConfig(), TrainerState(), time=True) == "max_time"
    assert _stop(TrainConfig(), TrainerState(), stop=True) == "stopped"
    assert _stop(TrainConfig(), TrainerState(step=10**6, bad_evals=99), epochs=99.0) is None


def test_a_limit_reached_at_the_same_step_is_named_before_patience_time_and_stop() -> None:
    s = TrainerState(step=10, bad_evals=5)
    tc = TrainConfig(max_steps=10, max_epochs=1.0, patience=2)
    assert _stop(tc, s, epochs=1.0, time=True, stop=True) == "max_steps"
    assert _stop(replace(tc, max_steps=None), s, epochs=1.0, time=True) == "max_epochs"
    assert _stop(replace(tc, max_steps=None), s, epochs=0.5, time=True) == "patience"
    assert _stop(TrainConfig(), s, time=True, stop=True) == "max_time"


def test_patience_without_validations_never_stops() -> None:
    assert _stop(TrainConfig(patience=1), TrainerState(step=500)) is None


# ----------------------------------------------------------------------------- progress


def test_progress_is_the_furthest_limit_and_stops_at_one() -> None:
    s = TrainerState(step=30, epoch=1, window=5)  # 1.5 epochs at 10 windows an epoch
    assert progress(TrainConfig(max_steps=100), s, 10, 0.0, 0.0) == pytest.approx(0.3)
    assert progress(TrainConfig(max_epochs=3.0), s, 10, 0.0, 0.0) == pytest.approx(0.5)
    assert progress(TrainConfig(max_time=60.0), s, 10, 15.0, 0.0) == pytest.approx(0.25)
    both = TrainConfig(max_steps=100, max_epochs=3.0, max_time=60.0)
    assert progress(both, s, 10, 15.0, 0.0) == pytest.approx(0.5)
    assert progress(TrainConfig(max_steps=20), s, 10, 0.0, 0.0) == 1.0
    assert math.isnan(progress(TrainConfig(), s, 10, 100.0, 0.0))


def test_a_resumed_session_continues_the_time_part_where_it_stopped() -> None:
    tc = TrainConfig(max_time=100.0)
    s = TrainerState()
    p0 = session_start(0.4)
    assert p0 == 0.4
    assert progress(tc, s, 10, 0.0, p0) == pytest.approx(0.4)
    assert progress(tc, s, 10, 50.0, p0) == pytest.approx(0.7)  # half the new budget
    assert progress(tc, s, 10, 100.0, p0) == pytest.approx(1.0)


def test_a_finished_run_resumed_starts_a_new_cycle() -> None:
    assert session_start(0.98, finished=True) == 0.0
    assert session_start(0.98, finished=False) == 0.98
