from __future__ import annotations

import math

import pytest
import torch

from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.training.average import WeightAverage, average_weight, replaces
from charrnn.training.config import TrainConfig, TrainerState


def _model(seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab_size=11, cell="gru", layers=1, hidden=8, embed_dim=4))


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _set(model: torch.nn.Module, value_seed: int) -> list[torch.Tensor]:
    """Give ``model`` new random parameters; return them."""
    g = torch.Generator().manual_seed(value_seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return _params(model)


def test_the_weight_is_the_plain_mean_then_the_decay() -> None:
    assert [average_weight(0.9, n) for n in (1, 2, 5, 10)] == [1.0, 0.5, 0.2, 0.1]
    assert average_weight(0.9, 11) == pytest.approx(0.1) and average_weight(
        0.9, 500
    ) == pytest.approx(0.1)
    assert average_weight(0.99, 50) == 1 / 50 and average_weight(0.99, 101) == pytest.approx(0.01)
    assert average_weight(0.0, 7) == 1.0  # no memory: the latest weights
    for decay, n in ((0.9, 0), (1.0, 3), (-0.1, 3), (math.nan, 3)):
        with pytest.raises(ValueError):
            average_weight(decay, n)


def test_the_average_follows_its_formula_step_by_step() -> None:
    """Fifteen updates at decay 0.9: the plain mean of the first ten, then the EMA."""
    model, decay = _model(), 0.9
    avg = WeightAverage(model, decay)
    expected: list[torch.Tensor] | None = None
    for n in range(1, 16):
        current = _set(model, n)
        avg.update(model)
        w = max(1 - decay, 1 / n)
        expected = (
            current
            if expected is None
            else [e + w * (c - e) for e, c in zip(expected, current, strict=True)]
        )
        for a, e in zip(avg.model.parameters(), expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)
    assert avg.steps == 15
    assert expected is not None
    # the first ten are the plain mean
    ten, sets = WeightAverage(model, decay), []
    for n in range(1, 11):
        sets.append(_set(model, n))
        ten.update(model)
    for i, a in enumerate(ten.model.parameters()):
        mean = torch.stack([s[i] for s in sets]).mean(0)
        torch.testing.assert_close(a, mean, rtol=1e-5, atol=1e-6)


def test_the_averaged_copy_is_separate_and_copy_into_keeps_the_parameters() -> None:
    model = _model()
    avg = WeightAverage(model, 0.5)
    first = _set(model, 1)
    avg.update(model)
    _set(model, 2)
    ids = [id(p) for p in model.parameters()]
    for a, f in zip(avg.model.parameters(), first, strict=True):
        assert torch.equal(a, f)  # the copy did not follow the model's later change
    avg.copy_into(model)
    assert [id(p) for p in model.parameters()] == ids  # the optimizer still holds them
    for p, f in zip(model.parameters(), first, strict=True):
        assert torch.equal(p, f)


@pytest.mark.parametrize(
    ("average", "scores", "expected"),
    [
        (1.0, [1.2, 1.1], True),
        (1.1, [1.2, 1.1], False),  # a tie keeps the weights as trained
        (1.15, [1.2, 1.1], False),  # better than the last weights, not than the best
        (1.0, [None, 1.1], True),  # no best yet
        (1.0, [math.nan, 1.1], True),  # a NaN score is no bar
        (math.nan, [1.2], False),
        (math.inf, [math.nan], False),
        (1.0, [], True),
    ],
)
def test_the_average_replaces_the_weights_only_as_a_finite_new_best(
    average: float, scores: list[float | None], expected: bool
) -> None:
    assert replaces(average, scores) is expected


def test_the_trainer_state_carries_the_average_and_a_restored_one_goes_on_exactly() -> None:
    model, state = _model(), TrainerState()
    avg = WeightAverage(model, 0.8, state)
    for n in range(1, 8):
        _set(model, n)
        avg.update(model)
    assert state.average_steps == 7 and state.average is not None
    for a, s in zip(avg.model.parameters(), state.average, strict=True):
        assert torch.equal(a, s)  # the live tensors: what a checkpoint saves
    saved = TrainerState(average=[t.clone() for t in state.average], average_steps=7)
    restored = WeightAverage(_model(seed=5), 0.8, saved)  # another model's starting weights
    for n in range(8, 20):
        _set(model, n)
        avg.update(model)
        restored.update(model)
    assert restored.steps == avg.steps == saved.average_steps == 19
    for a, b in zip(avg.model.parameters(), restored.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_stored_average_of_other_shapes_is_refused() -> None:
    other = CharRNN(ModelConfig(vocab_size=11, cell="gru", layers=1, hidden=9, embed_dim=4))
    state = TrainerState(average=_params(other), average_steps=3)
    with pytest.raises(ValueError, match="shapes"):
        WeightAverage(_model(), 0.9, state)


def test_a_run_averages_only_with_a_decay_and_a_validation_text() -> None:
    model, state = _model(), TrainerState()
    on = TrainConfig(ema_decay=0.99)
    assert WeightAverage.for_run(model, on, state, validates=True) is not None
    assert WeightAverage.for_run(model, on, TrainerState(), validates=False) is None
    assert WeightAverage.for_run(model, TrainConfig(), TrainerState(), validates=True) is None
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
