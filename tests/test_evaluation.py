from __future__ import annotations

import math

import torch

from charrnn.evaluation import evaluate, evaluate_chunks
from charrnn.model import CharRNN, ModelConfig


def test_uniform_model_perplexity_equals_vocab_size() -> None:
    model = CharRNN(ModelConfig(vocab_size=37, hidden=8, embed_dim=4))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    ids = torch.randint(0, 37, (500,))
    res = evaluate(model, ids)
    assert res.tokens == 499
    assert math.isclose(res.perplexity, 37.0, rel_tol=1e-5)
    assert math.isclose(res.bits, math.log2(37), rel_tol=1e-5)


def test_chunked_evaluation_equals_one_pass() -> None:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=20, cell="lstm", hidden=16, embed_dim=8))
    ids = torch.randint(0, 20, (1000,))
    whole = evaluate(model, ids, window=2000)
    chunks = evaluate_chunks(model, list(ids.split(97)), window=31)
    assert chunks.tokens == whole.tokens == 999
    assert math.isclose(chunks.nats, whole.nats, rel_tol=1e-5)
    # Several streams side by side give nearly the same figure.
    assert abs(evaluate(model, ids, streams=4).nats - whole.nats) < 0.05
