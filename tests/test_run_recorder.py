"""What a run writes to metrics.jsonl (charrnn/run/recorder.py): training events in, records
out, step records every ``metrics_every`` steps, figures per character where the tokenizer's
tokens are not characters."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from charrnn.run.recorder import MetricsRecorder, metrics_every
from charrnn.store.metrics import METRICS, MetricsLog, read_metrics
from charrnn.training.events import Evaluated, Finished, Skipped, Started, Stepped
from charrnn.units import LN2, Score


@pytest.mark.parametrize(
    ("eval_every", "every"), [(200, 20), (25, 2), (19, 1), (10, 1), (5, 1), (1, 1), (0, 20)]
)
def test_about_ten_step_records_per_evaluation_interval(eval_every: int, every: int) -> None:
    assert metrics_every(eval_every) == every


def _stepped(step: int, **kw: float) -> Stepped:
    base = dict(epoch=step / 10, loss=2.0, lr=1e-3, tokens_per_sec=1000.0, elapsed=step * 0.1)
    base.update(progress=step / 100, loss_per_char=1.0)
    base.update(kw)
    return Stepped(step=step, **base)


class Clock:
    """Seconds of training and characters seen, as the run would tell them."""

    def __init__(self) -> None:
        self.now = (0.0, 0)

    def __call__(self) -> tuple[float, int]:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_started_is_a_start_record(tmp_path: Path, clock: Clock) -> None:
    rec = MetricsRecorder(MetricsLog(tmp_path), every=5, clock=clock)
    clock.now = (12.5, 4096)
    r = rec.record(
        Started(40, steps_per_epoch=9, batch_size=4, seq_len=8, parameters=321, resumed=True)
    )
    assert r == {
        "event": "start", "step": 40, "time": 12.5, "chars": 4096, "resumed": True,
        "parameters": 321,
    }  # fmt: skip


def test_only_every_nth_step_is_written_but_each_is_remembered(
    tmp_path: Path, clock: Clock
) -> None:
    rec = MetricsRecorder(MetricsLog(tmp_path), every=5, clock=clock)
    written = [s for s in range(1, 16) if rec.record(_stepped(s)) is not None]
    assert written == [5, 10, 15]
    assert rec.last_step is not None and rec.last_step.step == 15


def test_a_step_record_gives_bits_per_char_and_characters_per_second(
    tmp_path: Path, clock: Clock
) -> None:
    """A subword run: 2.5 characters a token, the loss per char already converted."""
    rec = MetricsRecorder(MetricsLog(tmp_path), every=1, clock=clock, chars_per_token=2.5)
    clock.now = (3.25, 10_000)
    r = rec.record(_stepped(7, loss=2.0, loss_per_char=0.8, tokens_per_sec=400.4, lr=3.0e-3))
    assert r is not None
    assert r["event"] == "step" and r["step"] == 7 and r["time"] == 3.25 and r["chars"] == 10_000
    assert r["epoch"] == 0.7 and r["lr"] == 3.0e-3
    assert r["train_loss"] == 2.0  # nats per token, as the optimizer sees it
    assert r["train_bits_per_char"] == pytest.approx(0.8 / LN2, rel=1e-5)
    assert r["chars_per_sec"] == 1001  # tokens/s x chars/token, rounded


def test_figures_keep_six_significant_digits(tmp_path: Path, clock: Clock) -> None:
    rec = MetricsRecorder(MetricsLog(tmp_path), every=1, clock=clock)
    clock.now = (1.0 / 3.0, 0)
    r = rec.record(_stepped(1, loss=math.pi, lr=1.23456789e-4))
    assert r is not None
    assert r["train_loss"] == 3.14159 and r["lr"] == 1.23457e-4 and r["time"] == 0.333333


def test_an_evaluation_carries_the_last_steps_rate_and_lr(tmp_path: Path, clock: Clock) -> None:
    rec = MetricsRecorder(MetricsLog(tmp_path), every=100, clock=clock)
    rec.record(_stepped(9, lr=5e-4, tokens_per_sec=250.0))  # not written, but remembered
    val = Score(tokens=200, chars=200, nats=300.0)
    r = rec.record(Evaluated(9, 0.9, val, train_loss=1.6, is_best=True, final=False,
                             train_loss_per_char=0.64))  # fmt: skip
    assert r is not None
    assert r["event"] == "eval" and r["step"] == 9 and r["best"] is True
    assert r["val_loss"] == 1.5 and r["val_bits_per_char"] == pytest.approx(1.5 / LN2, rel=1e-5)
    assert r["train_loss"] == 1.6  # per token; bits per char from the per-char loss
    assert r["train_bits_per_char"] == pytest.approx(0.64 / LN2, rel=1e-5)
    assert r["lr"] == 5e-4 and r["chars_per_sec"] == 250


def test_an_evaluation_before_any_step_has_no_rate(tmp_path: Path, clock: Clock) -> None:
    """A resumed session validating at once: no step of its own yet."""
    rec = MetricsRecorder(MetricsLog(tmp_path), every=1, clock=clock)
    val = Score(tokens=10, chars=25, nats=20.0)  # subword: per char differs from per token
    r = rec.record(Evaluated(0, 0.0, val, train_loss=None, is_best=False, final=True))
    assert r is not None
    assert r["lr"] is None and r["chars_per_sec"] is None
    assert r["train_loss"] is None and r["train_bits_per_char"] is None
    assert r["val_loss"] == 2.0 and r["val_bits_per_char"] == pytest.approx(0.8 / LN2, rel=1e-5)
    assert r["best"] is False


def test_finished_is_an_end_record_and_skipped_writes_nothing(tmp_path: Path, clock: Clock) -> None:
    rec = MetricsRecorder(MetricsLog(tmp_path), every=1, clock=clock)
    assert rec.record(Skipped(3, "non-finite loss")) is None
    clock.now = (9.0, 640)
    assert rec.record(Finished(12, "patience")) == {
        "event": "end", "step": 12, "time": 9.0, "chars": 640, "reason": "patience",
    }  # fmt: skip


def test_a_session_of_events_becomes_metrics_jsonl(tmp_path: Path, clock: Clock) -> None:
    log = MetricsLog(tmp_path)
    rec = MetricsRecorder(log, every=metrics_every(4), clock=clock)  # every step
    before = time.time()
    rec(Started(0, 10, 4, 8, 100, False))
    for s in (1, 2, 3, 4):
        clock.now = (s * 0.5, s * 32)
        rec(_stepped(s))
    rec(Evaluated(4, 0.4, Score(64, 64, 128.0), 2.0, True, False, 2.0))
    rec(Skipped(5, "non-finite loss or gradient"))
    rec(Finished(4, "max_steps"))
    log.close()
    lines = (tmp_path / METRICS).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["event"] for r in records] == ["start", "step", "step", "step", "step", "eval", "end"]
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4, 4, 4]
    assert [r["chars"] for r in records] == [0, 32, 64, 96, 128, 128, 128]
    assert all(before - 1 <= r["wall"] <= time.time() + 1 for r in records)
    assert read_metrics(tmp_path) == records  # what runs and plot read back
