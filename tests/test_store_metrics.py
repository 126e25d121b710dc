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


def test_a_torn_last_line_does_not_swallow_the_next_sessions_start(tmp_path: Path) -> None:
    """A kill mid-line leaves a torn tail; the next session's log must begin a new line, so
    its ``start`` record is read (glued onto the torn line it would be lost)."""
    log = MetricsLog(tmp_path)
    log.write({"event": "start", "step": 0})
    log.write({"event": "eval", "step": 10, "val_loss": 3.0})
    log.close()
    with open(tmp_path / METRICS, "ab") as f:
        f.write(b'{"event": "step", "step": 12, "train_lo')  # killed here
    again = MetricsLog(tmp_path)
    again.write({"event": "start", "step": 10, "resumed": True})
    again.write({"event": "eval", "step": 20, "val_loss": 2.0})
    again.close()
    got = [(r["event"], r["step"]) for r in read_metrics(tmp_path)]
    assert got == [("start", 0), ("eval", 10), ("start", 10), ("eval", 20)]
    lines = (tmp_path / METRICS).read_bytes().split(b"\n")
    assert lines[2] == b'{"event": "step", "step": 12, "train_lo'  # kept, on its own line
    # A file that ends cleanly (or is empty) gets no blank line.
    clean = tmp_path / "clean"
    clean.mkdir()
    for _ in range(2):
        log = MetricsLog(clean)
        log.write({"event": "start", "step": 0})
        log.close()
    assert (clean / METRICS).read_bytes().count(b"\n\n") == 0
    assert (clean / METRICS).read_bytes().startswith(b"{")


def test_a_record_naming_a_file_that_is_not_utf8_is_written_and_read_back(tmp_path: Path) -> None:
    import os

    name = os.fsdecode(b"caf\xe9.txt")
    log = MetricsLog(tmp_path)
    log.write({"event": "start", "step": 0, "corpus": name})
    log.close()
    (tmp_path / METRICS).read_bytes().decode("utf-8")  # the file stays UTF-8
    assert read_metrics(tmp_path) == [{"event": "start", "step": 0, "corpus": name}]
