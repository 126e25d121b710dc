"""``charrnn train`` (charrnn/cli/train.py) through typer's CliRunner on ``charrnn.cli.app``: a
tiny real training that saves its run and says what it planned, and option values refused before
anything is made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.cli.view import where
from charrnn.run.plan import Plan
from charrnn.store import checkpoint as ck
from charrnn.store.metrics import read_metrics
from charrnn.training.distributed import SINGLE

TINY = ["--hidden", "8", "--layers", "1", "--batch-size", "4", "--max-steps", "3"]
TINY += ["--threads", "1", "--device", "cpu"]


@pytest.fixture
def corpus(tmp_path: Path, small_text: str) -> Path:
    path = tmp_path / "verse.txt"
    path.write_text(small_text[:5000], encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _keep_thread_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--threads sets these for torch and NumPy: give them back afterwards."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("CHARRNN_CHECKPOINTS", str(tmp_path / "default-root"))


def _train(*args: str) -> Any:
    return CliRunner().invoke(app, ["train", *args])


def _plan_of(ckpt: Path) -> Plan:
    config = json.loads((ckpt / ck.CONFIG).read_text(encoding="utf-8"))
    return Plan.from_dict(
        {**config["plan"], "model": config["model"], "training": config["training"]}
    )


def test_a_tiny_training_saves_its_run_and_names_its_plan(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = _train(str(corpus), *TINY, "--out", str(out))
    assert r.exit_code == 0, r.output
    latest = ck.read_pointer(out, ck.LATEST)
    assert latest == ck.checkpoint_name(3)
    assert ck.read_pointer(out, ck.BEST) == latest
    events = [m["event"] for m in read_metrics(out)]
    assert events[0] == "start" and events[-1] == "end" and "eval" in events

    lines = r.stderr.splitlines()
    plan = _plan_of(out / latest)
    assert (plan.model.cell, plan.model.layers, plan.model.hidden) == ("gru", 1, 8)
    start = lines[0]
    assert start.startswith(
        f"training GRU 1x8 ({ck.load_model(out / latest).model.num_parameters():,} parameters)"
    )
    assert f"; batch 4x{plan.training.seq_len}, lr {plan.training.lr:g}, " in start
    assert f", device {where(torch.device('cpu'), SINGLE, plan)}; stops at 3 steps" in start
    assert lines[1] == f"run folder: {out}"
    assert any(line.startswith("done (max steps): 3 steps, ") for line in lines)
    assert f"sample with: charrnn sample -c {out}" in lines
    assert r.stdout == ""  # progress and the summary go to stderr


def test_quiet_shows_only_the_summary(corpus: Path, tmp_path: Path) -> None:
    r = _train(str(corpus), *TINY, "--out", str(tmp_path / "q"), "--quiet")
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("done (max steps): 3 steps, ")
    assert "run folder:" not in r.stderr and "step      3" not in r.stderr


def test_without_out_the_run_goes_under_charrnn_checkpoints(corpus: Path, tmp_path: Path) -> None:
    r = _train(str(corpus), *TINY, "--cell", "lstm")
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "default-root" / "verse-lstm"
    assert ck.read_pointer(run_dir, ck.LATEST) == ck.checkpoint_name(3)
    assert f"run folder: {run_dir}" in r.stderr.splitlines()


def test_a_resume_continues_the_run(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _train(str(corpus), *TINY, "--out", str(out)).exit_code == 0
    r = _train("--resume", str(out), "--max-steps", "5", "--threads", "1", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert r.stderr.startswith("resuming GRU 1x8 ")
    assert ck.read_pointer(out, ck.LATEST) == ck.checkpoint_name(5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hidden", "0"], "Invalid value for '--hidden': 0 is out of range (1 <= x <= 32,768)"),
        (["--cell", "transformer"], "'--cell': 'transformer': expected lstm, gru or rnn"),
        (["--max-time", "soon"], "'soon' is not a duration like 90s, 10m or 2h"),
        (["--lr", "nan"], "Invalid value for '--lr': NaN is not a valid value"),
        (["--val-fraction", "0.7"], "0.7 is out of range (0 <= x <= 0.5)"),
        (["--device", "tpu"], "'--device': 'tpu': expected auto, cpu, cuda or cuda:N"),
        (["--ema-decay", "1"], "'--ema-decay': 1 is out of range (0 <= x <= 0.999)"),
    ],
)  # fmt: skip
def test_a_bad_option_value_exits_2_naming_it_in_one_line(
    corpus: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "never"
    r = _train(str(corpus), "--out", str(out), *args)
    assert r.exit_code == 2, r.output
    errors = [line for line in r.output.splitlines() if "Error" in line or "error" in line]
    assert len(errors) == 1 and message in errors[0], r.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--tie-weights", "--hidden", "8", "--embed-dim", "4"],
         "--tie-weights needs --embed-dim equal to --hidden", 2),
        (["--patience", "2", "--val-fraction", "0"], "--patience: needs validation", 2),
        (["--vocab-size", "64"], "--vocab-size: only for --tokenizer bpe or unigram", 2),
        (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a CUDA device", 1),
    ],
)  # fmt: skip
def test_options_that_do_not_go_together_are_one_line(
    corpus: Path, tmp_path: Path, args: list[str], message: str, code: int
) -> None:
    """The library's refusals: OptionError is a usage error (2); what the machine lacks is 1."""
    out = tmp_path / "never"
    r = _train(str(corpus), "--out", str(out), *args)
    assert r.exit_code == code, r.output
    assert len(r.output.splitlines()) == 1
    assert r.output.startswith(f"charrnn: error: {message}")
    assert not out.exists()


def test_a_missing_corpus_is_one_line_exit_1(tmp_path: Path) -> None:
    r = _train(str(tmp_path / "nope.txt"), "--out", str(tmp_path / "never"), "--device", "cpu")
    assert r.exit_code == 1
    assert len(r.output.splitlines()) == 1 and "nope.txt" in r.output
    assert not (tmp_path / "never").exists()


def test_no_corpus_and_no_resume_is_a_usage_error(tmp_path: Path) -> None:
    r = _train("--device", "cpu")
    assert r.exit_code == 2
    assert (
        r.output
        == "charrnn: error: name a text file to train on (or - for stdin), or --resume RUN\n"
    )


def test_the_weights_average_kept_at_the_end_is_said_and_recorded(
    corpus: Path, tmp_path: Path
) -> None:
    """A high constant learning rate leaves noisy last weights: their average wins, the last
    validation line says so, and --ema-decay 0 trains without one (same seed, same steps)."""
    runs = {}
    for decay in ("0.9", "0"):
        out = tmp_path / f"r{decay}"
        args = ["--hidden", "32", "--embed-dim", "16", "--layers", "1", "--batch-size", "8"]
        args += ["--seq-len", "16", "--max-steps", "60", "--lr", "0.05", "--warmup", "0"]
        args += ["--schedule", "constant", "--dropout", "0", "--ema-decay", decay, *TINY[8:]]
        r = _train(str(corpus), *args, "--out", str(out))
        assert r.exit_code == 0, r.output
        config = json.loads((out / ck.checkpoint_name(60) / ck.CONFIG).read_text("utf-8"))
        last = [m for m in read_metrics(out) if m["event"] == "eval"][-1]
        runs[decay] = (r.stderr, config, last)
    stderr, config, last = runs["0.9"]
    assert config["training"]["ema_decay"] == 0.9 and last.get("averaged") is True
    assert "(the weights' average, best)" in stderr
    stderr0, config0, last0 = runs["0"]
    assert config0["training"]["ema_decay"] == 0 and "averaged" not in last0
    assert "weights' average" not in stderr0 and last["val_loss"] < last0["val_loss"]
