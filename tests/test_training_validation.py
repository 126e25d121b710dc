from __future__ import annotations

import pytest
import torch

from charrnn.evaluation import evaluate_chunks
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.distributed import SINGLE
from charrnn.training.validation import Validation

CPU = torch.device("cpu")


def _model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=13, cell="gru", layers=1, hidden=16, embed_dim=8))


def test_a_stream_of_fewer_than_two_tokens_is_no_validation() -> None:
    cfg = TrainConfig()
    assert not Validation(None, cfg).available
    assert not Validation(torch.tensor([3]), cfg).available
    assert Validation(torch.tensor([3, 4]), cfg).available


def test_the_score_is_the_evaluation_protocol_of_the_config_and_is_timed() -> None:
    ids = torch.randint(0, 13, (3000,), generator=torch.Generator().manual_seed(1))
    model = _model().eval()
    cfg = TrainConfig(eval_streams=4)
    v = Validation(ids, cfg, chars=3000)
    got = v.score(model)
    want = evaluate_chunks(model, [ids], streams=4, chars=3000)
    assert got.nats_per_token == pytest.approx(want.nats_per_token, rel=1e-6)
    assert got.chars == want.chars and v.clock.last > 0 and v.clock.total == v.clock.last


def test_capped_ids_drop_the_character_count_of_the_whole_text() -> None:
    ids = torch.randint(0, 13, (500,))
    v = Validation(ids, TrainConfig(eval_max_tokens=100), chars=500)
    assert v.ids is not None and v.ids.numel() == 100 and v.chars is None
    assert Validation(ids, TrainConfig(), chars=500).chars == 500


@pytest.mark.parametrize(
    ("share", "spent", "elapsed", "expected"),
    [(None, 100.0, 1.0, True), (0.05, 1.0, 100.0, True), (0.05, 10.0, 100.0, False)],
)
def test_periodic_evaluations_come_every_n_steps_within_their_share(
    share: float | None, spent: float, elapsed: float, expected: bool
) -> None:
    v = Validation(torch.arange(10) % 13, TrainConfig(eval_every=10, eval_share=share))
    v.clock.record(spent / 2)
    v.clock.record(spent / 2)  # total = spent, last = spent / 2
    assert not v.due(9, elapsed, SINGLE, CPU) and not v.due(11, elapsed, SINGLE, CPU)
    assert v.due(20, elapsed, SINGLE, CPU) is expected


def test_the_reserve_counts_each_scoring_of_the_final_validation() -> None:
    ids, model = torch.arange(4000) % 13, _model()
    assert Validation(ids, TrainConfig()).reserve(model) == 0.0  # no time limit
    v = Validation(ids, TrainConfig(max_time=100.0))
    v.clock.record(1.5)
    assert v.reserve(model) == 1.5 and v.reserve(model, evaluations=2) == 3.0
    assert Validation(None, TrainConfig(max_time=100.0)).reserve(model) == 0.0
