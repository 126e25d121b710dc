"""The load watch (charrnn/run/loadwatch.py): from the times between steps it decides when the
machine's load has changed and the thread count must be measured again. Timings are fed by
hand and the probe is replaced, so every decision is exact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch

from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.run import loadwatch
from charrnn.run.loadwatch import LoadWatch
from charrnn.run.probes import StepTimes
from charrnn.training.events import Evaluated, Finished, Skipped, Started, Stepped
from charrnn.units import Score

MODEL = CharRNN(ModelConfig(vocab_size=8, hidden=4, embed_dim=4, layers=1))


class Machine:
    """The fake probe and thread setting: what a re-probe would measure and what it set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fastest: int = 1, threads: int = 2):
        self.fastest, self.threads = fastest, threads
        self.calls: list[tuple[Any, ...]] = []
        monkeypatch.setattr(loadwatch, "probe_steps", self.probe)
        monkeypatch.setattr(torch, "get_num_threads", lambda: self.threads)
        monkeypatch.setattr(torch, "set_num_threads", self.set_threads)

    def probe(
        self, model: CharRNN, batch: int, seq_len: int, threads: Sequence[int], precs: list[str]
    ) -> StepTimes:
        self.calls.append((model, batch, seq_len, list(threads), precs))
        return StepTimes(
            {(n, p): (0.1 if n == self.fastest else 0.3) for n in threads for p in precs}
        )

    def set_threads(self, n: int) -> None:
        self.threads = n


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Machine:
    return Machine(monkeypatch)


def _watch(window: int = 4, change: float = 1.5, precision: str = "fp32") -> LoadWatch:
    return LoadWatch(MODEL, 8, 16, [1, 2], precision, window=window, change=change)


class Feeder:
    """Steps whose ``elapsed`` grows by the given intervals."""

    def __init__(self, watch: LoadWatch) -> None:
        self.watch, self.step, self.t = watch, 0, 0.0

    def steps(self, *intervals: float) -> None:
        for dt in intervals:
            self.step += 1
            self.t += dt
            self.watch(Stepped(self.step, 0.0, 2.0, 1e-3, 100.0, self.t, 0.0, 2.0))

    def evaluation(self, seconds: float) -> None:
        self.watch(Evaluated(self.step, 0.0, Score(10, 10, 20.0), 2.0, True, False))
        self.t += seconds


def test_the_first_window_after_the_start_is_the_reference(machine: Machine) -> None:
    w = _watch(window=4)
    f = Feeder(w)
    f.steps(0.1)  # the first step has no step before it: no interval
    assert w.recent == [] and w.reference is None
    f.steps(0.1, 0.2, 0.3, 0.4)
    assert w.reference == pytest.approx(0.25)  # the median of the 4 intervals
    assert w.recent == [] and machine.calls == []


def test_a_steady_speed_never_probes(machine: Machine) -> None:
    w = _watch(window=4)
    f = Feeder(w)
    f.steps(*[0.1] * 41)
    assert machine.calls == [] and w.probes == []


@pytest.mark.parametrize(("later", "how", "ratio"), [(0.2, "slower", 2.0), (0.05, "faster", 2.0)])
def test_a_window_change_times_slower_or_faster_probes_again(
    machine: Machine, later: float, how: str, ratio: float
) -> None:
    w = _watch(window=4, change=1.5)
    notes: list[str] = []
    w.report = notes.append
    f = Feeder(w)
    f.steps(*[0.1] * 5)  # step 1, then the reference window (steps 2-5)
    f.steps(*[later] * 4)  # steps 6-9: the next window
    assert machine.calls == [(MODEL, 8, 16, [1, 2], ["fp32"])]
    assert w.probes == [(9, 1)]  # the step it happened at, the threads chosen
    assert machine.threads == 1
    assert notes == [
        f"step 9: steps ran {ratio:.1f}x {how} (the machine's load changed); threads measured "
        "again: 1 (was 2)"
    ]


def test_a_change_under_the_threshold_is_not_a_load_change(machine: Machine) -> None:
    w = _watch(window=4, change=1.5)
    f = Feeder(w)
    f.steps(*[0.1] * 5)
    f.steps(*[0.14] * 4, *[0.07] * 4)  # 1.4x slower, then 1.43x faster: noise
    assert machine.calls == []
    assert w.reference == pytest.approx(0.1)  # the reference stays until a probe


def test_one_slow_step_in_a_window_is_not_a_load_change(machine: Machine) -> None:
    """The median decides: a save or a hiccup in one step does not trigger a probe."""
    w = _watch(window=5)
    f = Feeder(w)
    f.steps(*[0.1] * 6)
    f.steps(0.1, 0.1, 5.0, 0.1, 0.1)
    assert machine.calls == []


def test_the_gap_over_an_evaluation_is_not_a_step_time(machine: Machine) -> None:
    w = _watch(window=4)
    f = Feeder(w)
    f.steps(*[0.1] * 5)
    f.steps(0.1)
    f.evaluation(30.0)  # half a minute of validation between two steps
    f.steps(0.2, 0.2)  # the first step after it has no interval that counts
    assert w.recent == pytest.approx([0.1, 0.2])
    f.evaluation(30.0)
    f.steps(0.1, 0.1, 0.1)  # the window closes on [0.1, 0.2, 0.1, 0.1]: no change
    assert w.recent == [] and machine.calls == []


def test_after_a_probe_a_new_reference_is_taken(machine: Machine) -> None:
    w = _watch(window=4)
    f = Feeder(w)
    f.steps(*[0.1] * 5, *[0.3] * 4)  # slower: probe at step 9
    assert len(machine.calls) == 1 and w.reference is None and w.last is None
    f.steps(*[0.3] * 5)  # the new normal: first a step with no interval, then the window
    assert w.reference == pytest.approx(0.3)
    f.steps(*[0.3] * 8)
    assert len(machine.calls) == 1  # steady at the new speed: no second probe
    f.steps(*[0.1] * 4)  # the other program ends: faster again
    assert len(machine.calls) == 2 and [s for s, _ in w.probes] == [9, 26]


def test_the_probe_keeps_the_fastest_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    machine = Machine(monkeypatch, fastest=2, threads=1)
    w = _watch(window=2, precision="bf16")
    f = Feeder(w)
    f.steps(0.1, 0.1, 0.1, 0.5, 0.5)
    assert machine.calls[0][-1] == ["bf16"]  # timed at the run's precision
    assert w.probes == [(5, 2)] and machine.threads == 2


def test_without_a_report_nothing_is_said_and_other_events_are_ignored(machine: Machine) -> None:
    w = _watch(window=2)
    for event in (Started(0, 10, 8, 16, 100, False), Skipped(1, "x"), Finished(1, "stopped")):
        w(event)
    assert w.last is None and w.recent == []
    f = Feeder(w)
    f.steps(0.1, 0.1, 0.1, 0.5, 0.5)
    assert w.probes == [(5, 1)]  # decided, with no report to tell
