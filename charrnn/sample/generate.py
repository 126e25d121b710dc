"""Generating text one character at a time from a trained model.

``generate`` yields text pieces as they are produced (one per step), so callers can stream them.
Temperature 0 is greedy decoding; ``top_k`` keeps the k most likely characters and ``top_p``
the smallest set whose probability reaches p (nucleus sampling). ``<UNK>`` is never sampled.

:func:`engine` alone chooses how the text is computed. The "numpy" engine (float32 weights on
the CPU) runs the steps in :mod:`charrnn.sample.numpy_engine` (same logits, a fraction of the
overhead) and
needs NumPy only: a checkpoint read by :func:`charrnn.store.checkpoint.load_arrays` is sampled
without
importing torch. The "torch" engine (``fast=False`` or ``CHARRNN_ENGINE=torch``, and always for
other devices or dtypes) feeds the model one step at a time. Both draw the characters the same
way, by inverse CDF (:class:`FastPicker`) with a NumPy generator seeded from ``seed``, so for a
given seed the two engines print the same text (their logits agree to float32 rounding).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..device import cuda_possible
from ..model.arrays import ArrayModel, supports
from ..text.tokenizers import Tokenizer
from ..text.vocab import UNK_ID
from . import numpy_engine

if TYPE_CHECKING:
    import torch

    from ..model.rnn import CharRNN

Engine = Literal["numpy", "torch"]
ENGINE_ENV = "CHARRNN_ENGINE"  # "torch" forces the torch engine (tests, comparisons)


def engine(model: CharRNN | ArrayModel | str, fast: bool = True) -> Engine:
    """The engine that samples from ``model``; the one place where the choice is made.

    ``model`` is a loaded model, or the ``--device`` of one still to load (``auto``, ``cpu``,
    ``cuda[:N]``): then "numpy" means "read the checkpoint with NumPy, never import torch".
    "numpy" (:class:`numpy_engine.FastRNN` steps) when ``fast`` is true, ``$CHARRNN_ENGINE`` is not
    ``torch``, and the model is an :class:`ArrayModel` or has float32 weights on the CPU
    (:func:`charrnn.model.arrays.supports`), or the device is ``cpu``, or ``auto`` where no CUDA
    device can be present (:func:`charrnn.device.cuda_possible`); "torch" (the model's own
    forward, one step at a time) otherwise: on any other device, or with any other dtype (bf16,
    float64, ...).
    """
    if not fast or os.environ.get(ENGINE_ENV, "").strip().lower() == "torch":
        return "torch"
    if isinstance(model, str):
        spec = model.strip().lower()
        return "numpy" if spec == "cpu" or (spec == "auto" and not cuda_possible()) else "torch"
    return "numpy" if supports(model) else "torch"


GREEDY_BELOW = 1e-30  # temperatures below this are greedy decoding (see SampleConfig)


@dataclass(frozen=True)
class SampleConfig:
    length: int = 1000
    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.length < 0:
            raise ValueError("length must be >= 0")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError("temperature must be a finite number >= 0")
        if self.temperature < GREEDY_BELOW:
            # logits / T would overflow float32 (or T underflow to 0): as T -> 0 sampling
            # becomes greedy, so it is greedy, exactly, for every engine and stream count.
            object.__setattr__(self, "temperature", 0.0)
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:  # also refuses NaN
            raise ValueError("top_p must be in (0, 1]")


def next_token_probs(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Sampling distribution (B, V) from logits (B, V); never NaN for any temperature > 0.
    :func:`numpy_engine.next_token_probs_np` on tensors (computed on the CPU, returned there)."""
    import torch

    probs = numpy_engine.next_token_probs_np(
        logits.detach().float().cpu().numpy(), temperature, top_k, top_p
    )
    return torch.from_numpy(probs)


def _prime(vocab: Tokenizer, prime: str, rng: np.random.Generator) -> tuple[list[int], int, str]:
    """What both engines read before generating: the prime's tokens but the last, the last (the
    input of the first step), and the text that the output begins with."""
    ids = vocab.encode(prime)
    if ids:
        return ids[:-1], ids[-1], prime
    if "\n" in vocab:
        # Start as if at the beginning of a line; the newline itself is not output.
        return [], vocab.stoi["\n"], ""
    # No prime, no newline: a first token drawn by the training text's frequencies (with the
    # sampler's generator, before any step, the same way for both engines).
    counts = np.array(vocab.counts, dtype=np.float64)
    counts[UNK_ID] = 0
    if counts.sum() == 0:
        counts[1:] = 1
    cdf = np.cumsum(counts)
    first = int(cdf.searchsorted(rng.random() * cdf[-1], side="right"))
    return [], first, vocab.itos[first]


def generate(
    model: CharRNN | ArrayModel,
    vocab: Tokenizer,
    prime: str = "",
    config: SampleConfig | None = None,
    stop: str | None = None,
    fast: bool = True,
) -> Iterator[str]:
    """Yield the prime, then up to ``config.length`` generated characters one at a time.

    With ``stop``, generation ends where the generated text (not the prime) first contains it;
    the stop string itself is not yielded. ``fast=False`` uses the plain step-by-step path
    (see :func:`engine`).
    """
    cfg = config or SampleConfig()
    if engine(model, fast) == "numpy":
        chars = _generate_fast_one(model, vocab, prime, cfg)  # str pieces, no lists
        head = next(chars)
        rest: Iterator[str] = chars
    else:
        steps = _generate_plain(model, vocab, prime, cfg, batch=1)
        head = next(steps)[0]
        rest = (pieces[0] for pieces in steps)
    if head:
        yield head
    yield from stop_at(rest, stop) if stop else rest


def generate_many(
    model: CharRNN | ArrayModel,
    vocab: Tokenizer,
    n: int,
    prime: str = "",
    config: SampleConfig | None = None,
    stop: str | None = None,
    fast: bool = True,
) -> list[str]:
    """``n`` independent samples computed side by side (one batch); ``fast`` as for
    :func:`generate`."""
    steps = _generate(model, vocab, prime, config or SampleConfig(), n, engine(model, fast))
    heads = next(steps)
    chunks: list[list[str]] = [[] for _ in range(n)]
    for pieces in steps:
        for i, p in enumerate(pieces):
            chunks[i].append(p)
    out = []
    for head, chunk in zip(heads, chunks, strict=True):
        body = "".join(chunk)
        body = cut_at_stop(body, stop)
        out.append(head + body)
    return out


def _generate(
    model: CharRNN | ArrayModel,
    vocab: Tokenizer,
    prime: str,
    cfg: SampleConfig,
    batch: int,
    how: Engine,
) -> Iterator[list[str]]:
    """One list of ``batch`` pieces per step, the first the heads, computed by engine ``how``."""
    if how == "numpy":
        return _generate_fast(model, vocab, prime, cfg, batch)
    return _generate_plain(model, vocab, prime, cfg, batch)


def _generate_plain(
    model: CharRNN | ArrayModel, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> Iterator[list[str]]:
    """The torch engine: the model's forward, one step at a time; draws as the NumPy engine."""
    import torch

    if isinstance(model, ArrayModel):
        model = model.to_torch()
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(cfg.seed)
    context, last, head = _prime(vocab, prime, rng)
    pick = FastPicker(cfg, batch, model.config.vocab_size, rng)
    device = next(model.parameters()).device
    try:
        # Grad mode is set per step, not around the loop: a generator must not leave it
        # changed for its caller between steps.
        hidden = None
        if context:
            with torch.no_grad():
                ctx = torch.tensor(context, device=device).expand(batch, -1)  # (B, P-1)
                _, hidden = model(ctx, None)
        tokens = torch.full((batch,), last, device=device)
        yield [head] * batch
        itos = vocab.itos
        for _ in range(cfg.length):
            with torch.no_grad(), _no_onednn():
                logits, hidden = model(tokens.view(batch, 1), hidden)  # (B, 1, V)
                z = logits[:, -1, :].float().cpu().numpy()
            ids = pick(pick.fold(z))  # (B,)
            tokens = torch.from_numpy(ids).to(device)
            yield [itos[i] for i in ids.tolist()]
    finally:
        model.train(was_training)


_EXP_CLIP = np.float32(80.0)
_TOTAL_MAX = math.exp(79.0)  # below float32(e^80): one clipped entry is enough to exceed it
_TOTAL_MIN = 1e-30


def _uniforms(rng: np.random.Generator, block: int = 1024) -> Iterator[float]:
    """``rng.random()`` over and over, drawn in blocks: the same numbers, less overhead."""
    while True:
        yield from rng.random(block).tolist()


class FastPicker:
    """Draws the next tokens (B,) from logits (B, V) held in a NumPy array, for both engines:
    the distribution of ``next_token_probs``, drawn by inverse CDF with one uniform number per
    stream from ``rng``.

    The stepper can fold part of the work into its output layer: build it with
    ``head_scale=picker.head_scale`` and ``mask=picker.mask`` (:meth:`fold` does the same to
    raw logits).
    """

    def __init__(self, cfg: SampleConfig, batch: int, vocab_size: int, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.batch = batch
        self.greedy = cfg.temperature == 0
        # The short path (exp of folded logits) serves plain temperature sampling down to
        # T = 1e-4; top-k, top-p and smaller temperatures (1 / T could overflow float32
        # weights) go through next_token_probs.
        self.simple = (
            cfg.top_k is None
            and (cfg.top_p is None or cfg.top_p >= 1.0)
            and (cfg.temperature == 0 or cfg.temperature >= 1e-4)
        )
        # Plain temperature sampling: logits / T with <UNK> at -inf come out of the stepper.
        folded = self.simple and not self.greedy
        self.head_scale = 1.0 / cfg.temperature if folded else 1.0
        self.mask: int | None = UNK_ID if self.simple or self.greedy else None
        self.z = np.empty((batch, vocab_size), np.float32)
        self.cdf = np.empty((batch, vocab_size), np.float32)
        self.m = np.empty((batch, 1), np.float32)
        self.clip = np.full(vocab_size, _EXP_CLIP, np.float32)  # cheaper than a scalar operand
        self.uniforms = _uniforms(rng)

    def fold(self, logits: np.ndarray) -> np.ndarray:
        """Raw logits (B, V) as the stepper built for this picker returns them."""
        out = (logits * np.float32(self.head_scale)).astype(np.float32)
        if self.mask is not None:
            out[:, self.mask] = -np.inf
        return out

    def weights_cdf(self, z: np.ndarray) -> np.ndarray:
        """Cumulative (unnormalised) sampling weights (B, V) from folded logits ``z`` (B, V)."""
        if not self.simple:
            cfg = self.cfg
            probs = numpy_engine.next_token_probs_np(z, cfg.temperature, cfg.top_k, cfg.top_p)
            return np.add.accumulate(probs, axis=1, out=self.cdf)
        e, cdf = self.z, self.cdf
        # exp(min(z, 80)): no overflow; a total that reaches e^80 (or underflows) means some
        # row needs the max-subtracted form that next_token_probs uses.
        np.minimum(z, self.clip, out=e)
        np.exp(e, out=e)
        np.add.accumulate(e, axis=1, out=cdf)
        total = cdf[:, -1]
        if not (float(total.max()) < _TOTAL_MAX and float(total.min()) > _TOTAL_MIN):
            self._stable(z, cdf)
        return cdf

    def _stable(self, z: np.ndarray, cdf: np.ndarray) -> None:
        e = self.z
        np.max(z, axis=1, keepdims=True, out=self.m)
        np.subtract(z, self.m, out=e)  # each row's maximum is exactly 0
        np.exp(e, out=e)
        np.add.accumulate(e, axis=1, out=cdf)

    def pick1(self, z: np.ndarray) -> int:
        """The next token for one stream from its folded logits ``z`` (V,)."""
        if self.greedy:
            return int(z.argmax())
        if not self.simple:
            return int(self(z[None, :])[0])
        e, cdf = self.z[0], self.cdf[0]
        np.minimum(z, self.clip, out=e)
        np.exp(e, out=e)
        np.add.accumulate(e, out=cdf)
        total = float(cdf[-1])
        if not _TOTAL_MIN < total < _TOTAL_MAX:
            self._stable(z[None, :], self.cdf[:1])
            total = float(cdf[-1])
        return int(cdf.searchsorted(next(self.uniforms) * total, side="right"))

    def __call__(self, z: np.ndarray) -> np.ndarray:
        """Token ids (B,) for folded logits ``z`` (B, V)."""
        if self.greedy:
            return np.argmax(z, axis=1)
        cdf = self.weights_cdf(z)
        u = self.rng.random(z.shape[0]) * cdf[:, -1]  # (B,), each below its row's total
        return np.count_nonzero(cdf <= u[:, None], axis=1)


def _fast_start(
    model: CharRNN | ArrayModel, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> tuple[numpy_engine.FastRNN, FastPicker, int, str]:
    """The stepper loaded with the prime's state (read one token at a time), the picker, the last
    input token and the text the output begins with."""
    rng = np.random.default_rng(cfg.seed)
    context, last, head = _prime(vocab, prime, rng)
    pick = FastPicker(cfg, batch, model.config.vocab_size, rng)
    rnn = numpy_engine.FastRNN(model, batch, head_scale=pick.head_scale, mask=pick.mask)
    step = rnn.step
    for tok in context:
        step(tok if batch == 1 else np.full(batch, tok))
    return rnn, pick, last, head


def _generate_fast(
    model: CharRNN | ArrayModel, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> Iterator[list[str]]:
    if batch == 1:
        chars = _generate_fast_one(model, vocab, prime, cfg)
        yield [next(chars)]
        for c in chars:
            yield [c]
        return
    rnn, pick, last, head = _fast_start(model, vocab, prime, cfg, batch)
    yield [head] * batch
    itos, step = vocab.itos, rnn.step
    ids = np.full(batch, last)
    for _ in range(cfg.length):
        ids = pick(step(ids))
        yield [itos[i] for i in ids.tolist()]


def _generate_fast_one(
    model: CharRNN | ArrayModel, vocab: Tokenizer, prime: str, cfg: SampleConfig
) -> Iterator[str]:
    """One stream: the head, then one piece per step (the innermost loop of ``charrnn sample``)."""
    rnn, pick, tok, head = _fast_start(model, vocab, prime, cfg, 1)
    yield head
    itos, step, pick1 = vocab.itos, rnn.step, pick.pick1
    z = rnn.logits[0]  # (V,): the buffer every step writes
    for _ in range(cfg.length):
        step(tok)
        tok = pick1(z)
        yield itos[tok]


@contextlib.contextmanager
def _no_onednn() -> Iterator[None]:
    """oneDNN is 2-3x slower than the reference kernels for one-step RNN calls on the CPU."""
    import torch

    mkldnn: Any = torch.backends.mkldnn
    before = mkldnn.enabled
    mkldnn.enabled = False
    try:
        yield
    finally:
        mkldnn.enabled = before


def cut_at_stop(text: str, stop: str | None) -> str:
    """Generated ``text`` up to where ``stop`` first appears (the stop string not included).
    Stop strings at the very start are dropped, not matched: a sample never comes out empty (or
    starting with its separator) because the model began with the stop string."""
    if not stop:
        return text
    while text.startswith(stop):
        text = text[len(stop) :]
    cut = text.find(stop)
    return text if cut < 0 else text[:cut]


def stop_at(pieces: Iterator[str], stop: str) -> Iterator[str]:
    """Stream ``pieces`` with the rule of :func:`cut_at_stop`: the joined output is
    ``cut_at_stop("".join(pieces), stop)``, yielded as soon as it can no longer be a stop."""
    if not stop:
        yield from pieces
        return
    pending, started = "", False
    for piece in pieces:
        pending += piece
        if not started:
            while pending.startswith(stop):
                pending = pending[len(stop) :]
            if stop.startswith(pending):  # empty, or maybe the start of a leading stop
                continue
            started = True
        cut = pending.find(stop)
        if cut >= 0:
            if cut:
                yield pending[:cut]
            return
        keep = len(stop) - 1
        if len(pending) > keep:
            yield pending[: len(pending) - keep]
            pending = pending[len(pending) - keep :]
    if pending:
        yield pending
