from __future__ import annotations

import pytest

from charrnn.run import defaults
from charrnn.run.plan import model_config as auto_model_config
from charrnn.run.request import TrainRequest


def test_size_rules_follow_the_corpus_and_the_vocabulary() -> None:
    assert [defaults.hidden_size(n) for n in (99_999, 100_000, 4_999_999, 5_000_000)] == [
        128,
        256,
        256,
        512,
    ]
    assert defaults.embed_dim(256, 512) == 64  # characters of an alphabet
    assert defaults.embed_dim(257, 512) == 512  # Chinese, subword pieces: as wide as hidden
    mc = auto_model_config(
        TrainRequest.from_options(sources=("x",)), n_train=1_700_000, vocab_size=6000
    )
    assert (mc.hidden, mc.embed_dim) == (256, 256)
    asked = auto_model_config(
        TrainRequest.from_options(sources=("x",), embed_dim=32), 1_700_000, 6000
    )
    assert asked.embed_dim == 32


def test_long_runs_get_dropout_and_rates_depend_on_the_cell() -> None:
    assert defaults.long_run_dropout(0.0, 5.9) is None
    assert defaults.long_run_dropout(0.0, 6.0) == defaults.LONG_RUN_DROPOUT
    assert defaults.long_run_dropout(0.2, 50.0) is None  # already more
    assert defaults.long_run_dropout(0.0, None) is None
    assert defaults.learning_rate("gru") == defaults.learning_rate("lstm") == pytest.approx(8e-3)
    assert defaults.learning_rate("rnn") == pytest.approx(2e-3)


def test_fit_batch_shrinks_for_small_corpora() -> None:
    assert defaults.fit_batch(10_000, 64, 64).shrunk is False
    f = defaults.fit_batch(500, 64, 64)
    assert (f.batch_size, f.seq_len, f.shrunk) == (7, 64, True)
    f = defaults.fit_batch(20, 64, 64)
    assert (f.batch_size, f.seq_len) == (1, 19)
