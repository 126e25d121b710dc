"""bench/suite.py: its pure parts (budgets, the plain loop's line, the table), and a smoke run
against the shared corpora and the plain loop where they exist (CI has no ../shared)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "suite.py"
SHARED = ROOT.parent / "shared"

PLAIN_LINE = (
    "gru L=2 H=256 B=64 T=64 lr=0.005 budget=137s steps=1234 train_ch/s=36000 epochs=4.90 "
    "last_train=1.301 val_nats=1.4779 val_bpc=2.1321"
)


def load_suite() -> ModuleType:
    """bench/suite.py as a module (bench/ is not a package); it imports no torch."""
    spec = importlib.util.spec_from_file_location("bench_suite", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


suite = load_suite()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_plain_loop_line_is_parsed_from_the_last_line() -> None:
    out = "some warning\n" + PLAIN_LINE + "\n\n"
    assert suite.parse_plain(out) == (1.4779, 1234)
    assert math.isnan(suite.parse_plain("steps=3 val_nats=nan val_bpc=nan")[0])
    with pytest.raises(ValueError, match="val_nats"):
        suite.parse_plain(PLAIN_LINE + "\nTraceback: something went wrong\n")
    with pytest.raises(ValueError):
        suite.parse_plain("")


def test_budgets_goals_and_plan() -> None:
    assert suite.parse_budgets("60,tinyshakespeare:137") == [
        ("tinyshakespeare", 60.0),
        ("fortunes", 60.0),
        ("zh-prose", 60.0),
        ("linux-c", 60.0),
        ("tinyshakespeare", 137.0),
    ]
    assert suite.parse_budgets("fortunes:1m, fortunes:60s") == [("fortunes", 60.0)]
    for bad in ("nope:60", "60x", "0"):
        with pytest.raises(ValueError):
            suite.parse_budgets(bad)
    assert suite.goal_for(60) == -0.02 and suite.goal_for(137) == -0.03
    assert suite.goal_for(600) == -0.05 and suite.goal_for(5) is None
    args = suite.parse_args(["--quick", "--long", "--only", "tinyshakespeare"])
    assert args.plan == [("tinyshakespeare", 5.0)]
    args = suite.parse_args(["--long", "--only", "tinyshakespeare,fortunes", "--extra", "-q x"])
    assert args.plan[-1] == ("tinyshakespeare", 600.0) and len(args.plan) == 4
    assert args.extra == ["-q", "x"]


def test_setup_comes_from_the_saved_plan(trained_run: Path) -> None:
    """From a real checkpoint's config.json (the plan it saved), then from edited copies."""
    latest = trained_run / (trained_run / "latest").read_text().strip()
    config = json.loads((latest / "config.json").read_text())
    model, plan = config["model"], config["plan"]
    setup = suite.setup_of(config)
    assert setup.startswith(f"{model['cell'].upper()} {model['layers']}x{model['hidden']}")
    assert config["training"]["precision"] in setup
    assert suite.steps_of(config) == config["metrics"]["step"] > 0
    chosen = {
        **config,
        "model": {**model, "cell": "lstm", "layers": 2, "hidden": 512},
        "training": {**config["training"], "precision": "bf16"},
        "plan": {**plan, "threads": 2, "bf16_speedup": 1.391},
    }
    assert suite.setup_of(chosen) == "LSTM 2x512, 2 threads, bf16 (1.39x fp32)"
    chosen["training"]["precision"], chosen["plan"]["threads"] = "fp32", 1
    chosen["plan"]["bf16_speedup"] = 0.71
    assert suite.setup_of(chosen) == "LSTM 2x512, 1 thread, fp32 (bf16 0.71x)"
    assert suite.setup_of({}) == ""


def test_table_gives_the_difference_and_the_goal() -> None:
    rows = [
        suite.Row("fortunes", 60.0, 1.5, 1.53, 700, 500, 71.2, 66.0, "charrnn", "2 threads, fp32"),
        suite.Row("tinyshakespeare", 137.0, 1.48, 1.47, 1500, 1100, 150.0, 149.0, "plain"),
        suite.Row("linux-c", 5.0, 3.0, 2.5, 3, 4, 9.0, 8.0, "charrnn"),
    ]
    table = suite.format_table(rows)
    header, rule, *body = table
    assert len(cells(header)) == len(cells(rule)) == 11
    assert all(len(cells(line)) == 11 for line in body)
    assert cells(body[0])[10] == "2 threads, fp32" and cells(body[1])[10] == "-"
    assert cells(body[0])[:7] == ["fortunes", "60", "1.5000", "1.5300", "-0.0300", "-0.02", "yes"]
    assert cells(body[1])[:7] == [
        "tinyshakespeare",
        "137",
        "1.4800",
        "1.4700",
        "+0.0100",
        "-0.03",
        "no",
    ]
    assert cells(body[1])[7:10] == ["1500 / 1100", "150 / 149", "plain"]
    assert cells(body[2])[4:7] == ["+0.5000", "-", "-"]  # no goal below 60 s
    nan_row = suite.Row("zh-prose", 60.0, math.nan, 2.0, 1, 1, 1.0, 1.0, "plain")
    assert cells(suite.format_table([nan_row])[2])[4:7] == ["nan", "-0.02", "no"]


@pytest.mark.slow
def test_quick_suite_run_prints_a_row() -> None:
    corpora = SHARED / "corpora"
    needed = [corpora / "tinyshakespeare.train.txt", corpora / "tinyshakespeare.val.txt"]
    needed.append(SHARED / "bench" / "plain_loop.py")
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        pytest.skip(f"no shared corpora / plain loop here: {', '.join(missing)}")
    cmd = [sys.executable, str(SCRIPT), "--quick", "--only", "tinyshakespeare", "--no-append"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    rows = [cells(ln) for ln in r.stdout.splitlines() if ln.startswith("| tinyshakespeare |")]
    assert len(rows) == 1, r.stdout
    charrnn, plain, diff = (float(x) for x in rows[0][2:5])
    assert math.isfinite(charrnn) and math.isfinite(plain)
    assert abs(diff - (charrnn - plain)) <= 1.5e-4  # each figure rounded to 4 decimals
    assert "machine:" in r.stdout
