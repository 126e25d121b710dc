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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .model import CharRNN, Hidden

LN2 = math.log(2.0)


@dataclass(frozen=True)
class EvalResult:
    tokens: int  # how many next-token predictions were scored
    nats: float  # mean cross-entropy per token, in nats
    chars: float | None = None  # characters those tokens cover (None: one per token)

    @property
    def nats_per_char(self) -> float:
        if self.chars is None or not self.chars:
            return self.nats
        return self.nats * self.tokens / self.chars

    @property
    def bits(self) -> float:
        """Bits per character (per token and per character agree for characters)."""
        return self.nats_per_char / LN2

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.nats, 700.0))


DEFAULT_STREAMS = 64
DEFAULT_BURN_IN = 256
PARALLEL_BLOCK = 1 << 20  # tokens scored at a time in the parallel protocol
PARALLEL_WINDOW = 128


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
    ) -> None:
        if streams < 1 or burn_in < 0 or block < 1:
            raise ValueError("streams and block must be >= 1 and burn_in >= 0")
        self.model = model
        self.window = window
        self.streams = streams
        self.burn_in = burn_in
        self.block = block
        self.device = next(model.parameters()).device
        self.hidden: Hidden | None = None
        self.last: torch.Tensor | None = None  # (1, 1): last token of the previous chunk
        self.total = 0.0
        self.count = 0
        self.pending: list[torch.Tensor] = []  # parallel protocol: chunks not scored yet
        self.pending_n = 0
        self.context = torch.zeros(0, dtype=torch.long)  # the text just before ``pending``

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> None:
        """Add a chunk of token ids (1-D) to the stream."""
        if ids.numel() == 0:
            return
        if self.streams > 1:
            self.pending.append(ids.reshape(-1).cpu())
            self.pending_n += ids.numel()
            if self.pending_n >= self.block:
                self._flush()
            return
        seq = ids.view(1, -1).to(self.device)
        if self.last is not None:
            seq = torch.cat([self.last, seq], dim=1)
        was_training = self.model.training
        self.model.eval()
        try:
            for i in range(0, seq.size(1) - 1, self.window):
                x = seq[:, i : i + self.window]  # (1, T)
                y = seq[:, i + 1 : i + 1 + self.window]  # (1, T')
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
            self.model, self.context, ids, self.streams, self.burn_in, PARALLEL_WINDOW
        )
        self.total += total
        self.count += count
        self.context = torch.cat([self.context, ids])[-(self.burn_in + 1) :]

    def result(self) -> EvalResult:
        self._flush()
        return EvalResult(self.count, self.total / self.count if self.count else float("nan"))


@torch.no_grad()
def score_parallel(
    model: CharRNN,
    context: torch.Tensor,
    ids: torch.Tensor,
    streams: int,
    burn_in: int,
    window: int = PARALLEL_WINDOW,
) -> tuple[float, int]:
    """Summed loss (nats) and count of the predictions of ``ids`` (1-D), the text that follows
    ``context`` (1-D, possibly empty: then ``ids[0]`` is not predicted), by the parallel
    protocol. Returns (0.0, 0) when there is nothing to predict."""
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
    device = next(model.parameters()).device
    x, y, counted = x.to(device), y.to(device), counted.to(device)
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    hidden: Hidden | None = None
    try:
        with torch.inference_mode():
            for i in range(0, width, window):
                logits, hidden = model(x[:, i : i + window], hidden)  # (S, T, V)
                ce = F.cross_entropy(
                    logits.reshape(-1, logits.size(-1)).float(),
                    y[:, i : i + window].reshape(-1),
                    reduction="none",
                )  # (S*T,)
                total += ce[counted[:, i : i + window].reshape(-1)].double().sum()
    finally:
        model.train(was_training)
    return float(total), int(counted.sum())


def evaluate_chunks(
    model: CharRNN,
    chunks: Iterable[torch.Tensor],
    window: int = 1024,
    streams: int = 1,
    burn_in: int = DEFAULT_BURN_IN,
) -> EvalResult:
    """Evaluation of a text given as consecutive chunks of ids: exact with ``streams=1``, else
    the parallel protocol with ``burn_in`` characters of context before each piece."""
    ev = StreamEvaluator(model, window, streams=streams, burn_in=burn_in)
    for chunk in chunks:
        ev.feed(chunk)
    return ev.result()


def evaluate(model: CharRNN, ids: torch.Tensor, streams: int = 1, window: int = 1024) -> EvalResult:
    """Mean loss of ``model`` on ``ids`` (1-D): exact with ``streams=1``, else the parallel
    protocol (``streams`` pieces side by side, each after a burn-in; see the module docstring)."""
    return evaluate_chunks(model, [ids], window=window, streams=streams)
