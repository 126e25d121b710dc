"""The sentencepiece subword option: round trips, training, sampling, evaluation, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.errors import CheckpointError, OptionError
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


# ----------------------------------------------------------------------------- vocabulary sizes


def _chinese_like(n_chars: int = 3000, lines: int = 1500, seed: int = 7) -> str:
    """Prose-like text of ``n_chars`` distinct CJK characters (Zipf-like frequencies, every one
    present at least once, in the first half), lines of 30 characters and a full stop."""
    import random

    rng = random.Random(seed)
    chars = [chr(0x4E00 + 7 * i) for i in range(n_chars)]
    weights = [1.0 / (i + 1) for i in range(n_chars)]
    every = "".join(chars)
    head = [every[i : i + 30] + "。" for i in range(0, n_chars, 30)]
    body = ["".join(rng.choices(chars, weights, k=30)) + "。" for _ in range(lines)]
    return "\n".join(head + body) + "\n"


def _cli_train(tmp_path: Path, text: str, *args: str) -> tuple[int, str, Path]:
    corpus = tmp_path / "zh.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    small = ["--hidden", "16", "--layers", "1", "--embed-dim", "8", "-b", "4", "--max-steps", "1"]
    r = CliRunner().invoke(app, ["train", str(corpus), "-o", str(out), *small, *args])
    return r.exit_code, r.stderr, out


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_the_default_vocabulary_grows_to_cover_a_chinese_text(tmp_path: Path, kind: str) -> None:
    """3,001 distinct characters need 3,003 pieces: the default 1024 used to end in
    sentencepiece's RuntimeError (naming a --character_coverage charrnn has no such option)."""
    from charrnn.run import defaults

    text = _chinese_like()
    code, err, out = _cli_train(tmp_path, text, "--tokenizer", kind)
    assert code == 0, err
    assert "Traceback" not in err and "character_coverage" not in err
    tok = ck.load_model(out).vocab
    assert isinstance(tok, SubwordTokenizer)
    assert tok.count_unknown(text) == 0  # every character has its piece
    assert defaults.subword_vocab_size(3003) == 3003 + defaults.SUBWORD_MERGED_PIECES
    assert 3003 < len(tok) <= 3003 + defaults.SUBWORD_MERGED_PIECES
    assert f"{kind} vocabulary of 3,515 pieces instead of the default 1024" in err
    assert "3,001 distinct characters" in err  # 3,000 CJK and the full stop
    # An English text keeps the plain default, without a note.
    assert defaults.subword_vocab_size(90) == defaults.DEFAULT_VOCAB_SIZE


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_a_vocab_size_too_small_for_the_characters_is_a_usage_error(
    tmp_path: Path, kind: str
) -> None:
    code, err, out = _cli_train(
        tmp_path, _chinese_like(), "--tokenizer", kind, "--vocab-size", "1024"
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: --vocab-size 1024: ")
    assert "3,001 distinct characters" in lines[0]
    assert "the smallest size that works is 3003" in lines[0]
    assert not out.exists()  # no half-made run folder left behind
    # A tiny corpus, through the library: the size named is the smallest that trains.
    text = "the quick brown fox jumps over the lazy dog\nPACK MY BOX\n"
    with pytest.raises(OptionError, match=r"^--vocab-size 16: .* smallest size that works is 38$"):
        train_subword([text], kind, 16)
    assert len(train_subword([text], kind, 38)) <= 38
    with pytest.raises(OptionError, match="works is 38"):
        train_subword([text], kind, 37)


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_a_vocab_size_larger_than_the_text_allows_is_said(tmp_path: Path, kind: str) -> None:
    code, err, out = _cli_train(
        tmp_path,
        "abc abd\nabc abd abc\n" * 3,
        "--tokenizer",
        kind,
        "--vocab-size",
        "500",
        "--val-fraction",
        "0",
    )
    assert code == 0, err
    got = len(ck.load_model(out).vocab)
    assert got < 500
    assert f"note: --vocab-size 500: the training text is too short for more than {got} " in err
    # Library callers get the same notice through ``notes``.
    notes: list[str] = []
    train_subword(["abc abd\n" * 3], kind, 500, notes)
    assert len(notes) == 1 and notes[0].startswith("--vocab-size 500: ")


def test_a_text_of_newlines_only_is_a_one_line_error(tmp_path: Path) -> None:
    code, err, _ = _cli_train(tmp_path, "\n\n\n\n", "--tokenizer", "bpe", "--val-fraction", "0")
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        f"charrnn: error: {tmp_path / 'zh.txt'}: no character but newlines and NUL for a bpe "
        "tokenizer to learn from; use --tokenizer char"
    )
