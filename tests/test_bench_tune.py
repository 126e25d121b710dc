"""bench/tune.py: the options each trial passes, the --try parser, the stored study (SQLite, the
defaults and the plain-like setting first) and its summary; the timed runs are replaced by a
function of the options, so that the study's plumbing is checked without minutes of training."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import optuna
import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_tune() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tune", ROOT / "bench" / "tune.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


tune = load_tune()


def test_options_keep_4096_characters_a_step() -> None:
    assert tune.options_of({}) == []  # the defaults trial passes nothing
    for seq in (32, 64, 128):
        opts = tune.options_of({**tune.PLAIN_LIKE, "seq_len": seq})
        batch = int(opts[opts.index("--batch-size") + 1])
        assert batch * seq == tune.CHARS_PER_STEP
        assert opts[opts.index("--seq-len") + 1] == str(seq)
    opts = tune.options_of({**tune.PLAIN_LIKE, "lr": 0.0061234, "weight_decay": 0.3})
    assert opts[opts.index("--lr") + 1] == "0.006123"
    assert opts[opts.index("--weight-decay") + 1] == "0.3"


def test_try_specs_are_typed_and_checked() -> None:
    got = tune.parse_try("dropout=0.1,seq_len=32,embed_dim=64")
    assert got == {"dropout": 0.1, "seq_len": 32, "embed_dim": 64}
    assert isinstance(got["seq_len"], int) and isinstance(got["dropout"], float)
    with pytest.raises(SystemExit, match="unknown parameter 'layers'"):
        tune.parse_try("layers=3")
    # values the space does not hold fail here, not inside Optuna in the middle of a study
    with pytest.raises(SystemExit, match="hidden=512 is outside the space"):
        tune.parse_try("hidden=512")
    with pytest.raises(SystemExit, match=r"dropout=0\.33 is outside"):
        tune.parse_try("dropout=0.33")  # off the 0.05 grid
    with pytest.raises(SystemExit, match=r"lr=0\.05 is outside"):
        tune.parse_try("lr=0.05")
    with pytest.raises(SystemExit, match="'x' is not a number"):
        tune.parse_try("lr=x")
    assert tune.parse_try("dropout=0.35,lr=0.006") == {"dropout": 0.35, "lr": 0.006}


def fake_run(seen: list[list[str]]) -> Any:
    """A stand-in for suite.run_charrnn whose score is a function of the options: lower
    weight decay scores worse, so the study's best must be the trial with the most."""

    def run(train: Path, val: Path, budget: float, extra: list[str], tmp: Path) -> Any:
        seen.append(extra)
        wd = float(extra[extra.index("--weight-decay") + 1]) if extra else 0.01
        return 2.0 - wd, 100, budget, "GRU 2x256, 2 threads, fp32"

    return run


def test_a_study_starts_from_the_defaults_and_the_plain_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpora = tmp_path / "corpora"
    (corpora / "suite").mkdir(parents=True)
    for part in ("train", "val"):
        (corpora / "suite" / f"es-fortunes.{part}.txt").write_text("abc " * 1024)
    seen: list[list[str]] = []
    monkeypatch.setattr(tune.suite, "run_charrnn", fake_run(seen))
    monkeypatch.setattr(tune.suite, "load_check", lambda: 1.0)
    db, results = tmp_path / "s.db", tmp_path / "STUDIES.md"
    argv = [
        *("--corpus", "es-fortunes", "--budget", "5", "--trials", "3"),
        *("--storage", f"sqlite:///{db}", "--corpora", str(corpora), "--results", str(results)),
        *("--try", "weight_decay=0.3,seq_len=32"),
    ]
    assert tune.main(argv) == 0
    assert seen[0] == []  # the defaults, untouched
    assert seen[1] == tune.options_of(tune.PLAIN_LIKE)
    assert seen[2] == tune.options_of({**tune.PLAIN_LIKE, "weight_decay": 0.3, "seq_len": 32})
    text = results.read_text()
    assert "--try weight_decay=0.3,seq_len=32" in text  # the command that reproduces it
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and "trial" not in ln]
    assert rows[0].startswith("| 2 | 1.7000 |")  # best first
    assert [r.split("|")[1].strip() for r in rows] == ["2", "0", "1"]  # 1.70, 1.99, 2.00
    assert "(defaults)" in rows[1]
    assert "| 100 | 100.0 |" in rows[0]  # steps, passes: 100 x 4,096 / 4,096 characters

    # the stored study continues: one more trial, sampled (the enqueued ones are not repeated)
    assert tune.main([*argv[:4], "--trials", "1", *argv[6:12]]) == 0
    study = optuna.load_study(study_name="es-fortunes-5", storage=f"sqlite:///{db}")
    assert len(study.trials) == 4
    assert [t.value for t in study.trials[:3]] == pytest.approx([1.99, 2.0, 1.7])
    sampled = study.trials[3]
    assert seen[3] == tune.options_of(sampled.params)  # the options are the sampled values
    assert sampled.value == pytest.approx(2.0 - sampled.params["weight_decay"])
