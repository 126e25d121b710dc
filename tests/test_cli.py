"""The command line: exit codes, error text, streams; and end to end through a subprocess."""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.run import defaults

from .conftest import CHARRNN, run_cli

runner = CliRunner()
COMMANDS = list(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def invoke(args: list[str], input: str | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, args, input=input, env=env)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str) -> None:
    r = invoke([command, "--help"])
    assert r.exit_code == 0
    assert "Examples" in r.output and f"charrnn {command}" in r.output
    # Arguments are shown the Unix way: no Python type labels, no {REQUIRED}... braces.
    usage = r.output.splitlines()[0]
    assert "{" not in usage and "]..." not in usage, usage
    assert not re.search(r"<(list|path|str|int|Path)\b", r.output), r.output


def test_top_level_help_shows_examples_and_completion() -> None:
    r = invoke(["--help"])
    assert r.exit_code == 0
    assert "Examples" in r.output and "charrnn runs --sort bpc" in r.output
    assert "--install-completion" in r.output and "--show-completion" in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["sample", "--temp", "-1"],
        ["sample", "--top-p", "1.5"],
        ["sample", "--top-p", "0"],
        ["sample", "--top-k", "abc"],
        ["sample", "--length", "-3"],
        ["train", "x.txt", "--seq-len", "0"],
        ["train", "x.txt", "--max-time", "soon"],
        ["train", "x.txt", "--cell", "transformer"],
        ["train"],
        ["eval-perplexity"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    r = invoke(args, env={"CHARRNN_CHECKPOINTS": str(tmp_path)})
    assert r.exit_code == 2, r.output


def test_missing_corpus_is_one_line_exit_1(tmp_path: Path) -> None:
    r = invoke(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1
    assert r.output.strip() == f"charrnn: error: {tmp_path / 'nope.txt'}: no such file"
    assert not (tmp_path / "r").exists()


def test_empty_and_tiny_corpora(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    r = invoke(["train", str(empty), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1 and "empty file" in r.output
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc")
    r = invoke(["train", str(tiny), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1 and "validation split" in r.output
    assert not (tmp_path / "r").exists()


def test_invalid_utf8_corpus(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xc3(def" * 3)
    r = invoke(["train", str(bad), "--out", str(tmp_path / "r")])
    assert r.exit_code == 1
    assert f"{bad}: not valid utf-8 at byte 3" in r.output and "Traceback" not in r.output


def test_sample_without_any_run(tmp_path: Path) -> None:
    r = invoke(["sample"], env={"CHARRNN_CHECKPOINTS": str(tmp_path)})
    assert r.exit_code == 1 and "no trained runs found" in r.output


def test_out_folder_is_never_overwritten(tmp_path: Path, trained_run: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n" * 50)
    r = invoke(["train", str(corpus), "--out", str(trained_run), "--max-steps", "1"])
    assert r.exit_code == 1 and "already exists and is not empty" in r.output


def test_sample_and_eval_in_process(trained_run: Path, tmp_path: Path) -> None:
    env = {"CHARRNN_CHECKPOINTS": str(trained_run.parent)}
    r = invoke(["sample", "--length", "80", "--seed", "3", "--prime", "THE"], env=env)
    assert r.exit_code == 0
    assert r.stdout.startswith("THE") and len(r.stdout) == 3 + 80 + 1
    r2 = invoke(
        ["sample", "-c", str(trained_run), "--length", "80", "--seed", "3", "--prime", "THE"]
    )
    assert r2.stdout == r.stdout
    r = invoke(
        [
            "sample",
            "-c",
            str(trained_run),
            "--num-samples",
            "3",
            "--length",
            "40",
            "--seed",
            "1",
            "--prime",
            "A",
        ]
    )
    assert r.exit_code == 0 and r.stdout.count("\n\n") == 2
    r = invoke(
        ["eval-perplexity", "-", "--json", "-c", str(trained_run)],
        input="THE WOLF OF THE NORTH\n\nA 漢 line.\n",
    )
    assert r.exit_code == 0, r.output
    row = json.loads(r.stdout)["files"][0]
    assert row["file"] == "<stdin>" and row["chars"] == 33 and row["unknown"] == 1
    assert math.isclose(row["bits_per_char"], row["nats_per_char"] / math.log(2))
    assert math.isclose(row["perplexity"], math.exp(row["nats_per_char"]))


# ----------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_end_to_end_train_sample_eval(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "poems.txt"
    corpus.write_text(small_text, encoding="utf-8")
    args = "train poems.txt --hidden 96 --layers 1 --batch-size 16 --lr 0.01 --max-steps 200"
    r = run_cli([*args.split(), "--eval-every", "100"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # data only on stdout; training writes none
    assert "\x1b[" not in r.stderr  # not a terminal: no escapes, no redraws
    assert "best val loss" in r.stderr and "checkpoints/poems-gru" in r.stderr
    run = tmp_path / "checkpoints" / "poems-gru"
    best = run / (run / "best").read_text().strip()
    metrics = json.loads((best / "config.json").read_text())["metrics"]
    from charrnn.text.vocab import Vocab

    vocab = Vocab.from_dict(json.loads((best / "vocab.json").read_text()))
    assert metrics["val_bits_per_char"] < vocab.unigram_entropy_bits() - 1.0

    # Sampling finds the newest run under ./checkpoints by itself; stdout is UTF-8 text.
    r = run_cli(["sample", "--length", "200", "--seed", "1"], tmp_path)
    assert r.returncode == 0 and r.stderr == ""
    text = r.stdout
    assert len(text) == 201 and text.endswith("\n")
    assert set(text[:-1]) <= set(vocab.chars)
    assert "\n" in text[:-1] and " " in text

    held_out = tmp_path / "held.txt"
    held_out.write_text(small_text[-3000:] + "naïve 🙂\n", encoding="utf-8")
    r = run_cli(["eval-perplexity", "held.txt"], tmp_path)
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.strip().splitlines()
    assert header.split() == [
        *("file", "chars", "unknown", "nats/char", "bits/char", "perplexity", "checkpoint")
    ]
    cells = row.split()
    assert cells[0] == "held.txt" and cells[1] == str(3000 + 8) and cells[2] == "2"
    assert "2 character(s) the model never saw" in r.stderr


@pytest.mark.slow
def test_time_budget_stops_the_run(tmp_path: Path, small_text: str) -> None:
    """--max-epochs inf: the time limit ends the run; without it, a run that expects more than
    the useful passes over this small corpus ends after them, and says so at the start."""
    (tmp_path / "c.txt").write_text(small_text[:20000])
    args = ["train", "c.txt", "--hidden", "32", "--layers", "1", "--max-time", "3s"]
    r = run_cli([*args, "--max-epochs", "inf"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "done (max time)" in r.stderr and "stopping after" not in r.stderr
    assert (tmp_path / "checkpoints" / "c-gru" / "latest").is_file()
    # 30 s: expected passes far over the useful ones on any machine (16, or here the 80 of the
    # least steps: 5 steps a pass, the last window short); the run takes a few seconds
    r = run_cli([*args[:-1], "30s", "--out", "checkpoints/capped"], tmp_path)
    assert r.returncode == 0, r.stderr
    stop = re.search(r"stopping after ([\d.]+) \(more overfit", r.stderr)
    assert stop and float(stop.group(1)) == defaults.MIN_USEFUL_STEPS / 5, r.stderr
    done = re.search(r"done \(max epochs\): ([\d,]+) steps", r.stderr)
    assert done and abs(int(done.group(1).replace(",", "")) - defaults.MIN_USEFUL_STEPS) <= 2


@pytest.mark.slow
def test_sample_into_closed_pipe_is_quiet(trained_run: Path) -> None:
    cmd = " ".join(CHARRNN) + f" sample -c {trained_run} --length 1000000 | head -c 10"
    r = subprocess.run(
        ["bash", "-c", cmd + '; echo "status=${PIPESTATUS[0]}" >&2'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(r.stdout) == 10
    assert r.stderr.strip() == "status=0", r.stderr


# ----------------------------------------------------------------------- training view


def _tiny_train_args(corpus: Path, out: Path) -> list[str]:
    return [
        "train",
        str(corpus),
        "--out",
        str(out),
        "--hidden",
        "32",
        "--layers",
        "1",
        "--embed-dim",
        "8",
        "--batch-size",
        "8",
        "--seq-len",
        "16",
        "--max-steps",
        "30",
        "--eval-every",
        "10",
    ]


def test_sample_previews_show_and_do_not_change_training(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:8000])
    with_previews = invoke([*_tiny_train_args(corpus, tmp_path / "a"), "--sample-every", "2"])
    assert with_previews.exit_code == 0, with_previews.output
    assert "sample at step 20:" in with_previews.output
    assert "sample at step 10:" not in with_previews.output  # every second evaluation
    assert "\n  | " in with_previews.output
    plain = invoke(_tiny_train_args(corpus, tmp_path / "b"))  # not a terminal: no previews
    assert plain.exit_code == 0, plain.output
    assert "sample at step" not in plain.output
    assert "step     30  epoch" in plain.output and "(best)" in plain.output
    a = (tmp_path / "a" / "step-00000030" / "model.safetensors").read_bytes()
    b = (tmp_path / "b" / "step-00000030" / "model.safetensors").read_bytes()
    assert a == b


@pytest.mark.slow
def test_metrics_jsonl_of_a_real_run(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:8000])
    r = run_cli(_tiny_train_args(corpus, tmp_path / "run"), tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"metrics: {tmp_path / 'run' / 'metrics.jsonl'}" in r.stderr
    lines = (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]  # every line is a whole JSON object
    # --eval-every 10: a step record every step (a tenth of it), an eval record every 10.
    assert [r["event"] for r in records] == ["start", *(["step"] * 10 + ["eval"]) * 3, "end"]
    assert [r["step"] for r in records if r["event"] == "step"] == list(range(1, 31))
    evals = [r for r in records if r["event"] == "eval"]
    assert [e["step"] for e in evals] == [10, 20, 30]
    keys = {"step", "epoch", "time", "chars", "train_loss", "val_loss", "val_bits_per_char"}
    keys |= {"lr", "chars_per_sec", "best", "wall", "train_bits_per_char"}
    for e in evals:
        assert keys <= set(e), e
        assert math.isclose(e["val_bits_per_char"], e["val_loss"] / math.log(2), rel_tol=1e-5)
        assert e["chars"] == e["step"] * 8 * 16 and e["lr"] > 0 and e["time"] > 0
    assert evals[0]["best"] is True
    assert [e["time"] for e in evals] == sorted(e["time"] for e in evals)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("charrnn train --cell ", ["lstm", "gru", "rnn"]),
        ("charrnn train --precision b", ["bf16"]),
        ("charrnn runs --sort ", ["name", "when", "bpc", "params", "steps", "size"]),
        ("charrnn sample --errors r", ["replace"]),
    ],
)
def test_option_values_complete_in_the_shell(words: str, expected: list[str]) -> None:
    """``charrnn train --cell <TAB>`` offers the cells (bash's completion protocol)."""
    env = {
        **__import__("os").environ,
        "_CHARRNN_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split(" ")) - 1),
    }
    r = subprocess.run(CHARRNN, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == expected
