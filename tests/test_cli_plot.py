"""charrnn plot: learning curves read from metrics.jsonl, drawn with matplotlib."""

from __future__ import annotations

import shutil
import struct
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.cli.plot import curve, curves, figure
from charrnn.run.request import TrainRequest
from charrnn.run.start import open_run
from charrnn.store.metrics import METRICS

from .fixtures import pin

runner = CliRunner()


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
    lines = [ln for ln in fig.axes[1].get_lines() if ln.get_marker() != "*"]  # not the best mark
    labels = [line.get_label() if not line.get_label().startswith("_") else None for line in lines]
    assert list(zip(labels, [line.get_linestyle() for line in lines], strict=True)) == [
        ("noval", "--"),  # training only, dashed
        ("big", "-"),  # validation, solid
        (None, "--"),  # and its training loss beside it, dashed, in the same colour
    ]
    assert lines[1].get_color() == lines[2].get_color() != lines[0].get_color()


def test_the_curves_of_a_0_1_0_run(tmp_path: Path) -> None:
    shutil.copytree(pin.RUN, tmp_path / "old")
    for path in (tmp_path / "old", tmp_path / "old" / "step-00000150", tmp_path / "old" / METRICS):
        c = curve(path)
        assert c.name == "old" and c.chars == [6400, 12712, 19112]
        assert c.bits == pytest.approx([3.98399, 3.57205, 3.49443], abs=1e-5)
        assert len(c.train_bits) == 30 and c.train_seconds == sorted(c.train_seconds)


def test_plot_errors(runs_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(runs_root / "small", bare)
    (bare / METRICS).unlink()
    r = runner.invoke(app, ["plot", str(bare), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and r.output == f"charrnn: error: {bare}: no metrics.jsonl\n"
    for name in [m for m in sys.modules if m.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    r = runner.invoke(app, ["plot", str(runs_root / "big"), "--out", str(tmp_path / "x.png")])
    assert r.exit_code == 1 and "pip install 'charrnn[plot]'" in r.output
    assert not (tmp_path / "x.png").exists()


def test_plot_skips_what_is_not_a_run_and_names_a_missing_path(
    runs_root: Path, tmp_path: Path
) -> None:
    """``charrnn plot checkpoints/*`` beside a README: the runs are drawn, the rest noted."""
    root = tmp_path / "checkpoints"
    shutil.copytree(runs_root, root)
    (root / "README.md").write_text("what this folder holds\n")
    (root / "empty").mkdir()
    paths = sorted(str(p) for p in root.iterdir())
    out = tmp_path / "all.svg"
    r = runner.invoke(app, ["plot", *paths, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert f"note: {root / 'README.md'}: not a run folder, skipped" in r.output
    assert f"note: {root / 'empty'}: not a run folder, skipped" in r.output
    runs = [p for p in root.iterdir() if (p / METRICS).is_file()]
    assert f", {len(runs)} runs)" in r.output and out.read_text().startswith("<?xml")
    r = runner.invoke(app, ["plot", str(root / "nope"), "--out", str(out)])
    assert r.exit_code == 1 and r.output == f"charrnn: error: {root / 'nope'}: no such run folder\n"
    r = runner.invoke(app, ["plot", str(root / "README.md"), str(root / "empty"), "-o", str(out)])
    assert r.exit_code == 1 and "no run folder among the 2 paths given" in r.output


def test_the_best_validation_and_each_resume_are_marked(tmp_path: Path, small_text: str) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text(small_text[:6000], encoding="utf-8")
    tiny = dict(hidden=16, layers=1, embed_dim=8, batch_size=8, seq_len=16, eval_every=3)
    req = TrainRequest.from_options(
        sources=(str(corpus),), out=str(tmp_path / "r"), max_steps=6, **tiny
    )
    open_run(req, torch.device("cpu"), threads=1).train()
    again = TrainRequest.from_options(resume=str(tmp_path / "r"), max_steps=9)
    open_run(again, torch.device("cpu"), threads=1).train()
    c = curve(tmp_path / "r")
    assert c.best is not None and c.bits[c.best] == min(c.bits)
    assert len(c.resumes) == 1 and c.resumes[0][1] == c.chars[1]  # resumed from step 6
    fig = figure([c])
    by_time, by_chars = fig.axes
    stars = [ln for ln in by_time.lines if ln.get_marker() == "*"]
    assert len(stars) == 1 and list(stars[0].get_ydata()) == [min(c.bits)]
    dotted = [ln for ln in by_chars.lines if ln.get_linestyle() == ":"]
    assert len(dotted) == 1 and list(dotted[0].get_xdata()) == [c.resumes[0][1]] * 2
