from __future__ import annotations

from dataclasses import replace

import pytest

from charrnn.model.config import ModelConfig
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


def test_many_passes_regularise_only_from_the_thresholds_on() -> None:
    mc = ModelConfig(vocab_size=96, cell="gru", layers=2, hidden=256, embed_dim=64, dropout=0.0)
    assert defaults.many_passes(mc, defaults.MANY_PASSES_EPOCHS - 0.01) is None
    assert defaults.many_passes(mc, None) is None
    some = defaults.many_passes(mc, defaults.MANY_PASSES_EPOCHS)
    assert some is not None
    assert some.changes() == {
        "embed_dim": 256,
        "lr": defaults.LONG_RUN_LR,
        "weight_decay": defaults.LONG_RUN_WEIGHT_DECAY,
    }  # no dropout yet: that starts at LONG_RUN_EPOCHS
    almost = defaults.many_passes(mc, defaults.LONG_RUN_EPOCHS - 0.01)
    assert almost is not None and almost.dropout is None
    many = defaults.many_passes(mc, defaults.LONG_RUN_EPOCHS)
    assert many is not None and many.changes() == {**some.changes(), "dropout": 0.1}
    below = defaults.many_passes(mc, defaults.VERY_LONG_RUN_EPOCHS - 0.01)
    assert below is not None and below.dropout == defaults.LONG_RUN_DROPOUT == 0.1
    very = defaults.many_passes(mc, defaults.VERY_LONG_RUN_EPOCHS)
    assert very is not None and very.changes() == {**some.changes(), "dropout": 0.2}
    # dropout is only ever raised: a model's 0.15 becomes 0.2 from 12 passes, stays below
    mid = replace(mc, dropout=0.15)
    assert defaults.many_passes(mid, defaults.LONG_RUN_EPOCHS).dropout is None  # type: ignore[union-attr]
    assert defaults.many_passes(mid, defaults.VERY_LONG_RUN_EPOCHS).dropout == 0.2  # type: ignore[union-attr]
    # more dropout and an embedding already as wide as the hidden state are kept
    kept = defaults.many_passes(replace(mc, dropout=0.25, embed_dim=256), 50.0)
    assert kept is not None and set(kept.changes()) == {"lr", "weight_decay"}
    # the tanh RNN keeps its lower learning rate (it diverges at the GRU's)
    rnn = defaults.many_passes(replace(mc, cell="rnn"), 50.0)
    assert rnn is not None and "lr" not in rnn.changes()


def test_rates_depend_on_the_cell() -> None:
    assert defaults.learning_rate("gru") == defaults.learning_rate("lstm") == pytest.approx(8e-3)
    assert defaults.learning_rate("rnn") == pytest.approx(2e-3)


def test_fit_batch_shrinks_for_small_corpora() -> None:
    assert defaults.fit_batch(10_000, 64, 64).shrunk is False
    f = defaults.fit_batch(500, 64, 64)
    assert (f.batch_size, f.seq_len, f.shrunk) == (7, 64, True)
    f = defaults.fit_batch(20, 64, 64)
    assert (f.batch_size, f.seq_len) == (1, 19)


def test_a_run_ends_after_the_useful_passes() -> None:
    wide = 100.0  # steps a pass: 16 passes are 1,600 steps, more than the least steps
    assert defaults.useful_passes(None, wide) is None
    assert defaults.useful_passes(defaults.MAX_USEFUL_PASSES, wide) is None  # the time ends it
    assert defaults.useful_passes(defaults.MAX_USEFUL_PASSES + 0.01, wide) == 16.0
    assert defaults.useful_passes(170.0, wide) == 16.0
    # a tiny corpus, 8 steps a pass: 16 passes would be 128 steps; it ends after the least steps
    least = defaults.MIN_USEFUL_STEPS / 8
    assert least > defaults.MAX_USEFUL_PASSES
    assert defaults.useful_passes(20.0, 8.0) is None
    assert defaults.useful_passes(least, 8.0) is None
    assert defaults.useful_passes(least + 0.01, 8.0) == least
    assert defaults.useful_passes(1000.0, 8.0) == least
    # where 16 passes make exactly the least steps, both say the same
    even = defaults.MIN_USEFUL_STEPS / defaults.MAX_USEFUL_PASSES
    assert defaults.useful_passes(17.0, even) == defaults.MAX_USEFUL_PASSES
