"""The model's configuration and what follows from it alone: tensor names, shapes, parameters.

Pure module: standard library only, so that commands which need no tensors (``runs``, ``info``,
``--help``) and the NumPy sampler can use it without importing torch.
Dimension names: E embedding size, H hidden size, V vocabulary size, G gates (LSTM 4, GRU 3,
RNN 1), N number of recurrent layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

CELLS = ("lstm", "gru", "rnn")
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    cell: str = "gru"  # a constructor default; a run's is run.defaults.DEFAULT_CELL
    layers: int = 2
    hidden: int = 256
    embed_dim: int = 64
    dropout: float = 0.0
    tie_weights: bool = False

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.vocab_size < 2:
            raise ValueError("vocab_size must be at least 2")
        for name in ("layers", "hidden", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.tie_weights and self.embed_dim != self.hidden:
            raise ValueError("tie_weights needs embed_dim == hidden")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**d)


def weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The tensors a checkpoint stores for ``config``, by name, in ``CharRNN.state_dict()``
    order; a tied output layer shares the embedding and is not stored (``head.weight``).

    embedding (V, E); per layer k: weight_ih (G*H, E or H), weight_hh (G*H, H), two biases
    (G*H,); head (V, H) and (V,).
    """
    c = config
    gh = GATES[c.cell] * c.hidden
    shapes: dict[str, tuple[int, ...]] = {"embedding.weight": (c.vocab_size, c.embed_dim)}
    for k in range(c.layers):
        shapes[f"rnn.weight_ih_l{k}"] = (gh, c.embed_dim if k == 0 else c.hidden)
        shapes[f"rnn.weight_hh_l{k}"] = (gh, c.hidden)
        shapes[f"rnn.bias_ih_l{k}"] = (gh,)
        shapes[f"rnn.bias_hh_l{k}"] = (gh,)
    if not c.tie_weights:
        shapes["head.weight"] = (c.vocab_size, c.hidden)
    shapes["head.bias"] = (c.vocab_size,)
    return shapes


def parameters_of(config: ModelConfig) -> int:
    """Parameters of the model (``CharRNN(config).num_parameters()``), by arithmetic:
    V*E + per layer G*H*(in + H) + 2*G*H, + H*V + V (the head's weight only when not tied)."""
    return sum(math.prod(shape) for shape in weight_shapes(config).values())
