"""charrnn runs: the table and the JSON of the runs in a folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.store import checkpoint as ck

from .fixtures import pin

runner = CliRunner()


def _rows(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.strip().splitlines()]


def test_runs_lists_and_sorts(runs_root: Path) -> None:
    r = runner.invoke(app, ["runs", str(runs_root), "--sort", "name"])
    assert r.exit_code == 0, r.output
    header, *rows = r.stdout.strip().splitlines()
    assert header.split() == [
        "name", "corpus", "tok", "cell", "layers", "x", "hidden", "params", "steps", "best",
        "bpc", "when", "size",
    ]  # fmt: skip
    assert [row.split()[0] for row in rows] == ["big", "small"]
    big, small = (row.split() for row in rows)
    assert big[1:5] == ["small.txt", "char", "gru", "1x64"] and big[6] == "150"
    assert small[1:5] == ["tiny.txt", "char", "gru", "1x8"] and small[6] == "6"
    by_params = runner.invoke(app, ["runs", str(runs_root), "--sort", "params"])
    assert [row[0] for row in _rows(by_params.stdout)[1:]] == ["big", "small"]
    by_bpc = runner.invoke(app, ["runs", str(runs_root), "--sort", "bpc", "--reverse"])
    assert [row[0] for row in _rows(by_bpc.stdout)[1:]] == ["small", "big"]

    j = runner.invoke(app, ["runs", str(runs_root), "--json", "--sort", "steps"])
    data = json.loads(j.stdout)
    assert [d["name"] for d in data] == ["big", "small"]
    loaded = ck.load_model(runs_root / "big")
    assert data[0]["parameters"] == loaded.model.num_parameters()
    assert data[0]["best_val_bits_per_char"] == pytest.approx(
        loaded.config["metrics"]["best_val_loss"] / 0.6931471805599453
    )
    assert data[0]["size_bytes"] == sum(
        p.stat().st_size for p in (runs_root / "big").rglob("*") if p.is_file()
    )


def test_runs_errors_and_empty_folders(tmp_path: Path) -> None:
    r = runner.invoke(app, ["runs", str(tmp_path), "--sort", "colour"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["runs", str(tmp_path / "nope")])
    assert r.exit_code == 1 and r.output == f"charrnn: error: {tmp_path / 'nope'}: no such folder\n"
    r = runner.invoke(app, ["runs", str(tmp_path)])
    assert r.exit_code == 0 and r.stdout == "" and "no runs in" in r.stderr
    r = runner.invoke(app, ["runs", "--json"], env={"CHARRNN_CHECKPOINTS": str(tmp_path)})
    assert r.exit_code == 0 and json.loads(r.stdout) == []


def test_runs_shows_a_0_1_0_run(tmp_path: Path) -> None:
    shutil.copytree(pin.RUN, tmp_path / "old")
    r = runner.invoke(app, ["runs", str(tmp_path)])
    assert r.exit_code == 0 and r.stderr == "", r.output
    row = _rows(r.stdout)[1]
    assert row[:7] == ["old", "<stdin>", "char", "gru", "1x32", "7,642", "150"]
    assert row[7] == "3.494"  # best_val_bits_per_char of its config.json


def test_runs_shows_no_control_character_of_the_data_raw(hostile_run: Path) -> None:
    from .conftest import HOSTILE, raw_controls

    r = runner.invoke(app, ["runs", str(hostile_run.parent)])
    assert r.exit_code == 0, r.output
    assert raw_controls(r.stdout) == [] and raw_controls(r.stderr) == []
    row = r.stdout.strip().splitlines()[1].split()
    assert row[:2] == ["run\\x1b[31m\\x85\\x0e\\u202e", "evil\\x1b[31m\\x85\\x0e\\u202e.txt"]
    j = runner.invoke(app, ["runs", str(hostile_run.parent), "--json"])
    assert j.exit_code == 0 and raw_controls(j.stdout) == []
    (d,) = json.loads(j.stdout)
    assert d["name"] == f"run{HOSTILE}" and d["corpus"] == f"evil{HOSTILE}.txt"
