from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.model.rnn import CELLS, CharRNN, Hidden, ModelConfig
from charrnn.sample import numpy_engine as fastpath
from charrnn.sample.generate import generate, generate_many
from charrnn.sample.numpy_engine import FastRNN, supports
from charrnn.sample.policy import Picker, SampleConfig, token_probs
from charrnn.store import checkpoint as ck
from charrnn.text.vocab import UNK_ID

V = 23


def _set_state(fast: FastRNN, hidden: Hidden | None) -> None:
    """Load CharRNN's state ((N, B, H), or (h, c) for an LSTM; None: zero) into ``fast``."""
    parts = [] if hidden is None else list(hidden) if isinstance(hidden, tuple) else [hidden]
    for a in fast.h + fast.c:
        a.fill(0.0)
    for buffers, part in zip([fast.h, fast.c], parts, strict=False):
        for layer, buf in enumerate(buffers):
            buf[...] = part[layer].numpy()
    fast.refresh()


def _get_state(fast: FastRNN) -> list[torch.Tensor]:
    """The state of ``fast`` as CharRNN gives it, as a list: [h] or [h, c], each (N, B, H)."""
    return [torch.from_numpy(np.stack(buffers)) for buffers in (fast.h, fast.c) if buffers]


def next_token_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The sampling rules written again, in torch and float64 (B, V) from logits (B, V):
    <UNK> never drawn, temperature, the top-k, the smallest set reaching top-p."""
    z = logits.double().clone()
    z[:, UNK_ID] = float("-inf")
    z = (z - z.max(dim=-1, keepdim=True).values) / temperature
    if top_k is not None and top_k < z.size(-1):
        z[z < z.topk(top_k, dim=-1).values[:, -1:]] = float("-inf")
    p = torch.softmax(z, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_p, order = p.sort(dim=-1, descending=True, stable=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= top_p
        drop[:, 0] = False
        sorted_p[drop] = 0.0
        p = torch.zeros_like(p).scatter(-1, order, sorted_p)
        p /= p.sum(dim=-1, keepdim=True)
    return p.float()


def test_the_policy_s_probabilities_are_the_rules() -> None:
    torch.manual_seed(3)
    logits = torch.randn(4, V) * 3
    for t, k, p in [(1.0, None, None), (0.2, 5, None), (1.5, None, 0.8), (0.7, 6, 0.9)]:
        got = torch.from_numpy(token_probs(logits.numpy(), t, k, p))
        torch.testing.assert_close(got, next_token_probs(logits, t, k, p), atol=1e-6, rtol=1e-5)


def _model(cell: str, layers: int, tie: bool = False) -> CharRNN:
    torch.manual_seed(layers * 10 + CELLS.index(cell))
    embed = 32 if tie else 12
    cfg = ModelConfig(V, cell, layers, hidden=32, embed_dim=embed, tie_weights=tie)
    model = CharRNN(cfg).eval()
    with torch.no_grad():  # non-zero biases everywhere, so that misplaced ones show
        for name, p in model.named_parameters():
            if "bias" in name:
                p.uniform_(-0.5, 0.5)
    return model


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("split", [False, True])
def test_same_logits_and_state_as_forward(
    cell: str, layers: int, batch: int, split: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if split:  # every one-stream product run as two (as for large models)
        monkeypatch.setattr(fastpath, "ONE_PRODUCT_MAX", 0)
    model = _model(cell, layers)
    idx = torch.randint(0, V, (batch, 40))
    start = model.init_hidden(batch)
    start = tuple(t.normal_() for t in start) if isinstance(start, tuple) else start.normal_()
    with torch.no_grad():
        ref, ref_hidden = model(idx, start)  # (B, T, V)
    fast = FastRNN(model, batch)
    if split:
        assert all(len(p) == (2 if batch == 1 else 1) for p in fast.products)
    fast.step(int(idx[0, 0]) if batch == 1 else idx[:, 0].numpy())  # then replaced by _set_state
    _set_state(fast, start)
    steps = []
    for t in range(idx.size(1)):
        tokens = int(idx[0, t]) if batch == 1 else idx[:, t].numpy()
        steps.append(fast.step(tokens).copy())
    torch.testing.assert_close(torch.from_numpy(np.stack(steps, axis=1)), ref)
    got = _get_state(fast)
    want = ref_hidden
    for a, b in zip(got, want if isinstance(want, tuple) else (want,), strict=True):
        torch.testing.assert_close(a, b)


def test_state_round_trip_and_zero_state() -> None:
    """A zero state written after steps is the zero state again; a state read and written back
    continues exactly (refresh recomputes the products kept between steps)."""
    model = _model("lstm", 2)
    idx = torch.randint(0, V, (1, 20))
    with torch.no_grad():
        ref, _ = model(idx)
    fast = FastRNN(model, 1)
    for t in range(5):
        fast.step(int(idx[0, t]))
    _set_state(fast, None)
    first = [fast.step(int(idx[0, t])).copy() for t in range(10)]
    h, c = _get_state(fast)
    _set_state(fast, None)
    fast.step(3)
    _set_state(fast, (h, c))
    rest = [fast.step(int(idx[0, t])).copy() for t in range(10, 20)]
    got = torch.from_numpy(np.stack(first + rest, axis=1))  # (1, T, V)
    torch.testing.assert_close(got, ref)


def test_tied_weights() -> None:
    model = _model("gru", 2, tie=True)
    idx = torch.randint(0, V, (1, 30))
    with torch.no_grad():
        ref, _ = model(idx)
    fast = FastRNN(model, 1)
    got = np.stack([fast.step(int(i)).copy() for i in idx[0]], axis=1)
    torch.testing.assert_close(torch.from_numpy(got), ref)


def test_only_float32_cpu() -> None:
    model = _model("gru", 1)
    assert supports(model)
    assert not supports(model.double())
    with pytest.raises(ValueError):
        FastRNN(model)


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": 1.0},
        {"temperature": 0.3},
        {"temperature": 0.001},  # logits / T overflow float32: the fallback subtracts the max
        {"temperature": 1e4},
        {"temperature": 1e-30},  # 1 / T would overflow float32 weights: next_token_probs
        {"top_k": 5},
        {"top_p": 0.8},
        {"top_p": 0.9},
    ],
)
def test_picker_distribution_is_next_token_probs(kw: dict) -> None:  # type: ignore[type-arg]
    torch.manual_seed(1)
    logits = torch.randn(3, V) * 3
    logits[1, UNK_ID] = 50.0  # the likeliest entry is <UNK>: it must still never be drawn
    cfg = SampleConfig(**kw)
    want = next_token_probs(logits, cfg.temperature, cfg.top_k, cfg.top_p)
    picker = Picker(cfg, 3, V, np.random.default_rng(0))
    cdf = torch.from_numpy(picker.weights_cdf(picker.fold(logits.numpy())).copy())
    got = torch.diff(cdf / cdf[:, -1:], dim=1, prepend=torch.zeros(3, 1))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_picker_draws_by_inverse_cdf() -> None:
    logits = torch.log(torch.tensor([[1e-9, 0.5, 0.0001, 0.3, 0.2 - 0.0001]]))
    cfg = SampleConfig(temperature=1.0)
    picker = Picker(cfg, 1, 5, np.random.default_rng(0))
    folded = picker.fold(logits.numpy())
    draws = [int(picker(folded)[0]) for _ in range(20_000)]
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[UNK_ID] == 0
    # Seeded, so deterministic; 20k draws put each frequency within ~0.01 of its probability.
    assert np.allclose(freq, [0.0, 0.5, 0.0001, 0.3, 0.1999], atol=0.015)
    many = Picker(cfg, 4, 5, np.random.default_rng(0))
    folded4 = many.fold(np.repeat(logits.numpy(), 4, axis=0))
    ids = np.concatenate([many(folded4) for _ in range(5000)])
    freq4 = np.bincount(ids, minlength=5) / ids.size
    assert freq4[UNK_ID] == 0 and np.allclose(freq4, freq, atol=0.015)


@pytest.fixture(scope="module")
def loaded(trained_run: Path) -> ck.LoadedModel:
    return ck.load_model(trained_run)


def test_greedy_output_identical_to_plain_path(loaded: ck.LoadedModel) -> None:
    cfg = SampleConfig(length=400, temperature=0.0)
    for prime in ("", "T", "THE KING "):
        fast = "".join(generate(loaded.model, loaded.vocab, prime, cfg))
        plain = "".join(generate(loaded.model, loaded.vocab, prime, cfg, fast=False))
        assert fast == plain and len(fast) == len(prime) + 400
    fast4 = generate_many(loaded.model, loaded.vocab, 3, "A", cfg)
    plain4 = generate_many(loaded.model, loaded.vocab, 3, "A", cfg, fast=False)
    assert fast4 == plain4


def test_fast_sampling_seeded_and_bounded(loaded: ck.LoadedModel) -> None:
    cfg = SampleConfig(length=300, temperature=1.0, seed=5)
    a = "".join(generate(loaded.model, loaded.vocab, "A", cfg))
    assert a == "".join(generate(loaded.model, loaded.vocab, "A", cfg))
    assert len(a) == 301 and "<UNK>" not in a
    outs = generate_many(loaded.model, loaded.vocab, 5, "", SampleConfig(length=50, seed=2))
    assert outs == generate_many(loaded.model, loaded.vocab, 5, "", SampleConfig(length=50, seed=2))
    assert len(set(outs)) > 1 and all(len(o) == 50 for o in outs)


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.001, 0.0])
def test_one_stream_picker_draws_like_the_batched_one(temperature: float) -> None:
    torch.manual_seed(2)
    cfg = SampleConfig(temperature=temperature)
    a = Picker(cfg, 1, V, np.random.default_rng(9))
    b = Picker(cfg, 1, V, np.random.default_rng(9))
    for _ in range(2500):  # past the picker's blocks of pre-drawn uniform numbers
        z = a.fold((torch.randn(1, V) * 4).numpy())
        assert a.pick1(z[0]) == int(b(z)[0])


def test_vanishing_temperature_is_greedy(loaded: ck.LoadedModel) -> None:
    greedy = "".join(
        generate(loaded.model, loaded.vocab, "A", SampleConfig(length=100, temperature=0.0))
    )
    for t in (1e-6, 1e-30):
        cfg = SampleConfig(length=100, temperature=t, seed=1)
        assert "".join(generate(loaded.model, loaded.vocab, "A", cfg)) == greedy


@pytest.mark.parametrize("cell", CELLS)
def test_a_sharing_fastrnn_has_its_own_state_and_the_same_weights(cell: str) -> None:
    """FastRNN.sharing: the same (read-only) weight arrays, not copies; its own state, starting
    at zero; exactly the logits of a FastRNN built from the model, while the first one steps
    on with other tokens."""
    model = _model(cell, 2)
    first, fresh = FastRNN(model, 4), FastRNN(model, 4)
    first.step(np.array([1, 2, 3, 4]))
    other = FastRNN.sharing(first)
    assert other.table is first.table
    for a, b in zip(other.matrices, first.matrices, strict=True):
        assert all(x is y and not x.flags.writeable for x, y in zip(a, b, strict=True))
    assert not np.shares_memory(other.S, first.S) and not np.any(other.h[0])
    for t in range(6):
        tokens = np.array([t, 2 * t, 5, 1]) % V
        first.step((tokens + 1) % V)
        assert np.array_equal(other.step(tokens), fresh.step(tokens))
