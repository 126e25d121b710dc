"""Generating text one character at a time from a trained model.

``generate`` yields text pieces as they are produced (one per step), so callers can stream them.
Temperature 0 is greedy decoding; ``top_k`` keeps the k most likely characters and ``top_p``
the smallest set whose probability reaches p (nucleus sampling). ``<UNK>`` is never sampled.

:func:`engine` alone chooses how the text is computed. The "numpy" engine (float32 weights on
the CPU) runs the steps in :mod:`charrnn.fastpath` (same logits, a fraction of the overhead) and
draws characters by inverse CDF with a NumPy generator seeded from ``seed``; the "torch" engine
(``fast=False``, and always for other devices or dtypes) feeds the model one step at a time and
draws with ``torch.multinomial``. Both draw from the same distribution; for a given seed the
two engines give different (equally likely) texts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from . import fastpath
from .model import CharRNN, Hidden
from .tokenizers import Tokenizer
from .vocab import UNK_ID

Engine = Literal["numpy", "torch"]


def engine(model: CharRNN, fast: bool = True) -> Engine:
    """The engine that samples from ``model``; the one place where the choice is made.

    "numpy" (:class:`fastpath.FastRNN` steps, NumPy draws) when ``fast`` is true and the model
    has float32 weights on the CPU (:func:`fastpath.supports`); "torch" (the model's own
    forward, one step at a time, ``torch.multinomial`` draws) otherwise: with ``fast=False``,
    on any other device, or with any other dtype (bf16, float64, ...).
    """
    return "numpy" if fast and fastpath.supports(model) else "torch"


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
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be >= 1")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError("top_p must be in (0, 1]")


def next_token_probs(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """Sampling distribution (B, V) from logits (B, V); never NaN for any temperature > 0."""
    z = logits.float()
    z = z.clone()
    z[:, UNK_ID] = float("-inf")
    z = (z - z.max(dim=-1, keepdim=True).values) / temperature  # max entry is exactly 0
    if top_k is not None and top_k < z.size(-1):
        kth = torch.topk(z, top_k, dim=-1).values[:, -1:]  # (B, 1)
        z = z.masked_fill(z < kth, float("-inf"))
    probs = torch.softmax(z, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass of the more likely ones
        sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)  # the first always stays
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def _pick(
    logits: torch.Tensor, cfg: SampleConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V)."""
    if cfg.temperature == 0:
        z = logits.float().clone()
        z[:, UNK_ID] = float("-inf")
        return z.argmax(dim=-1)
    probs = next_token_probs(logits, cfg.temperature, cfg.top_k, cfg.top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def _start(
    model: CharRNN, vocab: Tokenizer, prime: str, batch: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, Hidden | None, str]:
    """Feed the prime; return the last input tokens (B,), the state before them, and the text
    that the output begins with."""
    device = next(model.parameters()).device
    ids = vocab.encode(prime)
    if not ids:
        if "\n" in vocab:
            # Start as if at the beginning of a line; the newline itself is not output.
            return torch.full((batch,), vocab.stoi["\n"], device=device), None, ""
        counts = torch.tensor(vocab.counts, dtype=torch.float)
        counts[UNK_ID] = 0
        if counts.sum() == 0:
            counts[1:] = 1
        first = torch.multinomial(counts, 1, generator=generator).item()
        return torch.full((batch,), int(first), device=device), None, vocab.itos[int(first)]
    hidden: Hidden | None = None
    if len(ids) > 1:
        ctx = torch.tensor(ids[:-1], device=device).expand(batch, -1)  # (B, P-1)
        _, hidden = model(ctx, None)
    return torch.full((batch,), ids[-1], device=device), hidden, prime


def generate(
    model: CharRNN,
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
    model: CharRNN,
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
        if stop and stop in body:
            body = body[: body.index(stop)]
        out.append(head + body)
    return out


def _generate(
    model: CharRNN, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int, how: Engine
) -> Iterator[list[str]]:
    """One list of ``batch`` pieces per step, the first the heads, computed by engine ``how``."""
    if how == "numpy":
        return _generate_fast(model, vocab, prime, cfg, batch)
    return _generate_plain(model, vocab, prime, cfg, batch)


def _generate_plain(
    model: CharRNN, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> Iterator[list[str]]:
    was_training = model.training
    model.eval()
    generator = None
    if cfg.seed is not None:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
    try:
        # Grad mode is set per step, not around the loop: a generator must not leave it
        # changed for its caller between steps.
        with torch.no_grad():
            tokens, hidden, head = _start(model, vocab, prime, batch, generator)
        yield [head] * batch
        itos = vocab.itos
        for _ in range(cfg.length):
            with torch.no_grad(), _no_onednn():
                logits, hidden = model(tokens.view(batch, 1), hidden)  # (B, 1, V)
                tokens = _pick(logits[:, -1, :], cfg, generator)  # (B,)
            yield [itos[i] for i in tokens.tolist()]
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
    """Draws the next tokens (B,) from logits (B, V) held in a NumPy array, as :func:`_pick`
    does for tensors: the same distribution (``next_token_probs``), drawn by inverse CDF with
    one uniform number per stream from ``rng``.

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
            probs = next_token_probs(torch.from_numpy(z), cfg.temperature, cfg.top_k, cfg.top_p)
            return np.add.accumulate(probs.numpy(), axis=1, out=self.cdf)
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
    model: CharRNN, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> tuple[fastpath.FastRNN, FastPicker, torch.Tensor, str]:
    """The stepper loaded with the prime's state, the picker, the last input tokens (B,) and the
    text the output begins with."""
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator()
        generator.manual_seed(cfg.seed)
    pick = FastPicker(cfg, batch, model.config.vocab_size, np.random.default_rng(cfg.seed))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens, hidden, head = _start(model, vocab, prime, batch, generator)
            rnn = fastpath.FastRNN(model, batch, head_scale=pick.head_scale, mask=pick.mask)
            rnn.set_state(hidden)
    finally:
        model.train(was_training)
    return rnn, pick, tokens, head


def _generate_fast(
    model: CharRNN, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> Iterator[list[str]]:
    if batch == 1:
        chars = _generate_fast_one(model, vocab, prime, cfg)
        yield [next(chars)]
        for c in chars:
            yield [c]
        return
    rnn, pick, tokens, head = _fast_start(model, vocab, prime, cfg, batch)
    yield [head] * batch
    itos, step = vocab.itos, rnn.step
    ids = tokens.numpy()
    for _ in range(cfg.length):
        ids = pick(step(ids))
        yield [itos[i] for i in ids.tolist()]


def _generate_fast_one(
    model: CharRNN, vocab: Tokenizer, prime: str, cfg: SampleConfig
) -> Iterator[str]:
    """One stream: the head, then one piece per step (the innermost loop of ``charrnn sample``)."""
    rnn, pick, tokens, head = _fast_start(model, vocab, prime, cfg, 1)
    yield head
    itos, step, pick1 = vocab.itos, rnn.step, pick.pick1
    tok = int(tokens[0])
    z = rnn.logits[0]  # (V,): the buffer every step writes
    for _ in range(cfg.length):
        step(tok)
        tok = pick1(z)
        yield itos[tok]


@contextlib.contextmanager
def _no_onednn() -> Iterator[None]:
    """oneDNN is 2-3x slower than the reference kernels for one-step RNN calls on the CPU."""
    mkldnn: Any = torch.backends.mkldnn
    before = mkldnn.enabled
    mkldnn.enabled = False
    try:
        yield
    finally:
        mkldnn.enabled = before


def stop_at(pieces: Iterator[str], stop: str) -> Iterator[str]:
    """Pass ``pieces`` through until ``stop`` appears; the stop string itself is not output."""
    if not stop:
        yield from pieces
        return
    pending = ""
    for piece in pieces:
        pending += piece
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
