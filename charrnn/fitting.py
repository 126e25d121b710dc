"""Fitting a new run to the machine it trains on: what the probes measure
(:mod:`charrnn.probes`), put through the default rules (:mod:`charrnn.defaults`).

Three choices are made here, each only where the user left it to charrnn: the CPU thread count
(the faster of one thread and all cores), the precision on a CPU with native bf16 (bf16
autocast where a training step is measured clearly faster than in fp32), and more dropout for
a run expected to pass over its corpus many times. :meth:`charrnn.runs.Run.fit_to_machine`
calls :func:`fit_to_machine` once, before the first step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from . import defaults
from .probes import PROBE_DTYPES, MachineFit, native_bf16, probe_steps

if TYPE_CHECKING:
    from .runs import Run

__all__ = ["fit_dropout_to_length", "fit_to_machine"]


def fit_to_machine(run: Run, threads: int | None = None) -> MachineFit:
    """Apply the machine-dependent defaults to ``run``: the CPU thread count (probed when
    ``threads`` is None on a CPU with several cores), the precision of a new run on a CPU with
    native bf16 whose ``--precision`` was left out (probed: :func:`defaults.cpu_precision`),
    and, for a new run whose dropout was left to the defaults, dropout for a run expected to
    pass over its corpus many times. Single-process runs only (with torchrun every rank must
    choose alike). Changes ``run.train_config``, the model's dropout and ``run.notices``."""
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
    if run.request.dropout is None and not run.dist.enabled:
        notice = fit_dropout_to_length(run, step_seconds)
        if notice:
            notices.append(notice)
    run.notices.extend(notices)
    return MachineFit(chosen, tuple(candidates), tuple(notices), speedup)


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
