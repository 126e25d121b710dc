"""The model's configuration (charrnn/model/config.py): validation, the JSON round trip, and the
tensor names, shapes and parameter count it implies, against a real CharRNN's."""

from __future__ import annotations

import dataclasses
import json

import pytest

from charrnn.model.config import CELLS, GATES, ModelConfig, parameters_of, weight_shapes
from charrnn.model.rnn import CharRNN

CONFIGS = [
    ModelConfig(vocab_size=10, cell=cell, layers=layers, hidden=6, embed_dim=4, dropout=0.1)
    for cell in CELLS
    for layers in (1, 3)
] + [ModelConfig(vocab_size=7, cell="lstm", layers=2, hidden=5, embed_dim=5, tie_weights=True)]


@pytest.mark.parametrize("mc", CONFIGS, ids=str)
def test_to_dict_and_from_dict_round_trip_through_json(mc: ModelConfig) -> None:
    d = json.loads(json.dumps(mc.to_dict()))
    assert ModelConfig.from_dict(d) == mc
    assert set(d) == {f.name for f in dataclasses.fields(ModelConfig)}


def test_from_dict_refuses_unknown_keys_and_checks_values() -> None:
    d = ModelConfig(vocab_size=10).to_dict()
    with pytest.raises(TypeError):
        ModelConfig.from_dict({**d, "heads": 4})
    with pytest.raises(ValueError, match="cell must be one of lstm, gru, rnn"):
        ModelConfig.from_dict({**d, "cell": "transformer"})


def test_config_is_frozen() -> None:
    mc = ModelConfig(vocab_size=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mc.hidden = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "gru2"}, "cell must be one of lstm, gru, rnn, got 'gru2'"),
        ({"vocab_size": 1}, "vocab_size must be at least 2"),
        ({"layers": 0}, "layers must be at least 1"),
        ({"hidden": 0}, "hidden must be at least 1"),
        ({"embed_dim": -3}, "embed_dim must be at least 1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"tie_weights": True, "hidden": 8, "embed_dim": 4}, "tie_weights needs embed_dim"),
    ],
)
def test_bad_configs_are_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"vocab_size": 10, "hidden": 8, "embed_dim": 8}
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def test_the_limits_themselves_are_accepted() -> None:
    mc = ModelConfig(vocab_size=2, layers=1, hidden=1, embed_dim=1, dropout=0.0, tie_weights=True)
    assert parameters_of(mc) == CharRNN(mc).num_parameters()


@pytest.mark.parametrize("mc", CONFIGS, ids=str)
def test_weight_shapes_are_the_state_dict_of_a_real_model(mc: ModelConfig) -> None:
    sd = CharRNN(mc).state_dict()
    got = {name: tuple(t.shape) for name, t in sd.items()}
    if mc.tie_weights:  # the head shares the embedding and is not stored
        assert got.pop("head.weight") == (mc.vocab_size, mc.hidden)
    shapes = weight_shapes(mc)
    assert shapes == got
    assert list(shapes) == list(got)  # in state_dict order


@pytest.mark.parametrize("mc", CONFIGS, ids=str)
def test_parameters_of_counts_a_real_models_parameters(mc: ModelConfig) -> None:
    assert parameters_of(mc) == CharRNN(mc).num_parameters()


def test_parameters_by_hand() -> None:
    """V*E + G*H*(E + H) + 2*G*H + H*V + V for one GRU layer: 10*4 + 3*5*9 + 30 + 50 + 10."""
    mc = ModelConfig(vocab_size=10, cell="gru", layers=1, hidden=5, embed_dim=4)
    assert GATES["gru"] == 3
    assert parameters_of(mc) == 40 + 135 + 30 + 50 + 10
    # A second layer takes H inputs, not E; tying drops the head's weight (H*V).
    assert parameters_of(dataclasses.replace(mc, layers=2)) == 265 + 3 * 5 * 10 + 30
    tied = dataclasses.replace(mc, embed_dim=5, tie_weights=True)
    assert parameters_of(tied) == 10 * 5 + 3 * 5 * 10 + 30 + 10
