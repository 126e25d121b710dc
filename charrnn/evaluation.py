"""Loss, bits per character and perplexity of a model on a token stream.

Exact protocol (``streams=1``): the stream is read in windows with the hidden state carried from
one window to the next, so the result is the same as one pass over the whole text while memory
stays bounded by the window. On a CPU one stream is slow: every step is a matrix-vector product.

Parallel protocol (``streams=S > 1``, ``burn_in=K``): the text is cut into S consecutive pieces
scored side by side as one batch (matrix-matrix products). Each piece after the first is read
from K characters before its start, from a zero state, and the predictions of those K burn-in
characters are not counted, so every scored character still sees K or more characters of real
context; with K of a few hundred the result matches the exact figure to a tiny tolerance::

    text     |0 .............................................................. n|
    stream 0 [== counted ==========]                       (zero state at 0: exact)
    stream 1              [burn-in][== counted ==========]
    stream 2                                  [burn-in][== counted ==========]

Long inputs are scored in blocks of bounded size; a block's burn-ins come from the text before
it, so only the very first characters of a file are read from the zero state (as exactly).

Memory: a step of either protocol holds its logits and their log-probabilities, 8 bytes per
stream, time step and vocabulary entry. A large vocabulary (65,601 entries: 2.1 GB for 64
streams of 128 steps) gets shorter steps, and past that fewer streams per step, so that a step
stays within :data:`LOGITS_BUDGET` (:func:`step_shape`). The protocol is unchanged: the state is
carried from one step to the next and the streams are independent rows, so the figures are the
same, to float rounding, however a text is stepped through.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from .model.rnn import CharRNN, Hidden
from .protocols import DEFAULT_BURN_IN, DEFAULT_STREAMS
from .units import LN2, Score


class _Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...
    def unknown_chars(self, text: str) -> list[str]: ...
    def decode(self, ids: Iterable[int]) -> str: ...


__all__ = [
    "LN2",
    "Score",
    "StreamEvaluator",
    "TextScore",
    "evaluate_chunks",
    "score_text",
    "token_lengths",
]


PARALLEL_BLOCK = 1 << 20  # tokens scored at a time in the parallel protocol
PARALLEL_WINDOW = 128
LOGITS_BUDGET = 256 << 20  # bytes of logits (and log-probabilities) one scoring step may hold


def step_shape(
    streams: int, vocab_size: int, window: int, budget: int = LOGITS_BUDGET
) -> tuple[int, int]:
    """(rows, steps) of a scoring step: how many of ``streams`` rows run together, over how
    many time steps (``window`` at most), so that the step's logits and their log-probabilities
    (8 bytes per row, time step and vocabulary entry) stay within ``budget`` bytes: shorter
    steps first, then fewer rows (at least one row of one step)."""
    positions = max(1, budget // (8 * max(1, vocab_size)))
    steps = max(1, min(window, positions // max(1, streams)))
    rows = max(1, min(streams, positions // steps))
    return rows, steps


class StreamEvaluator:
    """Scores one long stream fed in chunks: each chunk is predicted from everything before it.

    ``streams=1`` is exact; more streams use the parallel protocol (see the module docstring).
    """

    def __init__(
        self,
        model: CharRNN,
        window: int = 1024,
        streams: int = 1,
        burn_in: int = DEFAULT_BURN_IN,
        block: int = PARALLEL_BLOCK,
        lengths: torch.Tensor | None = None,
        budget: int = LOGITS_BUDGET,
    ) -> None:
        if streams < 1 or burn_in < 0 or block < 1:
            raise ValueError("streams and block must be >= 1 and burn_in >= 0")
        self.model = model
        self.window = window
        self.streams = streams
        self.burn_in = burn_in
        self.block = block
        self.budget = budget  # bytes of logits a step may hold (see step_shape)
        self.device = next(model.parameters()).device
        self.hidden: Hidden | None = None
        self.last: torch.Tensor | None = None  # (1, 1): last token of the previous chunk
        self.total = 0.0
        self.count = 0
        self.pending: list[torch.Tensor] = []  # parallel protocol: chunks not scored yet
        self.pending_n = 0
        self.context = torch.zeros(0, dtype=torch.long)  # the text just before ``pending``
        self.lengths = lengths  # characters per token id (None: one each)
        self.chars = 0  # characters of everything fed
        self.first_chars: int | None = None  # of the first token, which is never predicted

    def _count_chars(self, ids: torch.Tensor, chars: int | None) -> None:
        """Add the characters ``ids`` (1-D) encode: ``chars`` when the caller knows them, else
        one per token, or the pieces' lengths; remember the first token's (never predicted)."""
        flat = ids.reshape(-1)
        if self.first_chars is None:
            self.first_chars = 1 if self.lengths is None else int(self.lengths[int(flat[0])])
        if chars is None:
            lengths = self.lengths
            chars = flat.numel() if lengths is None else int(lengths[flat.long().cpu()].sum())
        self.chars += chars

    @torch.no_grad()
    def feed(self, ids: torch.Tensor, chars: int | None = None) -> None:
        """Add a chunk of token ids (1-D) to the stream; ``chars``: how many characters of text
        they encode (None: the sum of their pieces' lengths, see :func:`token_lengths`)."""
        if ids.numel() == 0:
            return
        self._count_chars(ids, chars)
        if self.streams > 1:
            self.pending.append(ids.reshape(-1).cpu())
            self.pending_n += ids.numel()
            if self.pending_n >= self.block:
                self._flush()
            return
        seq = ids.view(1, -1).to(self.device)
        if self.last is not None:
            seq = torch.cat([self.last, seq], dim=1)
        _, window = step_shape(1, self.model.config.vocab_size, self.window, self.budget)
        was_training = self.model.training
        self.model.eval()
        try:
            for i in range(0, seq.size(1) - 1, window):
                x = seq[:, i : i + window]  # (1, T)
                y = seq[:, i + 1 : i + 1 + window]  # (1, T')
                x = x[:, : y.size(1)]
                logits, self.hidden = self.model(x, self.hidden)  # (1, T, V)
                self.total += F.cross_entropy(
                    logits.view(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum"
                ).item()
                self.count += y.numel()
        finally:
            self.model.train(was_training)
        self.last = seq[:, -1:]

    def _flush(self) -> None:
        if not self.pending:
            return
        ids = torch.cat(self.pending)
        self.pending, self.pending_n = [], 0
        total, count = score_parallel(
            self.model, self.context, ids, self.streams, self.burn_in, PARALLEL_WINDOW, self.budget
        )
        self.total += total
        self.count += count
        joined = torch.cat([self.context, ids])
        self.context = joined[joined.numel() - min(self.burn_in + 1, joined.numel()) :]

    def result(self) -> Score:
        """The score of every prediction so far: each token but the first, whose characters
        are therefore not counted either."""
        self._flush()
        return Score(self.count, self.chars - (self.first_chars or 0), self.total)


@torch.no_grad()
def score_parallel(
    model: CharRNN,
    context: torch.Tensor,
    ids: torch.Tensor,
    streams: int,
    burn_in: int,
    window: int = PARALLEL_WINDOW,
    budget: int = LOGITS_BUDGET,
) -> tuple[float, int]:
    """Summed loss (nats) and count of the predictions of ``ids`` (1-D), the text that follows
    ``context`` (1-D, possibly empty: then ``ids[0]`` is not predicted), by the parallel
    protocol, in steps of at most ``window`` time steps whose logits fit in ``budget`` bytes
    (:func:`step_shape`). Returns (0.0, 0) when there is nothing to predict."""
    full = torch.cat([context.reshape(-1).cpu(), ids.reshape(-1).cpu()])
    n = full.numel()
    q0 = max(1, context.numel())  # position of the first counted target
    todo = n - q0
    if todo <= 0:
        return 0.0, 0
    s_eff = max(1, min(streams, todo // 256))  # pieces shorter than this are not worth it
    piece = -(-todo // s_eff)
    rows = []
    for s in range(s_eff):
        t0 = q0 + s * piece  # first counted target of this piece
        t1 = min(t0 + piece, n)
        if t0 >= t1:
            break
        start = max(0, t0 - 1 - burn_in)
        rows.append((start, t0, t1))
    width = max(t1 - 1 - start for start, _, t1 in rows)
    x = torch.zeros(len(rows), width, dtype=torch.long)  # (S, W) inputs
    y = torch.zeros(len(rows), width, dtype=torch.long)  # (S, W) targets
    counted = torch.zeros(len(rows), width, dtype=torch.bool)  # (S, W)
    for r, (start, t0, t1) in enumerate(rows):
        w = t1 - 1 - start
        x[r, :w] = full[start : t1 - 1]
        y[r, :w] = full[start + 1 : t1]
        counted[r, t0 - 1 - start : w] = True
    group, steps = step_shape(len(rows), model.config.vocab_size, window, budget)
    was_training = model.training
    model.eval()
    try:
        total = sum(
            _score_rows(model, x[a : a + group], y[a : a + group], counted[a : a + group], steps)
            for a in range(0, len(rows), group)
        )
    finally:
        model.train(was_training)
    return float(total), int(counted.sum())


def _score_rows(
    model: CharRNN, x: torch.Tensor, y: torch.Tensor, counted: torch.Tensor, steps: int
) -> float:
    """Summed loss of the counted predictions of rows ``x`` (inputs, (R, W)) and ``y``
    (targets), each row read from a zero state, ``steps`` time steps at a time."""
    device = next(model.parameters()).device
    x, y, counted = x.to(device), y.to(device), counted.to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    hidden: Hidden | None = None
    with torch.inference_mode():
        for i in range(0, x.size(1), steps):
            logits, hidden = model(x[:, i : i + steps], hidden)  # (R, T, V)
            ce = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                y[:, i : i + steps].reshape(-1),
                reduction="none",
            )  # (R*T,)
            total += ce[counted[:, i : i + steps].reshape(-1)].double().sum()
    return float(total)


def evaluate_chunks(
    model: CharRNN,
    chunks: Iterable[torch.Tensor],
    window: int = 1024,
    streams: int = 1,
    burn_in: int = DEFAULT_BURN_IN,
    lengths: torch.Tensor | None = None,
    chars: int | None = None,
) -> Score:
    """Score a text given as consecutive chunks of ids (1-D): exact with ``streams=1``, else
    the parallel protocol with ``burn_in`` tokens of context before each piece.

    ``lengths`` (V,) gives the characters of each token id (:func:`token_lengths`; None: one);
    ``chars``, when known, the characters the whole text has (else counted from ``lengths``).
    """
    ev = StreamEvaluator(model, window, streams=streams, burn_in=burn_in, lengths=lengths)
    for chunk in chunks:
        ev.feed(chunk)
    if chars is not None:
        ev.chars = chars
    return ev.result()


def token_lengths(itos: Sequence[str]) -> torch.Tensor:
    """Characters each token id stands for, (V,) int64: 1 for every character and for
    ``<UNK>`` (id 0), the piece's length for subword pieces. Used to count the characters a
    stream of ids covers when the text itself is not at hand (sentencepiece encodes a run of
    unseen characters as one ``<UNK>``, so such runs count as one character there)."""
    return torch.tensor([1, *(max(1, len(p)) for p in itos[1:])], dtype=torch.long)


@dataclass(frozen=True)
class TextScore:
    """A text scored by :func:`score_text`: its length, its characters the tokenizer did not
    know, and the :class:`~charrnn.units.Score` of its predictions."""

    chars: int
    unknown: int
    score: Score
    unknown_chars: tuple[str, ...] = ()  # the distinct characters behind ``unknown``, in order


def score_text(
    model: CharRNN,
    tokenizer: _Tokenizer,
    chunks: Iterable[str],
    streams: int = DEFAULT_STREAMS,
    burn_in: int = DEFAULT_BURN_IN,
) -> TextScore:
    """Score a text given as consecutive string chunks (what ``charrnn eval-perplexity`` does per
    file): encode each chunk, feed it with its exact character count, count unknown tokens.

    ``streams=1`` is the exact protocol, more the parallel one (module docstring). The score
    covers every character but those of the first token, which nothing predicts.
    """
    ev = StreamEvaluator(model, streams=streams, burn_in=burn_in)
    chars = unknown = 0
    unseen: dict[str, None] = {}
    for chunk in chunks:
        ids = tokenizer.encode(chunk)
        chars += len(chunk)
        n = sum(1 for i in ids if i == 0)
        if n:
            unknown += n
            unseen.update(dict.fromkeys(tokenizer.unknown_chars(chunk)))
        if ids:
            if ev.first_chars is None:
                ev.first_chars = len(tokenizer.decode(ids[:1]))
            ev.feed(torch.tensor(ids, dtype=torch.long), len(chunk))
    return TextScore(chars, unknown, ev.result(), tuple(unseen))
