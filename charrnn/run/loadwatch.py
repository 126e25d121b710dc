"""Re-measuring the CPU thread count when the machine's load changes mid-run: a training
callback that the session adds when the plan chose the thread count (:mod:`charrnn.run.plan`)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import torch

from ..model.rnn import CharRNN
from ..training.events import Evaluated, Event, Stepped
from .probes import probe_steps

__all__ = ["LoadWatch"]


class LoadWatch:
    """Re-measure the CPU thread count when the speed of training changes mid-run (another
    program starts or stops keeping the cores busy): a training callback.

    Step times come from consecutive :class:`~charrnn.training.events.Stepped` events (a step that
    follows an evaluation, a save or a probe is not counted). The median of the first
    ``window`` steps after a probe is the reference; each later block of ``window`` steps
    whose median is ``change`` times slower or faster than the reference means the load has
    changed, so the thread candidates are timed again (:func:`probe_steps`, the run's
    precision, about a second) and the fastest is kept. Measured: with one of 2 cores kept
    busy, a 2-thread step of the default GRU took several times as long as a 1-thread one.
    """

    def __init__(
        self,
        model: CharRNN,
        batch: int,
        seq_len: int,
        candidates: Sequence[int],
        precision: str,
        window: int = 20,
        change: float = 1.5,
    ) -> None:
        self.model, self.batch, self.seq_len = model, batch, seq_len
        self.candidates, self.precision = list(candidates), precision
        self.window, self.change = window, change
        self.reference: float | None = None  # median step seconds since the last probe
        self.recent: list[float] = []
        self.last: float | None = None  # Stepped.elapsed of the previous step
        self.report: Callable[[str], None] | None = None  # where to say what changed
        self.probes: list[tuple[int, int]] = []  # (step, threads chosen) of each re-probe

    def __call__(self, event: Event) -> None:
        if not isinstance(event, Stepped):
            if isinstance(event, Evaluated):
                self.last = None
            return
        if self.last is not None:
            self.recent.append(event.elapsed - self.last)
        self.last = event.elapsed
        if len(self.recent) < self.window:
            return
        now, self.recent = statistics.median(self.recent), []
        if self.reference is None:
            self.reference = now
        elif max(now / self.reference, self.reference / now) >= self.change:
            self._reprobe(event.step, now / self.reference)

    def _reprobe(self, step: int, ratio: float) -> None:
        before = torch.get_num_threads()
        times = probe_steps(self.model, self.batch, self.seq_len, self.candidates, [self.precision])
        threads, _ = times.fastest(self.precision)
        torch.set_num_threads(threads)
        self.probes.append((step, threads))
        self.reference, self.last = None, None
        if self.report is not None:
            how = "slower" if ratio > 1 else "faster"
            self.report(
                f"step {step}: steps ran {max(ratio, 1 / ratio):.1f}x {how} (the machine's "
                f"load changed); threads measured again: {threads} (was {before})"
            )
