"""The sentencepiece subword option: round trips, training, sampling, evaluation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import CheckpointError
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.text.tokenizers import SubwordTokenizer, train_subword
from charrnn.text.vocab import UNK_ID

pytest.importorskip("sentencepiece")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subword_round_trip_keeps_text_exactly(small_text: str, kind: str) -> None:
    text = small_text + "\tindented  twice\n\n\nend\n"
    tok = train_subword([text], kind, 300)
    assert isinstance(tok, SubwordTokenizer) and 60 < len(tok) <= 300
    sample = "THE LAKE\n\n  If a\tfading wagon,\n"
    ids = tok.encode(sample)
    assert tok.decode(ids) == sample == "".join(tok.itos[i] for i in ids)
    assert len(ids) < len(sample)  # pieces longer than one character exist
    assert tok.itos[tok.stoi["\n"]] == "\n"
    # A character never seen in training is the unknown piece, id 0.
    ids = tok.encode("a 漢 b")
    assert UNK_ID in ids and tok.count_unknown("a 漢 b") == 1
    again = SubwordTokenizer(tok.proto, kind)
    assert again.encode(sample) == tok.encode(sample)


def test_bpe_run_samples_evaluates_and_resumes(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text)
    out = tmp_path / "run"
    req = TrainRequest.from_options(
        sources=(str(corpus),),
        tokenizer="bpe",
        vocab_size=256,
        hidden=64,
        layers=1,
        embed_dim=32,
        batch_size=16,
        lr=1e-2,
        max_steps=60,
        eval_every=30,
        out=str(out),
    )
    run = open_run(req, torch.device("cpu"))
    assert run.corpus.train_chars_per_token > 1.5
    run.train()
    best = ck.resolve_checkpoint(out)
    assert (best / "tokenizer.model").is_file()
    config = json.loads((best / ck.CONFIG).read_text())
    assert config["tokenizer"]["type"] == "bpe"
    loaded = ck.load_model(out)
    assert isinstance(loaded.vocab, SubwordTokenizer)

    runner = CliRunner()
    r = runner.invoke(
        app, ["sample", "-c", str(out), "--prime", "THE ", "--length", "40", "--seed", "1"]
    )
    assert r.exit_code == 0 and r.stdout.startswith("THE ") and len(r.stdout) > 45
    held = small_text[-2000:]
    r = runner.invoke(app, ["eval-perplexity", "-", "-c", str(out), "--json"], input=held)
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["files"][0]
    # Bits per character and per token describe the same total loss.
    first = loaded.vocab.decode(loaded.vocab.encode(held)[:1])
    total = row["nats_per_token"] * row["tokens_scored"]
    assert math.isclose(row["nats_per_char"], total / (len(held) - len(first)), rel_tol=1e-9)
    assert row["bits_per_char"] < row["bits_per_token"]
    r = runner.invoke(app, ["train", "--resume", str(out), "--max-steps", "64"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["train", "--resume", str(out), "--tokenizer", "char"])
    assert r.exit_code == 2

    # Fine-tuned from it, a run keeps its tokenizer (pieces are not added; see README).
    other = tmp_path / "other.txt"
    other.write_text(small_text[20_000:26_000].upper())
    ft = tmp_path / "ft"
    args = ["train", str(other), "--init-from", str(out), "-o", str(ft), "--max-steps", "4"]
    r = runner.invoke(app, [*args, "-b", "8"])
    assert r.exit_code == 0, r.output
    assert "the subword tokenizer of the model it starts from is kept" in r.stderr
    parent, child = ck.load_model(out), ck.load_model(ft)
    assert isinstance(child.vocab, SubwordTokenizer) and child.vocab.proto == parent.vocab.proto
    assert child.config["tokenizer"] == parent.config["tokenizer"]

    best = ck.resolve_checkpoint(out)  # the resumed run may have a newer best
    (best / "tokenizer.model").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"tokenizer\.model: not a valid sentencepiece"):
        ck.load_model(best)
