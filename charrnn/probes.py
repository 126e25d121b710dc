"""Measurements of the machine that the default rules (:mod:`charrnn.defaults`) decide from.

A probe runs a few real training steps of the run's own model and reports what it measured;
it leaves the model's weights, gradients and the random-number state as they were.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .model import CharRNN


@dataclass(frozen=True)
class ThreadProbe:
    threads: int  # the fastest thread count, now set
    step_seconds: float  # a forward + backward pass with it (inf: not measured)


def _step_seconds(model: CharRNN, x: torch.Tensor, dtype: torch.dtype | None, n: int = 3) -> float:
    """The fastest of ``n - 1`` timed forward + backward passes on ids ``x`` (B, T+1) under
    autocast to ``dtype`` (None: fp32); the first pass only warms up. Gradients are cleared."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits, _ = model(x[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        loss.backward()
        times.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return min(times[1:])


def _probing(model: CharRNN) -> Any:
    """Run a probe with the model in training mode, leaving gradients, mode and RNG unchanged."""

    @contextlib.contextmanager
    def scope() -> Iterator[None]:
        rng, was_training = torch.get_rng_state(), model.training
        model.train()
        try:
            yield
        finally:
            model.zero_grad(set_to_none=True)
            model.train(was_training)
            torch.set_rng_state(rng)

    return scope()


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
    before = torch.get_num_threads()
    best, best_time = before, float("inf")
    with _probing(model):
        x = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1))
        for n in candidates:
            torch.set_num_threads(n)
            t = _step_seconds(model, x, None)
            if t < best_time:
                best, best_time = n, t
    torch.set_num_threads(best)
    return ThreadProbe(best, best_time)


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX-512 BF16 or AMX); elsewhere bf16 autocast
    is emulated and slower than fp32."""
    cpu: Any = torch.cpu
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these checks: assume none
        return False


@dataclass(frozen=True)
class PrecisionProbe:
    fp32_seconds: float  # a forward + backward pass in fp32
    bf16_seconds: float | None  # the same under bf16 autocast (None: no native bf16, not tried)

    @property
    def speedup(self) -> float:
        """fp32 time / bf16 time (1.0 when bf16 was not measured)."""
        return self.fp32_seconds / self.bf16_seconds if self.bf16_seconds else 1.0


def probe_precision(model: CharRNN, batch: int, seq_len: int, rounds: int = 2) -> PrecisionProbe:
    """Time a training step of ``model`` (on the CPU, current thread count) in fp32 and, on a CPU
    with native bf16, under bf16 autocast. Changes nothing in the model or the RNG state.

    The two are timed in alternation, ``rounds`` times each after a warm-up of each (bf16's
    first passes are slow while oneDNN prepares its kernels), and the fastest pass of each
    counts, so that a busy spell on the machine falls on both."""
    with _probing(model):
        x = torch.randint(0, model.config.vocab_size, (batch, seq_len + 1))
        if not native_bf16():
            return PrecisionProbe(_step_seconds(model, x, None), None)
        _step_seconds(model, x, torch.bfloat16, 2)  # warm-up
        fp32, bf16 = float("inf"), float("inf")
        for _ in range(rounds):
            fp32 = min(fp32, _step_seconds(model, x, None, 2))
            bf16 = min(bf16, _step_seconds(model, x, torch.bfloat16, 2))
    return PrecisionProbe(fp32, bf16)


@dataclass(frozen=True)
class MachineFit:
    """What :meth:`Run.fit_to_machine` measured and chose."""

    threads: int | None  # CPU threads chosen by the probe (None: not probed)
    candidates: tuple[int, ...]  # what the probe compared
    notices: tuple[str, ...]  # choices to tell the user about
    bf16_speedup: float | None = None  # fp32 / bf16 step time, where the precision was probed
