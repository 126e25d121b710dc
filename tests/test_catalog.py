"""charrnn runs / info / plot: what training left on disk, through the command line."""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store import checkpoint as ck
from charrnn.store.metrics import METRICS

runner = CliRunner()


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory, trained_run: Path, small_text: str) -> Path:
    """A folder with two runs: a copy of the shared trained run and a much smaller one."""
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(trained_run, root / "big")
    corpus = root / "tiny.txt"
    corpus.write_text(small_text[:5000], encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),),
        hidden=8,
        layers=1,
        embed_dim=4,
        batch_size=4,
        seq_len=8,
        max_steps=6,
        eval_every=3,
        out=str(root / "small"),
    )
    open_run(req, torch.device("cpu")).train()
    (root / "not-a-run").mkdir()
    return root


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
    r = runner.invoke(app, ["runs", str(tmp_path), "--sort", "size"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["runs", str(tmp_path / "nope")])
    assert r.exit_code == 1 and r.output == f"charrnn: error: {tmp_path / 'nope'}: no such folder\n"
    r = runner.invoke(app, ["runs", str(tmp_path)])
    assert r.exit_code == 0 and r.stdout == "" and "no runs in" in r.stderr
    r = runner.invoke(app, ["runs", "--json"], env={"CHARRNN_CHECKPOINTS": str(tmp_path)})
    assert r.exit_code == 0 and json.loads(r.stdout) == []


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


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "PNG is cut short"
    return width, height


def test_plot_writes_a_png_of_the_asked_size(runs_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    args = ["plot", str(runs_root / "big"), str(runs_root / "small" / METRICS)]
    r = runner.invoke(app, [*args, "--out", str(out), "--width", "640", "--height", "360"])
    assert r.exit_code == 0, r.output
    assert r.stdout == "" and f"wrote {out}" in r.stderr
    assert _png_size(out) == (640, 360)
    print(f"plot written to {out}")  # shown with pytest -s


def test_plot_draws_training_beside_validation_and_runs_without_validation(
    runs_root: Path, tmp_path: Path, small_text: str
) -> None:
    pytest.importorskip("matplotlib")
    from charrnn.cli.plotting import curve, curves, figure

    big = curve(runs_root / "big")
    assert big.bits and len(big.train_bits) > len(big.bits)  # step records: the training curve
    assert big.train_chars == sorted(big.train_chars) and big.train_chars[-1] > big.chars[0]
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:3000], encoding="utf-8")
    req = TrainRequest.from_options(
        sources=(str(corpus),),
        val_fraction=0.0,
        hidden=8,
        layers=1,
        embed_dim=4,
        batch_size=4,
        seq_len=8,
        max_steps=20,
        eval_every=20,  # a step record every 2 steps
        out=str(tmp_path / "noval"),
    )
    open_run(req, torch.device("cpu")).train()
    noval = curve(tmp_path / "noval")
    assert noval.bits == [] and len(noval.train_bits) == 10
    out = tmp_path / "noval.png"
    r = runner.invoke(
        app, ["plot", str(tmp_path / "noval"), str(runs_root / "big"), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert _png_size(out) == (1000, 420)
    # Each run once in the legend: a validation line, or the training line when there is none.
    fig = figure(curves([tmp_path / "noval", runs_root / "big"]))
    legend = fig.axes[1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["noval", "big"]
    lines = fig.axes[1].get_lines()
    labels = [line.get_label() if not line.get_label().startswith("_") else None for line in lines]
    assert list(zip(labels, [line.get_linestyle() for line in lines], strict=True)) == [
        ("noval", "--"),  # training only, dashed
        ("big", "-"),  # validation, solid
        (None, "--"),  # and its training loss beside it, dashed, in the same colour
    ]
    assert lines[1].get_color() == lines[2].get_color() != lines[0].get_color()


def test_plot_errors(runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(runs_root / "small", bare)
    (bare / METRICS).unlink()
    r = runner.invoke(app, ["plot", str(bare), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and f"{bare}: no metrics.jsonl" in r.output
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    r = runner.invoke(app, ["plot", str(runs_root / "big"), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and "pip install 'charrnn[plot]'" in r.output
    assert not (tmp_path / "x.png").exists()
