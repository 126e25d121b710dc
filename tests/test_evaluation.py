from __future__ import annotations

import math

import torch

from charrnn.evaluation import StreamEvaluator, evaluate_chunks
from charrnn.model.rnn import CharRNN, ModelConfig


def evaluate(model, ids, streams: int = 1, window: int = 1024):  # type: ignore[no-untyped-def]
    """One stream of ids, scored (the helper these tests need; the library scores chunks)."""
    return evaluate_chunks(model, [ids], window=window, streams=streams)


def test_uniform_model_perplexity_equals_vocab_size() -> None:
    model = CharRNN(ModelConfig(vocab_size=37, hidden=8, embed_dim=4))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    ids = torch.randint(0, 37, (500,))
    res = evaluate(model, ids)
    assert res.tokens == 499
    assert math.isclose(res.perplexity, 37.0, rel_tol=1e-5)
    assert math.isclose(res.bits_per_char, math.log2(37), rel_tol=1e-5)


def test_chunked_evaluation_equals_one_pass() -> None:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=20, cell="lstm", hidden=16, embed_dim=8))
    ids = torch.randint(0, 20, (1000,))
    whole = evaluate(model, ids, window=2000)
    chunks = evaluate_chunks(model, list(ids.split(97)), window=31)
    assert chunks.tokens == whole.tokens == 999
    assert math.isclose(chunks.nats_per_token, whole.nats_per_token, rel_tol=1e-5)
    # Several streams side by side give nearly the same figure.
    assert abs(evaluate(model, ids, streams=4).nats_per_token - whole.nats_per_token) < 0.05


def _trained(trained_run):  # type: ignore[no-untyped-def]
    from charrnn.store import checkpoint as ck

    return ck.load_model(trained_run)


def test_parallel_streams_match_exact_figure(trained_run, verses_text) -> None:  # type: ignore[no-untyped-def]
    loaded = _trained(trained_run)
    ids = torch.tensor(loaded.vocab.encode(verses_text[40_000:70_000]))
    exact = evaluate_chunks(loaded.model, [ids])
    par = evaluate_chunks(loaded.model, list(ids.split(7000)), streams=16, burn_in=256)
    assert par.tokens == exact.tokens == ids.numel() - 1
    assert (
        abs(par.nats_per_token - exact.nats_per_token) < 2e-3 * exact.nats_per_token
    )  # a tiny tolerance
    # Small blocks: the burn-ins come from the previous block; same count, same figure.
    ev = StreamEvaluator(loaded.model, streams=8, burn_in=256, block=5000)
    for chunk in ids.split(3000):
        ev.feed(chunk)
    res = ev.result()
    assert res.tokens == exact.tokens
    assert abs(res.nats_per_token - exact.nats_per_token) < 2e-3 * exact.nats_per_token
    # Without burn-in the pieces start from a zero state: a visibly worse figure, so the
    # burn-in is what makes the parallel protocol agree.
    cold = evaluate_chunks(loaded.model, [ids], streams=64, burn_in=0)
    assert abs(cold.nats_per_token - exact.nats_per_token) > abs(
        par.nats_per_token - exact.nats_per_token
    )


def test_parallel_with_full_burn_in_is_exact() -> None:
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=20, cell="gru", layers=2, hidden=16, embed_dim=8))
    ids = torch.randint(0, 20, (3000,))
    exact = evaluate(model, ids)
    # A burn-in longer than the text: every piece is read from the start of the text.
    par = evaluate_chunks(model, [ids], streams=8, burn_in=5000)
    assert par.tokens == exact.tokens == 2999
    assert math.isclose(par.nats_per_token, exact.nats_per_token, rel_tol=1e-5)
