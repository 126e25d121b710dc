"""What a run folder takes on disk, when its checkpoints were written, and which folders hold
pointers: the figures ``charrnn runs`` and ``info`` show (the layout is
:mod:`charrnn.store.checkpoint`'s)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .checkpoint import BEST, CONFIG, LATEST


def file_sizes(ckpt: Path) -> dict[str, int]:
    """Bytes of each file directly in a checkpoint folder, by name."""
    return {p.name: p.stat().st_size for p in sorted(Path(ckpt).iterdir()) if p.is_file()}


def saved_time(ckpt: Path) -> float:
    """When a checkpoint was written, as a Unix time (its config.json's modification time)."""
    return (Path(ckpt) / CONFIG).stat().st_mtime


def disk_usage(path: Path) -> int:
    """Bytes in the files under ``path`` (symbolic links are not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we looked
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def pointer_folders(root: Path) -> list[Path]:
    """Folders directly in ``root`` that hold a ``best`` or ``latest`` pointer file."""
    try:
        entries = list(Path(root).iterdir())
    except OSError:  # not there, or removed while it was listed
        return []
    found = [p for p in entries if (p / BEST).is_file() or (p / LATEST).is_file()]
    return sorted(found)
