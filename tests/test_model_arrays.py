"""A model as NumPy arrays (charrnn/model/arrays.py): from a torch CharRNN and back, the shape
check, the tied head, and which models the NumPy engine can run (``supports``)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from charrnn.model.arrays import ArrayModel, supports
from charrnn.model.config import ModelConfig, weight_shapes
from charrnn.model.rnn import CharRNN


def _model(**kw: object) -> CharRNN:
    base: dict[str, object] = dict(vocab_size=11, cell="lstm", layers=2, hidden=6, embed_dim=4)
    base.update(kw)
    torch.manual_seed(0)
    return CharRNN(ModelConfig(**base)).eval()  # type: ignore[arg-type]


def _logits(model: CharRNN) -> torch.Tensor:
    x = torch.tensor([[1, 2, 3, 4, 5, 0, 10]])
    with torch.no_grad():
        return model(x)[0]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_from_torch_copies_every_stored_weight_as_float32(cell: str) -> None:
    model = _model(cell=cell)
    am = ArrayModel.from_torch(model)
    assert am.config == model.config
    assert set(am.arrays) == set(weight_shapes(model.config))
    sd = model.state_dict()
    for name, a in am.arrays.items():
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, sd[name].numpy())
    # A copy: training the model further does not change the arrays.
    with torch.no_grad():
        model.head.bias.add_(1.0)
    assert not np.array_equal(am.arrays["head.bias"], model.head.bias.detach().numpy())


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_to_torch_gives_back_the_same_model(cell: str) -> None:
    model = _model(cell=cell)
    back = ArrayModel.from_torch(model).to_torch()
    assert not back.training
    assert torch.equal(_logits(back), _logits(model))


def test_a_tied_head_is_served_from_the_embedding() -> None:
    model = _model(hidden=5, embed_dim=5, tie_weights=True)
    am = ArrayModel.from_torch(model)
    assert "head.weight" not in am.arrays
    assert am.weight("head.weight") is am.arrays["embedding.weight"]
    back = am.to_torch()
    assert back.head.weight is back.embedding.weight  # still tied after loading
    assert torch.equal(_logits(back), _logits(model))


def test_an_untied_head_is_its_own_weight() -> None:
    am = ArrayModel.from_torch(_model())
    assert am.weight("head.weight") is am.arrays["head.weight"]
    assert am.weight("embedding.weight") is am.arrays["embedding.weight"]


def test_low_precision_weights_are_stored_as_float32() -> None:
    model = _model().to(torch.bfloat16)
    am = ArrayModel.from_torch(model)
    assert all(a.dtype == np.float32 for a in am.arrays.values())
    ref = model.embedding.weight.detach().float().numpy()
    np.testing.assert_array_equal(am.arrays["embedding.weight"], ref)


def test_arrays_that_do_not_match_the_config_are_refused() -> None:
    am = ArrayModel.from_torch(_model())
    arrays = dict(am.arrays)
    missing = {k: v for k, v in arrays.items() if k != "rnn.bias_hh_l1"}
    with pytest.raises(ValueError, match=r"rnn\.bias_hh_l1"):
        ArrayModel(am.config, missing)
    extra = {**arrays, "rnn.weight_ih_l2": np.zeros((24, 6), np.float32)}
    with pytest.raises(ValueError, match=r"rnn\.weight_ih_l2"):
        ArrayModel(am.config, extra)
    wrong = {**arrays, "head.bias": np.zeros(12, np.float32)}  # the right names, one shape off
    with pytest.raises(ValueError, match=r"weights do not match the config: \['head\.bias'\]"):
        ArrayModel(am.config, wrong)


def test_supports_array_models_and_float32_cpu_models() -> None:
    model = _model()
    assert supports(ArrayModel.from_torch(model))
    assert supports(model)
    assert not supports(_model().to(torch.bfloat16))
    assert not supports(_model().to(torch.float64))


def test_supports_refuses_a_model_on_a_gpu() -> None:
    """Told from the head's weight alone (no CUDA needed to check the rule)."""
    weight = SimpleNamespace(device=torch.device("cuda"), dtype=torch.float32)
    assert not supports(SimpleNamespace(head=SimpleNamespace(weight=weight)))
    weight = SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32)
    assert supports(SimpleNamespace(head=SimpleNamespace(weight=weight)))
