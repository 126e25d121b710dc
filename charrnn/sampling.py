"""Generating text one character at a time from a trained model.

``generate`` yields text pieces as they are produced (one per step), so callers can stream them.
Temperature 0 is greedy decoding; ``top_k`` keeps the k most likely characters and ``top_p``
the smallest set whose probability reaches p (nucleus sampling). ``<UNK>`` is never sampled.

On the CPU the steps run in :mod:`charrnn.fastpath` (same logits, a fraction of the overhead)
and characters are drawn by inverse CDF with a NumPy generator seeded from ``seed``; the plain
path (``fast=False``, and always on other devices) feeds the model one step at a time and
draws with ``torch.multinomial``. Both draw from the same distribution; for a given seed the
two paths give different (equally likely) texts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import fastpath
from .model import CharRNN, Hidden
from .vocab import UNK_ID, Vocab


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
    model: CharRNN, vocab: Vocab, prime: str, batch: int, generator: torch.Generator | None
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


@torch.no_grad()
def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    config: SampleConfig | None = None,
    stop: str | None = None,
    fast: bool = True,
) -> Iterator[str]:
    """Yield the prime, then up to ``config.length`` generated characters one at a time.

    With ``stop``, generation ends where the generated text (not the prime) first contains it;
    the stop string itself is not yielded. ``fast=False`` uses the plain step-by-step path.
    """
    steps = _generate(model, vocab, prime, config or SampleConfig(), batch=1, fast=fast)
    head = next(steps)[0]
    if head:
        yield head
    rest = (pieces[0] for pieces in steps)
    yield from stop_at(rest, stop) if stop else rest


@torch.no_grad()
def generate_many(
    model: CharRNN,
    vocab: Vocab,
    n: int,
    prime: str = "",
    config: SampleConfig | None = None,
    stop: str | None = None,
    fast: bool = True,
) -> list[str]:
    """``n`` independent samples computed side by side (one batch)."""
    steps = _generate(model, vocab, prime, config or SampleConfig(), batch=n, fast=fast)
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
    model: CharRNN, vocab: Vocab, prime: str, cfg: SampleConfig, batch: int, fast: bool = True
) -> Iterator[list[str]]:
    if fast and fastpath.supports(model):
        return _generate_fast(model, vocab, prime, cfg, batch)
    return _generate_plain(model, vocab, prime, cfg, batch)


def _generate_plain(
    model: CharRNN, vocab: Vocab, prime: str, cfg: SampleConfig, batch: int
) -> Iterator[list[str]]:
    was_training = model.training
    model.eval()
    generator = None
    if cfg.seed is not None:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device)
        generator.manual_seed(cfg.seed)
    try:
        tokens, hidden, head = _start(model, vocab, prime, batch, generator)
        yield [head] * batch
        itos = vocab.itos
        for _ in range(cfg.length):
            with _no_onednn():
                logits, hidden = model(tokens.view(batch, 1), hidden)  # (B, 1, V)
            tokens = _pick(logits[:, -1, :], cfg, generator)  # (B,)
            yield [itos[i] for i in tokens.tolist()]
    finally:
        model.train(was_training)


class FastPicker:
    """Draws the next tokens (B,) from logits (B, V) held in a NumPy array, as :func:`_pick`
    does for tensors: the same distribution (``next_token_probs``), drawn by inverse CDF with
    one uniform number per stream from ``rng``."""

    def __init__(self, cfg: SampleConfig, batch: int, vocab_size: int, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.batch = batch
        self.inv_t = 1.0 / cfg.temperature if cfg.temperature > 0 else 0.0
        self.simple = cfg.top_k is None and (cfg.top_p is None or cfg.top_p >= 1.0)
        self.z = np.empty((batch, vocab_size), np.float32)
        self.cdf = np.empty((batch, vocab_size), np.float32)
        self.m = np.empty((batch, 1), np.float32)

    def weights_cdf(self, logits: np.ndarray) -> np.ndarray:
        """Cumulative (unnormalised) sampling weights (B, V); writes into ``logits``."""
        logits[:, UNK_ID] = -np.inf
        if self.simple:
            z = self.z
            np.max(logits, axis=1, keepdims=True, out=self.m)
            np.subtract(logits, self.m, out=z)  # max entry exactly 0, as next_token_probs
            np.multiply(z, self.inv_t, out=z)
            np.exp(z, out=z)
        else:
            cfg = self.cfg
            t = torch.from_numpy(logits)
            z = next_token_probs(t, cfg.temperature, cfg.top_k, cfg.top_p).numpy()
        return np.cumsum(z, axis=1, out=self.cdf)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.cfg.temperature == 0:
            logits[:, UNK_ID] = -np.inf
            return np.argmax(logits, axis=1)
        cdf = self.weights_cdf(logits)
        if self.batch == 1:
            u = self.rng.random() * float(cdf[0, -1])
            return np.searchsorted(cdf[0], [u], side="right")
        u = self.rng.random(self.batch) * cdf[:, -1]  # (B,), each below its row's total
        return np.count_nonzero(cdf <= u[:, None], axis=1)


def _generate_fast(
    model: CharRNN, vocab: Vocab, prime: str, cfg: SampleConfig, batch: int
) -> Iterator[list[str]]:
    generator = None
    if cfg.seed is not None:
        generator = torch.Generator()
        generator.manual_seed(cfg.seed)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            tokens, hidden, head = _start(model, vocab, prime, batch, generator)
            rnn = fastpath.FastRNN(model, batch)
            rnn.set_state(hidden)
    finally:
        model.train(was_training)
    yield [head] * batch
    rng = np.random.default_rng(cfg.seed)
    pick = FastPicker(cfg, batch, model.config.vocab_size, rng)
    itos = vocab.itos
    step = rnn.step
    if batch == 1:
        tok = int(tokens[0])
        for _ in range(cfg.length):
            tok = int(pick(step(tok))[0])
            yield [itos[tok]]
    else:
        ids = tokens.numpy()
        for _ in range(cfg.length):
            ids = pick(step(ids))
            yield [itos[i] for i in ids.tolist()]


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
