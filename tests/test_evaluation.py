from __future__ import annotations

import math

import pytest
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


def _largest_logits(model: CharRNN) -> list[int]:
    """Bytes of the largest logits tensor the model's head produces (a list to read after)."""
    seen = [0]

    def hook(module: torch.nn.Module, args: object, out: torch.Tensor) -> None:
        seen[0] = max(seen[0], out.numel() * out.element_size())

    model.head.register_forward_hook(hook)
    return seen


def test_a_large_vocabulary_is_scored_within_the_memory_budget() -> None:
    """Logits of S streams x 128 steps x V entries grow with the vocabulary (4.5 GB for 65,601
    entries at 64 streams); a step must stay within the budget, with the figure unchanged."""
    from charrnn.evaluation import step_shape

    torch.manual_seed(0)
    V = 20_000
    model = CharRNN(ModelConfig(vocab_size=V, hidden=16, embed_dim=8))
    ids = torch.randint(0, V, (16 * 256 + 1,))
    unbounded = StreamEvaluator(model, streams=16, burn_in=32, budget=1 << 40)
    largest = _largest_logits(model)
    unbounded.feed(ids)
    reference = unbounded.result()
    assert largest[0] == 16 * 128 * V * 4  # what the protocol held before: 164 MB here
    budget = 8 << 20
    for b, shape in ((budget, (16, 3)), (8 * V * 5, (5, 1))):  # shorter steps; fewer rows too
        assert step_shape(16, V, 128, b) == shape
        largest[0] = 0
        ev = StreamEvaluator(model, streams=16, burn_in=32, budget=b)
        ev.feed(ids)
        got = ev.result()
        assert 0 < 2 * largest[0] <= b  # logits and their log-probabilities
        assert got.tokens == reference.tokens == ids.numel() - 1
        assert math.isclose(got.nats, reference.nats, rel_tol=1e-9)
    # The exact protocol (one stream, windows of 1024) is bounded the same way.
    largest[0] = 0
    exact = StreamEvaluator(model, streams=1, budget=budget)
    exact.feed(ids[:3000])
    assert 0 < 2 * largest[0] <= budget
    whole = StreamEvaluator(model, streams=1, budget=1 << 40)
    whole.feed(ids[:3000])
    # (each window's loss is summed in float32 there: rounding at 1e-7 of the total)
    assert math.isclose(exact.result().nats, whole.result().nats, rel_tol=1e-6)


_PEAK_SCRIPT = """
import resource, sys, torch
from charrnn.evaluation import LOGITS_BUDGET, StreamEvaluator
from charrnn.model.rnn import CharRNN, ModelConfig
torch.set_num_threads(1)
torch.manual_seed(0)
V = 20_000
model = CharRNN(ModelConfig(vocab_size=V, hidden=16, embed_dim=8))
ids = torch.randint(0, V, (64 * 256 + 1,))
ev = StreamEvaluator(model, streams=64, budget=LOGITS_BUDGET if sys.argv[1] == "1" else 1 << 40)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ev.feed(ids)
score = ev.result()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(repr(score.nats), (after - before) * 1024)
"""


@pytest.mark.slow
def test_peak_memory_of_scoring_a_large_vocabulary_with_64_streams() -> None:
    """The real figure: the peak resident memory a 64-stream scoring of a 20,000-entry
    vocabulary adds, in a fresh process, bounded against unbounded (1.3 GB)."""
    import subprocess
    import sys

    from charrnn.evaluation import LOGITS_BUDGET

    def peak(bounded: bool) -> tuple[float, int]:
        r = subprocess.run(
            [sys.executable, "-c", _PEAK_SCRIPT, "1" if bounded else "0"],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        nats, grown = r.stdout.split()
        return float(nats), int(grown)

    nats, grown = peak(True)
    assert grown < LOGITS_BUDGET + (64 << 20), grown
    unbounded_nats, unbounded_grown = peak(False)
    assert unbounded_grown > 2 * LOGITS_BUDGET  # the measurement sees what it must
    assert math.isclose(nats, unbounded_nats, rel_tol=1e-9)
