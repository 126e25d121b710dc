"""Sizes and times of a run on disk, and the folders that hold pointers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from charrnn.store import checkpoint as ck
from charrnn.store import disk


def test_sizes_and_times_of_a_real_run(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = ck.resolve_checkpoint(run)
    sizes = disk.file_sizes(best)
    assert sizes[ck.MODEL] == (best / ck.MODEL).stat().st_size > 0 and ck.CONFIG in sizes
    total = sum(p.stat().st_size for p in run.rglob("*") if p.is_file() and not p.is_symlink())
    assert disk.disk_usage(run) == total
    os.utime(best / ck.CONFIG, (1_000_000_000, 1_000_000_000))
    assert disk.saved_time(best) == 1_000_000_000


def test_pointer_folders_are_the_runs_and_their_remains(trained_run: Path, tmp_path: Path) -> None:
    shutil.copytree(trained_run, tmp_path / "b-run")
    (tmp_path / "a-left").mkdir()
    (tmp_path / "a-left" / ck.LATEST).write_text("step-00000009\n")  # its checkpoints are gone
    (tmp_path / "c-other").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert disk.pointer_folders(tmp_path) == [tmp_path / "a-left", tmp_path / "b-run"]
    assert disk.pointer_folders(tmp_path / "missing") == []
