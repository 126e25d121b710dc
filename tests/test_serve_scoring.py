"""Scoring a text: eval-perplexity's totals and per-token figures that add up to them."""

from __future__ import annotations

from pathlib import Path

import pytest

from charrnn.evaluation import score_text
from charrnn.serve.scoring import score
from charrnn.store.checkpoint import load_model


def test_totals_and_per_token_figures(trained_run: Path, small_text: str) -> None:
    loaded = load_model(trained_run)
    text = small_text[:3000]  # long enough for the parallel protocol
    got = score(loaded.model, loaded.vocab, text)
    want = score_text(loaded.model, loaded.vocab, [text])
    assert got["nats"] == want.score.nats and got["chars"] == len(text)
    tokens = got["tokens"]
    assert len(tokens) == len(text) and "".join(t["text"] for t in tokens) == text
    assert tokens[0]["nats"] is None and len(tokens[1]["top"]) == 5
    exact = score_text(loaded.model, loaded.vocab, [text], streams=1).score.nats
    assert sum(t["nats"] for t in tokens[1:]) == pytest.approx(exact, rel=1e-5)
