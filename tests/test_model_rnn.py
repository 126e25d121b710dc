from __future__ import annotations

import pytest
import torch

from charrnn.model.rnn import CELLS, CharRNN, ModelConfig

B, T, V = 3, 7, 11


@pytest.mark.parametrize("cell", CELLS)
def test_output_shapes(cell: str) -> None:
    model = CharRNN(ModelConfig(vocab_size=V, cell=cell, layers=2, hidden=16, embed_dim=8))
    logits, hidden = model(torch.randint(0, V, (B, T)))
    assert logits.shape == (B, T, V)
    tensors = hidden if isinstance(hidden, tuple) else (hidden,)
    assert len(tensors) == (2 if cell == "lstm" else 1)
    for h in tensors:
        assert h.shape == (2, B, 16)


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_pass(cell: str) -> None:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=V, cell=cell, layers=2, hidden=16, embed_dim=8)).eval()
    idx = torch.randint(0, V, (B, 2 * T))
    full, _ = model(idx)
    a, h = model(idx[:, :T])
    b, _ = model(idx[:, T:], h)
    torch.testing.assert_close(torch.cat([a, b], dim=1), full)


def test_init_hidden_is_zero_state() -> None:
    model = CharRNN(ModelConfig(vocab_size=V, cell="lstm", hidden=16, embed_dim=8)).eval()
    idx = torch.randint(0, V, (B, T))
    torch.testing.assert_close(model(idx)[0], model(idx, model.init_hidden(B))[0])


def test_tied_weights_share_the_embedding() -> None:
    model = CharRNN(ModelConfig(vocab_size=V, hidden=16, embed_dim=16, tie_weights=True))
    assert model.head.weight is model.embedding.weight
    with pytest.raises(ValueError, match="tie_weights"):
        ModelConfig(vocab_size=V, hidden=16, embed_dim=8, tie_weights=True)
