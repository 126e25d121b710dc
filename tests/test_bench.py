"""Smoke test of bench/run.py: a few seconds of training on a small corpus, tiny probes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_script_runs_and_appends_a_row(tmp_path: Path, verses_text: str) -> None:
    (tmp_path / "v.train.txt").write_text(verses_text[:30_000], encoding="utf-8")
    (tmp_path / "v.val.txt").write_text(verses_text[-5_000:], encoding="utf-8")
    results = tmp_path / "RESULTS.md"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--budget", "4", "--quick"]
    cmd += ["--corpus", str(tmp_path / "v.train.txt"), "--results", str(results)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for label in ("fp32 GEMM peak", "val nats/char (exact", "sample 1 stream", "eval 64 streams"):
        assert label in r.stdout
    lines = results.read_text(encoding="utf-8").splitlines()
    assert lines[-1].startswith("| ") and "(quick)" in lines[-1] and "v.train.txt" in lines[-1]
    assert lines[-1].count("|") == lines[-3].count("|")  # as many cells as the header


@pytest.mark.slow
def test_serve_bench_measures_each_level_against_one_client(trained_run: Path) -> None:
    cmd = [sys.executable, str(ROOT / "bench" / "serve.py"), str(trained_run)]
    r = subprocess.run(
        [*cmd, "--clients", "1,4", "--quick"], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    rows = [ln.strip("|").split("|") for ln in r.stdout.splitlines() if ln[:4] in ("| 1 ", "| 4 ")]
    assert [int(c[0]) for c in rows] == [1, 4]
    assert float(rows[0][2]) == 1.0  # one client against itself
    for c in rows:
        assert float(c[1].replace(",", "")) > 0 and "-" in c[5]  # chars/s, fairness range
