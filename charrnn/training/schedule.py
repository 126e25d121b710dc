"""The learning-rate schedule and the run's progress, from the config and the trainer state.

Progress is the fraction of the run done: the furthest of steps, epochs and time towards their
limits (the first limit reached ends the run). The learning rate over progress p::

    lr |     ______
       |    /      ``--.._                      cosine: lr * (f + (1 - f) * (1 + cos(pi p)) / 2)
       |   /              ``-._                 f = min_lr_ratio (0.1): the floor at p = 1
       |  /                    ``-.__________   plateau: lr halved after 2 validations without
       | / warm-up (linear, steps)               a new best; constant: lr
       +--------------------------------------> p
       0                                      1

A time limit counts from the start of each session (``charrnn train --resume`` gets a new
budget); a session that resumes an interrupted run continues the cosine from where it stopped,
and one that resumes a finished run (one whose last session ended at a limit: a time-limited
session ends a little short of p = 1, for it keeps time for its final validation) starts a new
cycle. :func:`record_validation` updates the trainer state it is given; the other functions only
read theirs.
"""

from __future__ import annotations

import math

from .config import TrainConfig, TrainerState

PLATEAU_PATIENCE = 2  # validations without a new best before the plateau schedule halves lr


def session_start(progress: float, finished: bool = False) -> float:
    """Where the time part of progress starts in a new session: where the last one ended, or 0
    for a run that had finished (a new cosine cycle)."""
    return 0.0 if finished else progress


def progress(
    c: TrainConfig, s: TrainerState, steps_per_epoch: int, session_elapsed: float, p0: float
) -> float:
    """Fraction of the run done, 0..1 (nan: no limit); ``p0``: :func:`session_start`."""
    fractions = []
    if c.max_steps:
        fractions.append(s.step / c.max_steps)
    if c.max_epochs:
        fractions.append((s.epoch + s.window / steps_per_epoch) / c.max_epochs)
    if c.max_time:
        fractions.append(p0 + (1.0 - p0) * session_elapsed / c.max_time)
    return min(1.0, max(fractions)) if fractions else float("nan")


def learning_rate(c: TrainConfig, s: TrainerState, p: float) -> float:
    """The learning rate of the next step at progress ``p`` (see the module docstring)."""
    lr = c.lr
    if c.warmup_steps and s.step < c.warmup_steps:
        lr *= (s.step + 1) / c.warmup_steps
    if c.schedule == "cosine" and not math.isnan(p):
        floor = c.min_lr_ratio
        lr *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    elif c.schedule == "plateau":
        lr *= s.plateau_scale
    return lr


def record_validation(c: TrainConfig, s: TrainerState, loss: float) -> bool:
    """Update the best-so-far, the plateau counters and the validations without a new best
    (``bad_evals``, for patience) in ``s`` with a validation loss (nats/token); True when it is
    a new best."""
    is_best = math.isfinite(loss) and (s.best_val is None or loss < s.best_val)
    s.bad_evals = 0 if is_best else s.bad_evals + 1
    if is_best:
        s.best_val, s.best_step, s.plateau_bad = loss, s.step, 0
    elif c.schedule == "plateau":
        s.plateau_bad += 1
        if s.plateau_bad >= PLATEAU_PATIENCE:
            s.plateau_scale *= 0.5
            s.plateau_bad = 0
    s.last_val = loss
    return is_best


def stop_reason(
    c: TrainConfig, s: TrainerState, epochs: float, out_of_time: bool, stop: bool
) -> str | None:
    """Why a run stops before its next step (a Finished.reason), or None: ``epochs``
    is the passes done, ``out_of_time`` whether the time budget is spent, ``stop`` whether it
    was asked to stop. ``patience``: the last ``c.patience`` validations in a row brought no new
    best (a limit reached at the same step is named instead: the run would have ended anyway)."""
    if c.max_steps is not None and s.step >= c.max_steps:
        return "max_steps"
    if c.max_epochs is not None and epochs >= c.max_epochs:
        return "max_epochs"
    if c.patience and s.bad_evals >= c.patience:
        return "patience"
    if out_of_time:
        return "max_time"
    if stop:
        return "stopped"
    return None
