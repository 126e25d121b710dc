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
    every = list(suite.CORPORA)
    assert suite.parse_budgets("60,tinyshakespeare:137") == [
        *[(c, 60.0) for c in every],
        ("tinyshakespeare", 137.0),
    ]
    assert {"es-fortunes", "pl-fortunes", "ru-fortunes"} <= set(every)  # the small corpora
    assert suite.parse_budgets("fortunes:1m, fortunes:60s") == [("fortunes", 60.0)]
    for bad in ("nope:60", "60x", "0"):
        with pytest.raises(ValueError):
            suite.parse_budgets(bad)
    assert suite.goal_for(60) == -0.03 and suite.goal_for(137, "pl-fortunes") == -0.04
    assert suite.goal_for(600, "tinyshakespeare") == -0.06
    assert suite.goal_for(600, "ru-fortunes") == -0.10 and suite.goal_for(5) is None
    args = suite.parse_args(["--quick", "--long", "--only", "tinyshakespeare"])
    assert args.plan == [("tinyshakespeare", 5.0)] and args.pairs == 1
    args = suite.parse_args(["--long", "--only", "tinyshakespeare,ru-fortunes", "--extra", "-q x"])
    assert args.plan == [
        ("tinyshakespeare", 60.0),
        ("ru-fortunes", 60.0),
        ("tinyshakespeare", 137.0),
        ("tinyshakespeare", 600.0),
        ("ru-fortunes", 600.0),
    ]
    assert args.extra == ["-q", "x"] and args.pairs == suite.DEFAULT_PAIRS == 3
    with pytest.raises(SystemExit):
        suite.parse_args(["--pairs", "0"])


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
    note = "about 9 passes over the corpus expected: embedding 256, lr 0.006, weight decay 0.3"
    chosen["plan"]["notes"] = ["corpus is small (90 training characters): ...", note]
    assert suite.setup_of(chosen) == (
        "LSTM 2x512, 1 thread, fp32 (bf16 0.71x), "
        "9 passes expected: embedding 256, lr 0.006, weight decay 0.3"
    )
    assert suite.setup_of({}) == ""


def _pair(charrnn: float, plain: float, first: str = "charrnn", load: float = 1.0):  # type: ignore[no-untyped-def]
    return suite.Pair(
        suite.Run(charrnn, 700, 71.0, 1.0, "GRU 2x256, 2 threads, fp32"),
        suite.Run(plain, 500, 66.0, load),
        first,
    )


def test_a_row_is_the_median_of_its_pairs_with_min_and_max() -> None:
    row = suite.Row(
        "fortunes", 60.0, (_pair(1.50, 1.55), _pair(1.52, 1.54, "plain"), _pair(1.45, 1.46))
    )
    assert row.diffs == pytest.approx([-0.05, -0.02, -0.01])
    assert row.diff == pytest.approx(-0.02) and row.median("charrnn") == pytest.approx(1.50)
    assert row.goal == -0.03 and row.met == "no"  # the median misses -0.03
    won = suite.Row("fortunes", 60.0, (_pair(1.40, 1.45), _pair(1.41, 1.45), _pair(1.42, 1.43)))
    assert won.diff == pytest.approx(-0.04) and won.met == "yes"  # median -0.04, none worse
    lost_one = suite.Row("fortunes", 60.0, (_pair(1.40, 1.45), _pair(1.41, 1.45), _pair(1.5, 1.46)))
    assert lost_one.diff == pytest.approx(-0.04) and lost_one.met == "no"  # a pair worse than plain
    nan_row = suite.Row("zh-prose", 60.0, (_pair(math.nan, 2.0),))
    assert math.isnan(nan_row.diff) and nan_row.met == "no"


def test_the_table_shows_median_min_max_flags_and_the_cpu() -> None:
    rows = [
        suite.Row(
            "fortunes", 60.0, (_pair(1.50, 1.55), _pair(1.52, 1.54), _pair(1.45, 1.46, load=1.3))
        ),
        suite.Row("linux-c", 5.0, (_pair(3.0, 2.5),)),
    ]
    header, rule, *body = suite.format_table(rows, "Xeon, 2 cores, avx512_bf16 yes, amx no")
    assert len(cells(header)) == len(cells(rule)) == 14
    assert all(len(cells(line)) == 14 for line in body)
    c = cells(body[0])
    assert c[:10] == [
        "fortunes", "60", "3", "-0.0200", "-0.0500", "-0.0100", "1.5000", "1.5400", "-0.03", "no"
    ]  # fmt: skip
    assert c[10] == "700/500 700/500 700/500" and c[11] == "1"  # one flagged pair
    assert (
        c[12] == "GRU 2x256, 2 threads, fp32" and c[13] == "Xeon, 2 cores, avx512_bf16 yes, amx no"
    )
    assert cells(body[1])[8:10] == ["-", "-"]  # no goal below 60 s


def test_a_run_whose_load_check_moved_is_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    checks = iter([1.0, 1.5, 1.0, 1.02])  # the first run: slowed by 1.5x; the second: steady
    monkeypatch.setattr(suite, "load_check", lambda: next(checks))
    monkeypatch.setattr(suite, "SETTLE", 0.0)
    runs = iter([suite.Run(1.6, 10, 1.0), suite.Run(1.5, 12, 1.0)])
    kept = suite.checked("charrnn", lambda: next(runs))
    assert (kept.nats, kept.steps) == (1.5, 12) and not kept.flagged
    assert kept.load == pytest.approx(1.02)
    always = iter([1.0, 2.0] * (suite.RETRIES + 1))
    monkeypatch.setattr(suite, "load_check", lambda: next(always))
    kept = suite.checked("plain", lambda: suite.Run(1.7, 5, 1.0))
    assert kept.flagged and kept.load == pytest.approx(2.0)  # kept, flagged, after the retries


def test_the_load_check_is_a_steady_workload() -> None:
    times = [suite.load_check(3) for _ in range(2)]
    assert all(0 < t < 5 for t in times)
    assert "amx " in suite.machine_facts() and "avx512_bf16 " in suite.machine_facts()


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
    diff, charrnn, plain = (float(rows[0][i]) for i in (3, 6, 7))  # one pair: its own median
    assert math.isfinite(charrnn) and math.isfinite(plain)
    assert abs(diff - (charrnn - plain)) <= 1.5e-4  # each figure rounded to 4 decimals
    assert "machine:" in r.stdout
