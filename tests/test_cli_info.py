"""charrnn info: the description of one checkpoint, as text and as JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.store import checkpoint as ck
from charrnn.store import disk

from .fixtures import pin

runner = CliRunner()


def test_info_text_and_json(trained_run: Path) -> None:
    r = runner.invoke(app, ["info", str(trained_run)])
    assert r.exit_code == 0, r.output
    text = r.stdout
    loaded = ck.load_model(trained_run)
    best = loaded.path.name
    assert text.startswith(f"checkpoint  {trained_run / best} (best")
    assert f"GRU 1x64, {loaded.model.num_parameters():,} parameters" in text
    vocab_line = next(line for line in text.splitlines() if line.startswith("vocabulary"))
    assert vocab_line.split()[1:4] == ["<UNK>", "\\n", "␠"]
    assert "\ntraining arguments:\n" in text and "  max_steps        150\n" in text
    assert "\nfinal metrics:\n" in text

    j = runner.invoke(app, ["info", str(trained_run / best), "--json"])
    d = json.loads(j.stdout)
    assert d["checkpoint"] == str(trained_run / best) and "best" in d["pointers"]
    assert d["parameters"] == loaded.model.num_parameters()
    assert d["vocab"]["size"] == len(loaded.vocab) and d["vocab"]["preview"][0] == "<UNK>"
    assert d["training"]["max_steps"] == 150 and d["model"]["hidden"] == 64
    assert d["metrics"]["step"] == int(best.split("-")[1])
    assert d["files"]["model.safetensors"] == (trained_run / best / ck.MODEL).stat().st_size


def test_info_of_a_missing_checkpoint(tmp_path: Path) -> None:
    r = runner.invoke(app, ["info", str(tmp_path / "nope")])
    assert r.exit_code == 1
    assert r.output == f"charrnn: error: {tmp_path / 'nope'}: no such checkpoint or run folder\n"


def test_info_of_a_0_1_0_run(tmp_path: Path) -> None:
    run = tmp_path / "old"
    shutil.copytree(pin.RUN, run)
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0 and r.stderr == "", r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"checkpoint  {run / 'step-00000150'} (best and latest of its run)"
    assert lines[1] == "saved       2026-12-02T21:54:12+0000 by charrnn 0.1.0 (format 1)"
    assert "progress    step 150, 19,112 characters seen, 1.1s of training" in lines
    assert "val         2.4222 nats/char = 3.4944 bits/char, perplexity 11.270" in lines
    assert "best val    3.4944 bits/char (step 150)" in lines


def test_info_shows_no_control_character_of_the_data_raw(hostile_run: Path) -> None:
    """A corpus named and filled with ESC, U+0085, U+000E and U+202E: its name (the sources),
    the run folder's and the vocabulary come out escaped, as text and as JSON (whose strings
    still decode to the names as they are)."""
    from .conftest import HOSTILE, raw_controls

    r = runner.invoke(app, ["info", str(hostile_run)])
    assert r.exit_code == 0, r.output
    assert raw_controls(r.stdout) == [] and raw_controls(r.stderr) == []
    assert "evil\\x1b[31m\\x85\\x0e\\u202e.txt" in r.stdout  # the sources, readable
    vocab_line = next(line for line in r.stdout.splitlines() if line.startswith("vocabulary"))
    assert "\\x1b" in vocab_line and "\\x0e" in vocab_line
    j = runner.invoke(app, ["info", str(hostile_run), "--json"])
    assert j.exit_code == 0 and raw_controls(j.stdout) == []
    d = json.loads(j.stdout)
    assert d["data"]["sources"][0].endswith(f"evil{HOSTILE}.txt")
    assert d["run"] == str(hostile_run) and HOSTILE[0] in d["vocab"]["preview"]
    # An error that quotes a name escapes it too (one line, nothing raw).
    missing = hostile_run.parent / f"gone{HOSTILE}"
    e = runner.invoke(app, ["info", str(missing)])
    assert e.exit_code == 1 and raw_controls(e.output) == []
    assert e.output == (
        f"charrnn: error: {hostile_run.parent}/gone\\x1b[31m\\x85\\x0e\\u202e: no such checkpoint "
        "or run folder\n"
    )


def test_info_of_a_run_whose_checkpoint_is_pruned_while_read(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``charrnn info RUN`` while the run trains: the checkpoint the pointer named is pruned
    under it; info describes the new one (exit 0), never 'damaged checkpoint'."""
    from .conftest import prune_on_first_call

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    first = ck.resolve_checkpoint(run)
    prune_on_first_call(monkeypatch, disk, "file_sizes", run, partly=True)
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0 and r.stderr == "", r.output
    assert r.stdout.startswith(f"checkpoint  {ck.resolve_checkpoint(run)} (best and latest")
    assert ck.resolve_checkpoint(run) != first
    # Left to find the newest run itself, info reads that run again too.
    monkeypatch.setenv("CHARRNN_CHECKPOINTS", str(tmp_path))
    prune_on_first_call(monkeypatch, disk, "file_sizes", run, partly=True)
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0 and r.stderr == "", r.output


@pytest.mark.slow
def test_info_and_runs_while_a_real_run_trains_saves_and_prunes(
    tmp_path: Path, small_text: str
) -> None:
    """The report's situation for real: ``info`` and ``runs`` read a run again and again while
    a training process saves a checkpoint at every other step and prunes the one before. Every
    read succeeds; none calls the run damaged."""
    import os
    import subprocess
    import time

    from .conftest import CHARRNN

    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:20_000], encoding="utf-8")
    run = tmp_path / "runs" / "live"
    args = ["train", str(corpus), "-o", str(run), "--hidden", "8", "--layers", "1"]
    args += ["--embed-dim", "4", "-b", "4", "--seq-len", "8", "--eval-every", "2"]
    args += ["--max-time", "60s", "--threads", "1", "--precision", "fp32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "train.log").open("w")  # a file: a full pipe would stall the training
    proc = subprocess.Popen(CHARRNN + args, stdout=subprocess.DEVNULL, stderr=log, env=env)
    failures, described, listed = [], set(), 0
    try:
        deadline = time.monotonic() + 60
        while ck.newest_checkpoint(run) is None and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "train.log").read_text()
            time.sleep(0.05)
        end = time.monotonic() + 15
        while time.monotonic() < end and proc.poll() is None:
            r = runner.invoke(app, ["info", str(run)])
            if r.exit_code != 0:
                failures.append(r.output)
            else:
                described.add(r.stdout.split()[1])
            r = runner.invoke(app, ["runs", str(run.parent)])
            if r.exit_code != 0 or r.stderr or "damaged" in r.stdout:
                failures.append(r.output)
            listed += 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    assert failures == []
    assert listed >= 20 and len(described) >= 5  # read often, across many saves and prunes
