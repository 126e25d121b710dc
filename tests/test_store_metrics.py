"""metrics.jsonl: appended line by line while a run trains, read safely at any moment."""

from __future__ import annotations

import json
from pathlib import Path

from charrnn.store.metrics import METRICS, MetricsLog, read_metrics


def test_metrics_log_appends_whole_lines_and_reader_skips_a_partial_one(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.write({"event": "step", "step": 1, "train_loss": 2.5, "val_loss": float("nan")})
    # A reader sees the line at once, before close (no buffering).
    assert read_metrics(tmp_path) == [
        {"event": "step", "step": 1, "train_loss": 2.5, "val_loss": None}
    ]
    log.write({"event": "eval", "step": 2, "val_loss": 2.0})
    log.close()
    with open(tmp_path / METRICS, "ab") as f:
        f.write(b'{"event": "step", "st')  # a line being written right now
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    lines = (tmp_path / METRICS).read_text().split("\n")
    assert json.loads(lines[1]) == {"event": "eval", "step": 2, "val_loss": 2.0}
    assert read_metrics(tmp_path / "nowhere") == []


def test_read_metrics_drops_what_a_resumed_session_redoes(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    for r in [
        {"event": "start", "step": 0},
        {"event": "eval", "step": 10, "val_loss": 3.0},
        {"event": "step", "step": 12},
        {"event": "eval", "step": 20, "val_loss": 2.0},  # its checkpoint was lost in a crash
        {"event": "start", "step": 10},  # resumed from step 10
        {"event": "eval", "step": 20, "val_loss": 2.1},
    ]:
        log.write(r)
    log.close()
    got = [(r["event"], r["step"], r.get("val_loss")) for r in read_metrics(tmp_path)]
    assert got == [
        ("start", 0, None),
        ("eval", 10, 3.0),
        ("start", 10, None),
        ("eval", 20, 2.1),
    ]
