"""Measurements of the machine that the default rules (:mod:`charrnn.defaults`) decide from.

A probe runs a few real training steps of the run's own model and reports what it measured;
it leaves the model's weights, gradients and the random-number state as they were.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import CharRNN


@dataclass(frozen=True)
class ThreadProbe:
    threads: int  # the fastest thread count, now set
    step_seconds: float  # a forward + backward pass with it (inf: not measured)


def probe_threads(
    model: CharRNN, batch: int, seq_len: int, candidates: Sequence[int]
) -> ThreadProbe:
    """The CPU thread count (among ``candidates``) that runs a training step of ``model`` fastest.

    A few forward/backward passes on random ids; nothing changes in the model (gradients are
    cleared) or in the random-number state. On a busy machine, threads that must wait for a core
    can make an RNN step several times slower than one thread does.
    """
    device = next(model.parameters()).device
    if device.type != "cpu" or len(candidates) < 2:
        return ThreadProbe(torch.get_num_threads(), float("inf"))
    rng = torch.get_rng_state()
    before = torch.get_num_threads()
    was_training = model.training
    model.train()
    x = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1))
    best, best_time = before, float("inf")
    try:
        for n in candidates:
            torch.set_num_threads(n)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                logits, _ = model(x[:, :-1])  # (B, T, V)
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
                loss.backward()
                times.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
            t = min(times[1:])  # the first pass warms caches up
            if t < best_time:
                best, best_time = n, t
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
    torch.set_num_threads(best)
    return ThreadProbe(best, best_time)


@dataclass(frozen=True)
class MachineFit:
    """What :meth:`Run.fit_to_machine` measured and chose."""

    threads: int | None  # CPU threads chosen by the probe (None: not probed)
    candidates: tuple[int, ...]  # what the probe compared
    notices: tuple[str, ...]  # choices to tell the user about
