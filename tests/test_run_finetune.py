"""Fine-tuning (``charrnn train NEW --init-from RUN``) and early stopping (``--patience N``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.run import defaults, finetune
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store.metrics import read_metrics
from charrnn.text.vocab import Vocab

from .conftest import ROOT

CPU = torch.device("cpu")
CODE = ROOT / "corpora" / "code.txt"
runner = CliRunner()


@pytest.fixture(scope="module")
def code_text() -> str:
    """Python-like source: a corpus unlike the verse the shared run learned, with characters
    the verse never has (digits, brackets, ``_``, ``=``...)."""
    return CODE.read_text(encoding="utf-8")[:12_000]


def _small(corpus: Path, out: Path, **kw) -> TrainRequest:  # type: ignore[no-untyped-def]
    options = dict(
        sources=(str(corpus),),
        precision="fp32",
        batch_size=16,
        seq_len=32,
        warmup=4,
        max_steps=30,
        eval_every=15,
        out=str(out),
    )
    options.update(kw)
    return TrainRequest.from_options(**options)  # type: ignore[arg-type]


# ------------------------------------------------------------------------ the vocabulary


def test_extended_vocabulary_keeps_old_ids_and_appends_new_ones() -> None:
    old = Vocab.build("banana")  # <UNK>, a, b, n
    new = old.extended({"z": 3, "a": 5, "é": 1, "c": 2, "q": 1}, min_count=2)
    assert new.itos[: len(old)] == old.itos  # the parent's ids, unchanged
    assert new.itos[len(old) :] == ["c", "z"]  # new characters after them, in code-point order
    assert [new.stoi[c] for c in "abn"] == [old.stoi[c] for c in "abn"]
    # Counts are the new text's: 0 for b and n, which it lacks; é and q (once each, under
    # min_count 2) fold into <UNK>.
    assert new.counts == [2, 5, 0, 0, 2, 3]
    assert new.encode("zé") == [5, 0]
    assert Vocab.from_dict(new.to_dict()).itos == new.itos  # the order survives a checkpoint


# ------------------------------------------------------------------------ the weights


@pytest.mark.parametrize("tie", [False, True])
def test_copied_rows_equal_the_parents_and_new_rows_start_unlikely(tie: bool) -> None:
    torch.manual_seed(0)
    size = {"hidden": 12, "embed_dim": 12 if tie else 6, "tie_weights": tie}
    parent = CharRNN(ModelConfig(vocab_size=6, cell="lstm", layers=2, **size))
    with torch.no_grad():
        for p in parent.parameters():
            p.normal_()  # not the default initialisation: a copy cannot match by chance
    child = CharRNN(ModelConfig(vocab_size=8, cell="lstm", layers=2, dropout=0.2, **size))
    counts = [0, 40, 30, 20, 5, 3, 1, 1]  # ids 6 and 7 are new, each 1% of the new text
    finetune.copy_weights(parent, child, counts)
    p, c = parent.state_dict(), child.state_dict()
    for name, t in p.items():
        got = c[name][:6] if name in finetune.ROWS else c[name]
        assert torch.equal(got, t), name
    mean_emb = p["embedding.weight"][1:6].mean(dim=0)
    assert torch.allclose(c["embedding.weight"][6], mean_emb)
    assert torch.allclose(c["embedding.weight"][7], mean_emb)
    if not tie:
        assert torch.allclose(c["head.weight"][7], p["head.weight"][1:6].mean(dim=0))
    assert float(c["head.bias"][6]) == pytest.approx(
        float(p["head.bias"][1:6].mean()) + math.log(5 * 0.01), rel=1e-5
    )
    # The promise of the rule: in any context, a new character starts at most as likely as
    # its share of the new text.
    child.eval()
    with torch.no_grad():
        logits, _ = child(torch.randint(0, 8, (4, 50)))
    probs = logits.softmax(-1)[..., 6:]
    assert float(probs.max()) <= 0.01 + 1e-6


def test_copy_refuses_another_architecture() -> None:
    parent = CharRNN(ModelConfig(vocab_size=6, hidden=8, embed_dim=4))
    with pytest.raises(ValueError, match="architecture"):
        finetune.copy_weights(parent, CharRNN(ModelConfig(vocab_size=6, hidden=9, embed_dim=4)), [])


# ------------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--hidden", "32"], 2, "--init-from: --hidden 32 conflicts with the model it starts from"),
        (["--cell", "lstm"], 2, "--init-from: --cell lstm conflicts with the model"),
        (["--layers", "2"], 2, "--init-from: --layers 2 conflicts"),
        (["--embed-dim", "64"], 2, "--init-from: --embed-dim 64 conflicts"),
        (["--tie-weights"], 2, "--init-from: --tie-weights conflicts"),
        (["--tokenizer", "bpe"], 2, "keeps the tokenizer of the model it starts from"),
        (["--resume", "RUN"], 2, "--init-from starts a new run; it cannot go with --resume"),
    ],
)
def test_options_that_conflict_with_the_parent_are_refused(
    trained_run: Path, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    corpus = tmp_path / "new.txt"
    corpus.write_text("some new text\n" * 50, encoding="utf-8")
    files = [] if "--resume" in args else [str(corpus)]
    args = [str(trained_run) if a == "RUN" else a for a in args]
    r = runner.invoke(
        app,
        ["train", *files, "--init-from", str(trained_run), *args, "--max-steps", "2"],
        env={"CHARRNN_CHECKPOINTS": str(tmp_path / "ck")},
    )
    assert r.exit_code == code, r.output
    assert message in r.output
    if code == 1:
        assert r.output.count("\n") == 1  # one line
    assert not (tmp_path / "ck").exists()  # refused before any run folder was made


def test_the_parents_own_values_are_no_conflict(trained_run: Path) -> None:
    parent = ck.load_model(trained_run)
    same = TrainRequest.from_options(
        sources=("new.txt",), hidden=64, layers=1, cell="gru", embed_dim=16, tie_weights=False
    )
    finetune.check_request(same, parent.model.config, parent.vocab)  # no error
    filled, _ = finetune.prepare(
        TrainRequest.from_options(sources=("new.txt",), init_from=str(trained_run))
    )
    assert (filled.cell, filled.layers, filled.hidden, filled.embed_dim) == ("gru", 1, 64, 16)
    assert filled.lr == defaults.finetune_learning_rate("gru")
    assert finetune.prepare(filled)[0] == filled  # filling in twice changes nothing


def ck_model(run: Path) -> ModelConfig:
    return ck.load_model(run).model.config


def test_new_characters_fine_tune_and_are_known_afterwards(
    trained_run: Path, tmp_path: Path, code_text: str
) -> None:
    corpus = tmp_path / "code.txt"
    corpus.write_text(code_text[:4000], encoding="utf-8")
    out = tmp_path / "ft"
    r = runner.invoke(
        app,
        [
            *("train", str(corpus), "--init-from", str(trained_run), "--out", str(out)),
            *("--max-steps", "6", "--eval-every", "3", "-b", "8", "--seq-len", "16"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert f"starts from: {trained_run.resolve()}/" in r.stderr
    assert "characters new to the model it starts from: " in r.stderr
    parent, child = ck.load_model(trained_run), ck.load_model(out)
    assert child.vocab.itos[: len(parent.vocab)] == parent.vocab.itos  # stable ids
    assert len(child.vocab) > len(parent.vocab)
    assert child.model.config.hidden == parent.model.config.hidden == 64

    def unknown(run: Path) -> int:
        r = runner.invoke(app, ["eval-perplexity", str(corpus), "--json", "-c", str(run)])
        assert r.exit_code == 0, r.output
        return int(json.loads(r.stdout)["files"][0]["unknown"])

    assert unknown(trained_run) > 0 and unknown(out) == 0

    # Where it started: config.json, info, runs; and still after a resume.
    best = ck.read_pointer(trained_run, ck.BEST)
    assert best is not None
    step = int(best.split("-")[1])
    origin = {
        "run": str(trained_run.resolve()),
        "checkpoint": best,
        "step": step,
        "given": str(trained_run),
    }
    assert child.config["init_from"] == origin
    assert ck.load_model(trained_run).config.get("init_from") is None
    info = runner.invoke(app, ["info", str(out)])
    assert f"init from   {trained_run}/{best} (step {step}): fine-tuned" in info.stdout
    assert (
        json.loads(runner.invoke(app, ["info", str(out), "--json"]).stdout)["init_from"] == origin
    )
    rows = json.loads(runner.invoke(app, ["runs", str(tmp_path), "--json"]).stdout)
    assert [row["init_from"] for row in rows] == [origin]
    table = runner.invoke(app, ["runs", str(tmp_path)]).stdout.splitlines()
    assert table[0].split()[-1] == "from" and table[1].split()[-1] == f"{trained_run.name}@{step}"
    open_run(TrainRequest.from_options(resume=str(out), max_steps=8), CPU).train()
    assert ck.read_config(ck.newest_checkpoint(out))["init_from"] == origin


def test_fine_tuning_beats_training_from_scratch(
    trained_run: Path, tmp_path: Path, verses_text: str
) -> None:
    """The shared run learned the first 40k characters of the verse; on other poems of the
    same kind, the same few steps from it end far below the same steps from scratch
    (measured: 2.11 against 2.88 nats/char)."""
    corpus = tmp_path / "more-verse.txt"
    corpus.write_text(verses_text[150_000:162_000], encoding="utf-8")
    mc = ck_model(trained_run)
    arch = {"cell": mc.cell, "layers": mc.layers, "hidden": mc.hidden, "embed_dim": mc.embed_dim}
    scratch = open_run(_small(corpus, tmp_path / "scratch", **arch), CPU)
    fine = open_run(_small(corpus, tmp_path / "fine", init_from=str(trained_run)), CPU)
    assert fine.train_config.lr == defaults.finetune_learning_rate("gru")
    same = {**scratch.model.config.to_dict(), "vocab_size": len(fine.vocab)}
    assert fine.model.config.to_dict() == same  # only the vocabulary differs
    s, f = scratch.train(), fine.train()
    assert f.best_val is not None and s.best_val is not None
    assert f.best_val < s.best_val - 0.3, (f.best_val, s.best_val)


# ------------------------------------------------------------------------ patience


def _overfitting(corpus: Path, out: Path, **kw) -> TrainRequest:  # type: ignore[no-untyped-def]
    """A model far too big for 1,200 characters at a high constant rate: validation is best
    after a few dozen steps and then gets worse. Without the weights' average, which at the end
    of such a run can beat the early best and so reset the count these tests follow."""
    options = dict(
        cell="gru",
        hidden=128,
        layers=1,
        embed_dim=16,
        dropout=0.0,
        batch_size=4,
        seq_len=32,
        lr=2e-2,
        warmup=0,
        schedule="constant",
        max_steps=400,
        eval_every=4,
        ema_decay=0.0,
    )
    options.update(kw)
    return _small(corpus, out, **options)


def test_patience_stops_an_overfitting_run_early(tmp_path: Path, verses_text: str) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(verses_text[:1200], encoding="utf-8")
    out = tmp_path / "r"
    r = runner.invoke(
        app,
        [
            *("train", str(corpus), "--out", str(out), "--patience", "3", "--threads", "1"),
            *("--hidden", "128", "--layers", "1", "--embed-dim", "16", "--dropout", "0"),
            *("-b", "4", "--seq-len", "32", "--lr", "2e-2", "--warmup", "0"),
            *("--schedule", "constant", "--max-steps", "400", "--eval-every", "4"),
        ],
    )
    assert r.exit_code == 0, r.output
    records = read_metrics(out)
    end = records[-1]
    evals = [x for x in records if x["event"] == "eval"]
    assert end["event"] == "end" and end["reason"] == "patience"
    assert end["step"] < 200  # well before the limit of 400
    assert "done (patience: no better validation in 3 evaluations)" in r.stderr
    # The last three validations brought no new best; the final one was not repeated.
    assert [e["best"] for e in evals[-4:]] == [True, False, False, False]
    assert evals[-1]["step"] == end["step"] and len({e["step"] for e in evals}) == len(evals)
    # sample uses the best checkpoint, the one before the three bad ones.
    best = ck.read_pointer(out, ck.BEST)
    assert best == ck.checkpoint_name(evals[-4]["step"])
    assert ck.read_config(out / best)["metrics"]["step"] == evals[-4]["step"]


@pytest.mark.slow
def test_resume_keeps_the_patience_count(tmp_path: Path, verses_text: str) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(verses_text[:1200], encoding="utf-8")
    out = tmp_path / "r"
    # Without patience, on to step 80: well past the best validation (about step 30).
    state = open_run(_overfitting(corpus, out, max_steps=80), CPU).train()
    bad = state.bad_evals
    assert bad >= 2 and state.best_step is not None and state.best_step < 80
    saved = json.loads((ck.newest_checkpoint(out) / ck.TRAINER_STATE).read_text())
    assert saved["bad_evals"] == bad
    # Resumed with patience equal to the count kept, it stops at once: nothing to gain.
    run = open_run(TrainRequest.from_options(resume=str(out), max_steps=400, patience=bad), CPU)
    assert run.state is not None and run.state.bad_evals == bad
    again = run.train()
    assert again.step == 80 and run.stop_reason == "patience"
    # With one more evaluation of patience it goes on, and stops at the next bad one.
    run = open_run(TrainRequest.from_options(resume=str(out), max_steps=400, patience=bad + 1), CPU)
    last = run.train()
    assert run.stop_reason == "patience" and last.bad_evals == bad + 1
    # At the first validation (step 84) unless it brought a new best, which resets the count.
    assert last.step == 84 or (last.best_step is not None and last.best_step > 80)


def test_patience_bookkeeping() -> None:
    from charrnn.training.config import TrainConfig, TrainerState
    from charrnn.training.schedule import record_validation, stop_reason

    c, s = TrainConfig(patience=2, max_steps=100), TrainerState(step=10)
    assert record_validation(c, s, 2.0) and s.bad_evals == 0
    assert not record_validation(c, s, 2.5) and s.bad_evals == 1
    assert stop_reason(c, s, 0.0, False, False) is None
    assert not record_validation(c, s, float("nan")) and s.bad_evals == 2
    assert stop_reason(c, s, 0.0, False, False) == "patience"
    s.step = 100
    assert stop_reason(c, s, 0.0, False, False) == "max_steps"  # the limit is named first
    assert record_validation(c, s, 1.0) and s.bad_evals == 0
    s.step = 50
    assert stop_reason(TrainConfig(max_steps=100), s, 0.0, False, False) is None
    with pytest.raises(Exception, match="--patience 0"):
        TrainRequest.from_options(patience=0)


def test_the_parent_is_shown_as_the_user_named_it(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative --init-from stays relative in the start line and in info."""
    import shutil

    shutil.copytree(trained_run, tmp_path / "parent", ignore=shutil.ignore_patterns(".lock"))
    (tmp_path / "new.txt").write_text("some new text\n" * 80, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    best = ck.read_pointer(Path("parent"), ck.BEST)
    args = ["train", "new.txt", "--init-from", "parent", "--max-steps", "2", "--out", "child"]
    r = runner.invoke(app, [*args, "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert f"starts from: parent/{best} (step " in r.output
    info = runner.invoke(app, ["info", "child"])
    assert f"init from   parent/{best} (step " in info.stdout
