"""Measurements of the machine that the default rules (:mod:`charrnn.run.defaults`) decide from.

A probe runs a few real forward and backward passes of the run's own model and reports what
it measured; it leaves the model's weights, gradients, the random-number state and the thread
count as they were.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..model.rnn import CharRNN

# The precisions a probe can time, as autocast dtypes (None: plain fp32).
PROBE_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}


def _pass_seconds(model: CharRNN, x: torch.Tensor, dtype: torch.dtype | None) -> float:
    """Seconds of one forward + backward pass on ids ``x`` (B, T+1) under autocast to ``dtype``
    (None: fp32). The caller clears the gradients it leaves."""
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        logits, _ = model(x[:, :-1])  # (B, T, V)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
    loss.backward()
    return time.perf_counter() - t0


def _probing(model: CharRNN) -> Any:
    """Run a probe with the model in training mode, leaving gradients, mode, RNG state and the
    thread count unchanged."""

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        rng, was_training, threads = torch.get_rng_state(), model.training, torch.get_num_threads()
        model.train()
        try:
            yield
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
            torch.set_rng_state(rng)
            torch.set_num_threads(threads)

    return scope()


@dataclass(frozen=True)
class StepTimes:
    """What :func:`probe_steps` measured: the fastest forward + backward pass (seconds) of a
    training step for each (CPU threads, precision) it tried."""

    seconds: dict[tuple[int, str], float]

    def fastest(self, precision: str) -> tuple[int, float]:
        """The thread count that runs ``precision`` fastest, and that time (KeyError: the
        precision was not timed)."""
        timed = [(s, n) for (n, p), s in self.seconds.items() if p == precision]
        if not timed:
            raise KeyError(precision)
        s, n = min(timed)
        return n, s

    def bf16_speedup(self) -> float | None:
        """The fastest fp32 time over the fastest bf16 time (None: not both timed)."""
        try:
            return self.fastest("fp32")[1] / self.fastest("bf16")[1]
        except KeyError:
            return None


def probe_steps(
    model: CharRNN,
    batch: int,
    seq_len: int,
    threads: Sequence[int],
    precisions: Sequence[str],
    rounds: int = 2,
) -> StepTimes:
    """Time forward + backward passes of ``model`` (on the CPU) on ``batch`` x ``seq_len``
    random ids for every combination of a thread count in ``threads`` and a precision in
    ``precisions`` (keys of PROBE_DTYPES).

    After one warm-up pass each (two for bf16, whose first passes are slow while oneDNN
    prepares its kernels), the combinations are timed in turn, ``rounds`` times, and the
    fastest pass of each counts, so that a busy spell on a shared machine falls on all of them.
    Weights, gradients, mode, RNG state and thread count are left as they were. On a busy
    machine, threads that must wait for a core can make an RNN step several times slower than
    one thread does; a single noisy pass must not decide that."""
    combos = [(n, p) for n in threads for p in precisions]
    best = dict.fromkeys(combos, float("inf"))
    with _probing(model):
        x = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1))
        for n, p in combos:  # warm-up
            torch.set_num_threads(n)
            for _ in range(2 if p == "bf16" else 1):
                _pass_seconds(model, x, PROBE_DTYPES[p])
        for _ in range(rounds):
            for n, p in combos:
                torch.set_num_threads(n)
                best[(n, p)] = min(best[(n, p)], _pass_seconds(model, x, PROBE_DTYPES[p]))
                model.zero_grad(set_to_none=True)
    return StepTimes(best)


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 autocast
    is emulated and slower than fp32."""
    cpu: Any = torch.cpu
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these checks: assume none
        return False


@dataclass(frozen=True)
class MachineFit:
    """What :meth:`Run.fit_to_machine` measured and chose."""

    threads: int | None  # CPU threads chosen by the probe (None: not probed)
    candidates: tuple[int, ...]  # what the probe compared
    notices: tuple[str, ...]  # choices to tell the user about
    bf16_speedup: float | None = None  # fp32 / bf16 step time, where the precision was probed
