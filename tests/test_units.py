from __future__ import annotations

import math

import pytest

from charrnn.units import Score, best_bits_per_char, nats_per_char


def test_score_per_token_and_per_character_describe_one_total() -> None:
    # 100 pieces covering 250 characters, 180 nats in all.
    s = Score(tokens=100, chars=250, nats=180.0)
    assert s.nats_per_token == pytest.approx(1.8)
    assert s.nats_per_char == pytest.approx(0.72)
    assert s.bits_per_char == pytest.approx(0.72 / math.log(2))
    assert s.bits_per_token == pytest.approx(1.8 / math.log(2))
    assert s.perplexity == pytest.approx(math.exp(0.72))
    assert s.perplexity_per_token == pytest.approx(math.exp(1.8))
    assert s.chars_per_token == pytest.approx(2.5)
    assert s.per_char(1.0) == pytest.approx(0.4)  # another per-token loss on the same text
    d = s.to_dict("val_")
    assert d["val_bits_per_char"] == s.bits_per_char and d["val_tokens"] == 100


def test_characters_score_the_same_per_token_and_per_char() -> None:
    s = Score.from_mean(2.0, tokens=50, chars=50)
    assert s.nats == pytest.approx(100.0)
    assert s.nats_per_char == s.nats_per_token == pytest.approx(2.0)
    assert nats_per_char(2.0, 1.0) == 2.0


def test_empty_score_is_nan_and_huge_perplexity_does_not_overflow() -> None:
    assert math.isnan(Score(0, 0, 0.0).nats_per_char)
    assert math.isnan(Score(0, 0, 0.0).nats_per_token)
    assert Score(1, 1, 1e6).perplexity == math.exp(700.0)


def test_best_bits_per_char_is_the_stored_figure() -> None:
    assert best_bits_per_char({"best_val_bits_per_char": 2.5, "best_val_loss": 9.0}) == 2.5
    assert best_bits_per_char({"best_val_bits_per_char": 3}) == 3.0
    # No stored figure (no finite validation yet): unknown, whatever else the metrics hold.
    assert best_bits_per_char({"best_val_loss": 1.0, "val_nats_per_char": 2.0}) is None
    assert best_bits_per_char({"best_val_bits_per_char": None}) is None
    assert best_bits_per_char({}) is None
