"""The character language model: embedding -> stacked LSTM / GRU / tanh RNN -> linear head.

Pure module: imports torch only (and its own torch-free :mod:`charrnn.model.config`, whose
:class:`ModelConfig` and ``CELLS`` it re-exports), touches no files and prints nothing.
Dimension names: B batch, T time steps, E embedding size, H hidden size, V vocabulary size,
N number of recurrent layers.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .config import CELLS, ModelConfig

# LSTM state is (h, c); GRU and RNN state is h. Each tensor is (N, B, H).
Hidden = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

__all__ = [
    "CELLS",
    "CharRNN",
    "Hidden",
    "ModelConfig",
    "detach_hidden",
    "hidden_from_tensors",
    "hidden_tensors",
]


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim)
        rnn_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[c.cell]
        self.rnn = rnn_cls(
            c.embed_dim,
            c.hidden,
            num_layers=c.layers,
            batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(c.hidden, c.vocab_size)
        if c.tie_weights:
            self.head.weight = self.embedding.weight

    def forward(
        self, idx: torch.Tensor, hidden: Hidden | None = None
    ) -> tuple[torch.Tensor, Hidden]:
        """idx (B, T) token ids -> logits (B, T, V) and the state after the last step."""
        emb = self.embedding(idx)  # (B, T, E)
        out, hidden = self.rnn(emb, hidden)  # (B, T, H)
        logits = self.head(self.drop(out))  # (B, T, V)
        return logits, hidden

    def set_dropout(self, p: float) -> None:
        """Change the dropout probability (config and modules) of a model not yet trained."""
        self.config = replace(self.config, dropout=p)
        self.rnn.dropout = p if self.config.layers > 1 else 0.0
        self.drop.p = p

    def init_hidden(self, batch: int) -> Hidden:
        """Zero state for ``batch`` streams, on the device and dtype of the weights."""
        w = self.head.weight
        c = self.config
        h = torch.zeros(c.layers, batch, c.hidden, device=w.device, dtype=w.dtype)
        if c.cell == "lstm":
            return (h, torch.zeros_like(h))
        return h

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_hidden(hidden: Hidden) -> Hidden:
    """Cut the graph behind a carried state (truncated backpropagation through time)."""
    if isinstance(hidden, tuple):
        return (hidden[0].detach(), hidden[1].detach())
    return hidden.detach()


def hidden_tensors(hidden: Hidden) -> list[torch.Tensor]:
    """The tensors of a state, in a fixed order (h, or h then c)."""
    return list(hidden) if isinstance(hidden, tuple) else [hidden]


def hidden_from_tensors(cell: str, tensors: list[torch.Tensor]) -> Hidden:
    """Inverse of :func:`hidden_tensors`."""
    if cell == "lstm":
        return (tensors[0], tensors[1])
    return tensors[0]
