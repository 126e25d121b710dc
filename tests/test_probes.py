from __future__ import annotations

import pytest
import torch

from charrnn import probes
from charrnn.model import CharRNN, ModelConfig


def _model() -> CharRNN:
    return CharRNN(ModelConfig(vocab_size=30, hidden=16, embed_dim=8, dropout=0.3, layers=2))


def test_probe_precision_changes_nothing_and_times_both_where_bf16_is_native(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    monkeypatch.setattr(probes, "native_bf16", lambda: True)
    p = probes.probe_precision(model, 4, 16)
    assert 0 < p.fp32_seconds < 60 and p.bf16_seconds is not None and 0 < p.bf16_seconds < 60
    assert p.speedup == pytest.approx(p.fp32_seconds / p.bf16_seconds)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(q.grad is None for q in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training  # the mode it had


def test_probe_precision_skips_bf16_without_native_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "native_bf16", lambda: False)
    model = _model().eval()
    p = probes.probe_precision(model, 4, 16)
    assert p.bf16_seconds is None and p.speedup == 1.0
    assert not model.training
