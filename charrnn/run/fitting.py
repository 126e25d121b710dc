"""Fitting a new run to the machine it trains on: what the probes measure
(:mod:`charrnn.run.probes`), put through the default rules (:mod:`charrnn.run.defaults`).

These choices are made here, each only where the user left it to charrnn: the CPU thread count
(the faster of one thread and all cores), the precision on a CPU with native bf16 (bf16
autocast where a training step is measured clearly faster than in fp32), and for a run expected
to pass over its corpus many times a larger, more regularised model (when it still makes enough
steps) or else more dropout. :meth:`charrnn.run.session.Run.fit_to_machine` calls
:func:`fit_to_machine` once, before the first step.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from ..model.rnn import CharRNN
from ..training.events import Evaluated, Event, Stepped
from . import defaults
from .probes import PROBE_DTYPES, MachineFit, native_bf16, probe_steps

if TYPE_CHECKING:
    from .session import Run

__all__ = ["LoadWatch", "fit_dropout_to_length", "fit_model_to_length", "fit_to_machine"]


def fit_to_machine(run: Run, threads: int | None = None) -> MachineFit:
    """Apply the machine-dependent defaults to ``run``: the CPU thread count (probed when
    ``threads`` is None on a CPU with several cores), the precision of a new run on a CPU with
    native bf16 whose ``--precision`` was left out (probed: :func:`defaults.cpu_precision`),
    and, for a new run expected to pass over its corpus many times, the larger model of
    :func:`fit_model_to_length` (model left to the defaults) or else more dropout (dropout left
    to the defaults: :func:`fit_dropout_to_length`). Single-process runs only (with torchrun
    every rank must choose alike). Changes ``run.train_config``, the model (or its dropout),
    the run folder's name and ``run.notices``."""
    device = next(run.model.parameters()).device
    solo = device.type == "cpu" and not run.dist.enabled
    cores = torch.get_num_threads()
    candidates = defaults.thread_candidates(cores)
    tc = run.train_config
    chosen, step_seconds, speedup, notices = None, float("inf"), None, []
    counts = candidates if threads is None and cores > 1 else [torch.get_num_threads()]
    precisions = [tc.precision if tc.precision in PROBE_DTYPES else "fp32"]
    if run.request.precision is None and not run.resumed and native_bf16():
        precisions = ["fp32", "bf16"]
    if solo and len(counts) * len(precisions) > 1:
        times = probe_steps(run.model, tc.batch_size, tc.seq_len, counts, precisions)
        speedup = times.bf16_speedup()
        timed = precisions[0]
        if speedup is not None:
            timed = defaults.cpu_precision(speedup)
            run.train_config = replace(tc, precision=timed)
        n, step_seconds = times.fastest(timed)
        torch.set_num_threads(n)
        chosen = n if len(counts) > 1 else None
    if not run.dist.enabled:
        notice = fit_model_to_length(run, step_seconds)
        if notice is None and run.request.dropout is None:
            notice = fit_dropout_to_length(run, step_seconds)
        if notice:
            notices.append(notice)
    if chosen is not None:  # watch for a change of load, and choose again
        tc = run.train_config
        run.load_watch = LoadWatch(run.model, tc.batch_size, tc.seq_len, counts, tc.precision)
    run.notices.extend(notices)
    return MachineFit(chosen, tuple(candidates), tuple(notices), speedup)


MODEL_OPTIONS = ("cell", "layers", "hidden", "embed_dim", "dropout", "tie_weights", "init_from")


def fit_model_to_length(run: Run, step_seconds: float) -> str | None:
    """Give a new run whose model was left to the defaults (no option of MODEL_OPTIONS given)
    the larger model of :func:`defaults.long_run_model` when the default one
    (``step_seconds`` a step, inf: unknown) would pass over the corpus many times and the
    larger one, timed here on a CPU, still makes enough steps; returns a notice when it does."""
    req = run.request
    if run.resumed or any(getattr(req, name) is not None for name in MODEL_OPTIONS):
        return None
    n_train = int(run.corpus.train_ids.numel())
    tc = run.train_config
    epochs = defaults.expected_epochs(tc, n_train, step_seconds)
    mc = defaults.long_run_model(run.model.config, n_train, epochs)
    if mc is None or epochs is None:
        return None
    device = next(run.model.parameters()).device
    with torch.random.fork_rng(devices=[]):  # a run that keeps its model draws as before
        torch.manual_seed(tc.seed)  # the weights the run would start from had it asked for mc
        model = CharRNN(mc).to(device)
    seconds = float("inf")
    if device.type == "cpu" and tc.precision in PROBE_DTYPES:
        n = torch.get_num_threads()
        seconds_of = probe_steps(model, tc.batch_size, tc.seq_len, [n], [tc.precision])
        seconds = seconds_of.fastest(tc.precision)[1]
    steps = defaults.expected_steps(tc, n_train, seconds)
    if not defaults.long_run_model_fits(steps):
        return None
    lr = req.lr or defaults.learning_rate(mc.cell)
    wd = defaults.LONG_MODEL_WEIGHT_DECAY if req.weight_decay is None else req.weight_decay
    run.train_config = replace(tc, lr=lr, weight_decay=wd)
    run.replace_model(model)
    return (
        f"about {epochs:.0f} passes over the corpus expected: training a larger "
        f"{mc.cell.upper()} {mc.layers}x{mc.hidden} with dropout {mc.dropout:g} and weight decay "
        f"{wd:g} instead (about {steps:,.0f} steps)"
    )


def fit_dropout_to_length(run: Run, step_seconds: float) -> str | None:
    """Give a new run that will pass over its corpus many times the dropout of
    :func:`defaults.long_run_dropout` (for a run whose dropout the user left to the defaults);
    returns a notice when it does."""
    if run.resumed:
        return None
    n_train = int(run.corpus.train_ids.numel())
    epochs = defaults.expected_epochs(run.train_config, n_train, step_seconds)
    p = defaults.long_run_dropout(run.model.config.dropout, epochs)
    if p is None:
        return None
    run.model.set_dropout(p)
    return f"about {epochs:.0f} passes over the corpus expected: dropout {p:g}"


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
