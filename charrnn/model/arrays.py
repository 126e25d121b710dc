"""A trained model as plain NumPy arrays: what the NumPy sampler needs, without torch.

:class:`ArrayModel` holds a :class:`~charrnn.model.config.ModelConfig` and the checkpoint's tensors
by
their ``CharRNN.state_dict()`` names, as float32 arrays (a tied output layer is not stored:
:meth:`ArrayModel.weight` serves ``head.weight`` from the embedding). It comes from a checkpoint
(:func:`charrnn.store.checkpoint.load_arrays`) or from a torch model
(:meth:`ArrayModel.from_torch`),
and goes back to one with :meth:`ArrayModel.to_torch`; only those two import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import ModelConfig, weight_shapes

if TYPE_CHECKING:
    from .rnn import CharRNN


def supports(model: Any) -> bool:
    """Whether the NumPy engine can run ``model``: an :class:`ArrayModel`, or a ``CharRNN``
    with float32 weights on the CPU (checked without importing torch)."""
    if isinstance(model, ArrayModel):
        return True
    w = model.head.weight
    return bool(w.device.type == "cpu" and str(w.dtype) == "torch.float32")


@dataclass(frozen=True, eq=False)
class ArrayModel:
    """A model's config and weights (name -> float32 array, the shapes of
    :func:`charrnn.model.config.weight_shapes`)."""

    config: ModelConfig
    arrays: Mapping[str, np.ndarray] = field(repr=False)

    def __post_init__(self) -> None:
        want = weight_shapes(self.config)
        got = {k: tuple(a.shape) for k, a in self.arrays.items()}
        if got != want:
            names = sorted(set(got) ^ set(want)) or sorted(k for k in want if got[k] != want[k])
            raise ValueError(f"weights do not match the config: {names}")

    def weight(self, name: str) -> np.ndarray:
        """The weight ``name`` (``head.weight`` is the embedding's when tied)."""
        if name == "head.weight" and self.config.tie_weights:
            name = "embedding.weight"
        return self.arrays[name]

    @classmethod
    def from_torch(cls, model: CharRNN) -> ArrayModel:
        """The weights of a torch ``CharRNN`` (any device or dtype), copied as float32."""
        import torch

        sd = model.state_dict()
        arrays = {
            name: np.array(sd[name].detach().to("cpu", torch.float32).numpy(), dtype=np.float32)
            for name in weight_shapes(model.config)
        }
        return cls(model.config, arrays)

    def to_torch(self) -> CharRNN:
        """The same weights in a torch ``CharRNN`` on the CPU, in eval mode."""
        import torch

        from .rnn import CharRNN

        model = CharRNN(self.config)
        tensors = {
            k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in self.arrays.items()
        }
        model.load_state_dict(tensors, strict=not self.config.tie_weights)
        return model.eval()
