"""Writing checkpoints: atomic folders, pointers, pruning, and what an interrupted save leaves."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charrnn.errors import CheckpointError
from charrnn.store import checkpoint as ck
from charrnn.store import saving
from charrnn.store.atomic import TMP_PREFIX


def _save(run: Path, step: int, value: float = 0.0) -> Path:
    return saving.write_checkpoint(
        run,
        ck.checkpoint_name(step),
        {ck.CONFIG: {"step": step, "name": "café ✓"}},
        {ck.MODEL: {"w": torch.full((2, 3), value)}},
        {"raw.bin": b"\x00\x01"},
    )


def test_a_checkpoint_is_written_whole_and_read_back(tmp_path: Path) -> None:
    path = _save(tmp_path / "run", 5, 1.5)
    assert path == tmp_path / "run" / "step-00000005"
    assert ck.read_json(path / ck.CONFIG) == {"step": 5, "name": "café ✓"}
    assert (path / "raw.bin").read_bytes() == b"\x00\x01"
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(path / ck.MODEL))["w"], torch.full((2, 3), 1.5))
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_the_same_name_again_replaces_the_old_checkpoint(tmp_path: Path) -> None:
    _save(tmp_path, 5, 1.0)
    _save(tmp_path, 5, 2.0)
    from safetensors.torch import load_file

    assert float(load_file(str(tmp_path / "step-00000005" / ck.MODEL))["w"][0, 0]) == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000005"]


def test_a_save_that_fails_leaves_nothing_and_the_earlier_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(tmp_path, 5)
    saving.set_pointer(tmp_path, ck.LATEST, "step-00000005")

    def full_disk(tensors: object, path: str, metadata: object) -> None:
        Path(path).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saving, "save_file", full_disk)
    with pytest.raises(CheckpointError, match=r"step-00000006: cannot save checkpoint \(No space"):
        _save(tmp_path, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step-00000005"]
    assert ck.read_pointer(tmp_path, ck.LATEST) == "step-00000005"


def test_pointers_and_pruning_keep_best_and_latest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        _save(tmp_path, step)
    saving.prune(tmp_path)  # no pointer yet: nothing is removed
    assert len(ck.checkpoint_folders(tmp_path)) == 4
    saving.set_pointer(tmp_path, ck.BEST, "step-00000002")
    saving.set_pointer(tmp_path, ck.LATEST, "step-00000004")
    saving.prune(tmp_path)
    assert [p.name for p in ck.checkpoint_folders(tmp_path)] == ["step-00000002", "step-00000004"]
    assert ck.read_pointer(tmp_path, ck.BEST) == "step-00000002"


def test_a_pointer_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / ck.LATEST).mkdir()  # a folder where the pointer file goes
    with pytest.raises(CheckpointError, match=f"{ck.LATEST}: cannot update"):
        saving.set_pointer(tmp_path, ck.LATEST, "step-00000001")


def test_half_written_checkpoint_is_ignored_then_cleaned(trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = ck.resolve_checkpoint(run)
    # A save killed half way: a temporary folder with a truncated weights file.
    tmp = run / ".tmp-step-00009999-123"
    shutil.copytree(best, tmp)
    (tmp / ck.MODEL).write_bytes(b"\x00" * 10)
    assert ck.newest_checkpoint(run) == run / ck.read_pointer(run, ck.LATEST)  # type: ignore[operator]
    saving.clean_temporary(run)
    assert not tmp.exists()


def test_a_config_naming_a_file_that_is_not_utf8_is_saved_and_read_back(tmp_path: Path) -> None:
    name = os.fsdecode(b"/corpora/caf\xe9.txt")  # a Latin-1 file name as Python sees it
    path = saving.write_checkpoint(
        tmp_path, "step-00000001", {ck.CONFIG: {"data": {"sources": [name]}}}, {}
    )
    assert ck.read_json(path / ck.CONFIG) == {"data": {"sources": [name]}}


_FULL_DISK = """
import resource, sys, torch
from pathlib import Path
from charrnn.errors import CheckpointError
from charrnn.store import saving
run = Path(sys.argv[1])
def save(step, n):
    tensors = {"model.safetensors": {"w": torch.zeros(n)}}
    return saving.write_checkpoint(run, f"step-{step:08d}", {"config.json": {}}, tensors)
save(1, 4)
saving.set_pointer(run, "latest", "step-00000001")
# From here no file may grow past 64 KB: the OS refuses the write (EFBIG) as a full disk would.
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    save(2, 100000)
except CheckpointError as e:
    print(e)
"""


def test_a_tensor_file_the_os_refuses_is_one_checkpoint_error(tmp_path: Path) -> None:
    """safetensors' writer fails with its own SafetensorError (not an OSError): the save still
    ends in one CheckpointError naming the checkpoint and the reason, the previous one kept."""
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(run)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout == f"{run / 'step-00000002'}: cannot save checkpoint (File too large)\n"
    assert ck.read_pointer(run, ck.LATEST) == "step-00000001"
    assert sorted(p.name for p in run.iterdir()) == ["latest", "step-00000001"]
