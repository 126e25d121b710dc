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
way, by inverse CDF (:class:`charrnn.sample.policy.Picker`) with a NumPy generator seeded from
``seed``, so for a given seed the two engines print the same text (their logits agree to float32
rounding). The rules themselves (the configuration, temperature, top-k, top-p, stop strings, which
engine honours which knob) live in :mod:`charrnn.sample.policy`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from ..device import cuda_possible
from ..model.arrays import ArrayModel, supports
from ..text.tokenizers import Tokenizer
from ..text.vocab import UNK_ID
from . import numpy_engine
from .policy import Engine, Picker, SampleConfig, check_engine, cut_at_stop, stop_at

if TYPE_CHECKING:
    from ..model.rnn import CharRNN

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


def prime_ids(vocab: Tokenizer, prime: str, rng: np.random.Generator) -> tuple[list[int], int, str]:
    """What every engine reads before generating (the two of this module, and the server's
    batches): the prime's tokens but the last, the last (the input of the first step), and the
    text that the output begins with. Without a prime the first token is drawn with ``rng``."""
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
    how = engine(model, fast)
    cfg = check_engine(config or SampleConfig(), how)
    if how == "numpy":
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
    how = engine(model, fast)
    steps = _generate(model, vocab, prime, check_engine(config or SampleConfig(), how), n, how)
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
    """The torch engine: the model's forward, one step at a time; draws as the NumPy engine.

    oneDNN is left as the process has it (``torch.backends.mkldnn.enabled``): the sampler sets
    no process-wide flag. PyTorch runs a CPU float32 LSTM through oneDNN when it is on, slower
    for one step at a time than its reference kernel (2x256 LSTM, one thread: 631 against 238
    us per step) and equal to it to float32 rounding; GRU and plain RNN layers never use it.
    Float32 models on the CPU are sampled by the NumPy engine unless the torch engine is forced.
    """
    import torch

    if isinstance(model, ArrayModel):
        model = model.to_torch()
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(cfg.seed)
    context, last, head = prime_ids(vocab, prime, rng)
    pick = Picker(cfg, batch, model.config.vocab_size, rng)
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
            with torch.no_grad():
                logits, hidden = model(tokens.view(batch, 1), hidden)  # (B, 1, V)
                z = logits[:, -1, :].float().cpu().numpy()
            ids = pick(pick.fold(z))  # (B,)
            tokens = torch.from_numpy(ids).to(device)
            yield [itos[i] for i in ids.tolist()]
    finally:
        model.train(was_training)


def _fast_start(
    model: CharRNN | ArrayModel, vocab: Tokenizer, prime: str, cfg: SampleConfig, batch: int
) -> tuple[numpy_engine.FastRNN, Picker, int, str]:
    """The stepper loaded with the prime's state (read one token at a time), the picker, the last
    input token and the text the output begins with."""
    rng = np.random.default_rng(cfg.seed)
    context, last, head = prime_ids(vocab, prime, rng)
    pick = Picker(cfg, batch, model.config.vocab_size, rng)
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
