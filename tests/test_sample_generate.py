from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.sample import generate as sampling
from charrnn.sample import policy
from charrnn.sample.generate import engine, generate, generate_many
from charrnn.sample.policy import SampleConfig, stop_at, token_probs
from charrnn.store import checkpoint as ck
from charrnn.text.vocab import UNK_ID, Vocab


def next_token_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The policy's sampling distribution (B, V) of logits (B, V), as a tensor."""
    return torch.from_numpy(token_probs(logits.numpy(), temperature, top_k, top_p))


@pytest.fixture(scope="module")
def loaded(trained_run: Path) -> ck.LoadedModel:
    return ck.load_model(trained_run)


def _text(loaded: ck.LoadedModel, **kw) -> str:  # type: ignore[no-untyped-def]
    prime = kw.pop("prime", "")
    return "".join(generate(loaded.model, loaded.vocab, prime, SampleConfig(**kw)))


def test_seeded_sampling_is_reproducible(loaded: ck.LoadedModel) -> None:
    a = _text(loaded, length=200, seed=7, temperature=1.0)
    b = _text(loaded, length=200, seed=7, temperature=1.0)
    c = _text(loaded, length=200, seed=8, temperature=1.0)
    assert a == b and a != c
    assert len(a) == 200


def test_temperature_zero_is_argmax(loaded: ck.LoadedModel) -> None:
    prime = "THE "
    out = _text(loaded, prime=prime, length=50, temperature=0.0)
    # Reference: feed the text so far and take the argmax of the last logits, step by step.
    model, vocab = loaded.model, loaded.vocab
    text = prime
    with torch.no_grad():
        for _ in range(50):
            logits, _ = model(torch.tensor([vocab.encode(text)]))
            z = logits[0, -1].clone()
            z[UNK_ID] = float("-inf")
            text += vocab.itos[int(z.argmax())]
    assert out == text
    # top-k 1 and a vanishing nucleus are greedy too.
    assert _text(loaded, prime=prime, length=50, temperature=1.0, top_k=1, seed=3) == text
    assert _text(loaded, prime=prime, length=50, temperature=1.0, top_p=1e-6, seed=3) == text


def test_many_samples_side_by_side(loaded: ck.LoadedModel) -> None:
    outs = generate_many(loaded.model, loaded.vocab, 4, "A", SampleConfig(length=60, seed=1))
    assert len(outs) == 4 and all(o.startswith("A") and len(o) == 61 for o in outs)
    assert len(set(outs)) > 1


def test_probs_never_nan_and_unk_masked() -> None:
    logits = torch.tensor([[5.0, 1.0, 2.0, 3.0]])
    for t in (1e-30, 1e-6, 0.5, 1.0, 1e6, 1e30):
        p = next_token_probs(logits, t)
        assert torch.isfinite(p).all() and p[0, UNK_ID] == 0
        assert torch.isclose(p.sum(), torch.tensor(1.0))
    assert next_token_probs(logits, 1e-6)[0, 3] == 1.0  # tiny temperature: greedy
    hot = next_token_probs(logits, 1e9)[0, 1:]
    assert torch.allclose(hot, torch.full((3,), 1 / 3))  # huge temperature: uniform
    p = next_token_probs(logits, 1.0, top_k=100)  # k larger than the vocabulary
    assert torch.allclose(p, next_token_probs(logits, 1.0))
    p = next_token_probs(logits, 1.0, top_k=2)
    assert (p[0] > 0).tolist() == [False, False, True, True]


def test_top_p_keeps_smallest_set() -> None:
    logits = torch.log(torch.tensor([[1e-9, 0.5, 0.3, 0.2]]))
    p = next_token_probs(logits, 1.0, top_p=0.7)
    assert (p[0] > 0).tolist() == [False, True, True, False]
    assert torch.allclose(p[0, 1:3], torch.tensor([0.625, 0.375]))


def test_stop_string() -> None:
    pieces = iter(list("hello\n\nworld"))
    assert "".join(stop_at(pieces, "\n\n")) == "hello"
    assert "".join(stop_at(iter(list("abc")), "zz")) == "abc"


def test_prime_with_unknown_characters(loaded: ck.LoadedModel) -> None:
    out = _text(loaded, prime="漢字 THE", length=20, seed=1)
    assert out.startswith("漢字 THE") and len(out) == len("漢字 THE") + 20


def _tiny_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(10, "gru", 2, hidden=8, embed_dim=4)).eval()


def test_engine_choice() -> None:
    model = _tiny_model()
    assert engine(model) == "numpy"  # float32 on the CPU
    assert engine(model, fast=True) == "numpy"
    assert engine(model, fast=False) == "torch"
    assert engine(_tiny_model().to(torch.bfloat16)) == "torch"
    assert engine(_tiny_model().double()) == "torch"
    assert engine(_tiny_model().double(), fast=False) == "torch"


def test_generate_asks_only_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forcing ``engine`` to "torch" gives exactly the ``fast=False`` texts."""
    model, vocab = _tiny_model(), Vocab(list("abcdefghi"))
    cfg = SampleConfig(length=40, temperature=1.0, seed=4)
    plain = "".join(generate(model, vocab, "ab", cfg, fast=False))
    plain_many = generate_many(model, vocab, 3, "ab", cfg, fast=False)
    calls: list[bool] = []

    def torch_engine(m: CharRNN, fast: bool = True) -> policy.Engine:
        calls.append(fast)
        return "torch"

    monkeypatch.setattr(sampling, "engine", torch_engine)
    assert "".join(generate(model, vocab, "ab", cfg)) == plain
    assert generate_many(model, vocab, 3, "ab", cfg) == plain_many
    assert calls == [True, True]
