from __future__ import annotations

import pytest
import torch

from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.run import probes
from charrnn.run.probes import StepTimes


def _model() -> CharRNN:
    return CharRNN(ModelConfig(vocab_size=30, hidden=16, embed_dim=8, dropout=0.3, layers=2))


def test_probe_steps_times_every_combination_and_changes_nothing() -> None:
    model = _model().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    times = probes.probe_steps(model, 4, 16, [1, 2], ["fp32", "bf16"])
    assert set(times.seconds) == {(1, "fp32"), (1, "bf16"), (2, "fp32"), (2, "bf16")}
    assert all(0 < s < 60 for s in times.seconds.values())
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert all(q.grad is None for q in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training  # the mode it had


def test_step_times_pick_the_fastest() -> None:
    times = StepTimes({(1, "fp32"): 0.30, (2, "fp32"): 0.20, (1, "bf16"): 0.10, (2, "bf16"): 0.15})
    assert times.fastest("fp32") == (2, 0.20)
    assert times.fastest("bf16") == (1, 0.10)
    assert times.bf16_speedup() == pytest.approx(2.0)
    only = StepTimes({(1, "fp32"): 0.3, (2, "fp32"): 0.4})
    assert only.bf16_speedup() is None
    with pytest.raises(KeyError):
        only.fastest("bf16")
