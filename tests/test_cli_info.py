"""charrnn info: the description of one checkpoint, as text and as JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.store import checkpoint as ck

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
