"""Loss, bits per character and perplexity of a model on a token stream.

The stream is read in windows with the hidden state carried from one window to the next, so the
result is the same as one pass over the whole text while memory stays bounded by the window.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .data import batchify
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


class StreamEvaluator:
    """Scores one long stream fed in chunks: each chunk is predicted from everything before it."""

    def __init__(self, model: CharRNN, window: int = 1024) -> None:
        self.model = model
        self.window = window
        self.device = next(model.parameters()).device
        self.hidden: Hidden | None = None
        self.last: torch.Tensor | None = None  # (1, 1): last token of the previous chunk
        self.total = 0.0
        self.count = 0

    @torch.no_grad()
    def feed(self, ids: torch.Tensor) -> None:
        """Add a chunk of token ids (1-D) to the stream."""
        if ids.numel() == 0:
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

    def result(self) -> EvalResult:
        return EvalResult(self.count, self.total / self.count if self.count else float("nan"))


def evaluate_chunks(
    model: CharRNN, chunks: Iterable[torch.Tensor], window: int = 1024
) -> EvalResult:
    """Exact single-stream evaluation of a text given as consecutive chunks of ids."""
    ev = StreamEvaluator(model, window)
    for chunk in chunks:
        ev.feed(chunk)
    return ev.result()


@torch.no_grad()
def evaluate(model: CharRNN, ids: torch.Tensor, streams: int = 1, window: int = 1024) -> EvalResult:
    """Mean loss of ``model`` on ``ids`` (1-D).

    ``streams == 1`` is the exact protocol (one pass, state carried through the whole text).
    More streams cut the text into that many contiguous pieces scored side by side: much faster
    on a CPU, and each piece after the first starts from a zero state (used for the periodic
    validation during training).
    """
    n = ids.numel()
    streams = max(1, min(streams, n // 64))
    if streams == 1:
        return evaluate_chunks(model, [ids], window)
    data = batchify(ids, streams).to(next(model.parameters()).device)  # (B, L)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    hidden: Hidden | None = None
    try:
        for i in range(0, data.size(1) - 1, window):
            y = data[:, i + 1 : i + 1 + window]  # (B, T)
            x = data[:, i : i + y.size(1)]  # (B, T)
            logits, hidden = model(x, hidden)  # (B, T, V)
            total += F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum"
            ).item()
            count += y.numel()
    finally:
        model.train(was_training)
    return EvalResult(count, total / count if count else float("nan"))
