"""Writing checkpoints: a checkpoint folder built atomically, the pointers moved, folders no
pointer names pruned (the layout is :mod:`charrnn.store.checkpoint`'s docstring). No pickle.

A checkpoint is built in a hidden temporary sibling folder, every file is fsynced, and the
folder is renamed into place; only then are the pointers replaced (a temporary file, fsync,
``os.replace``). A crash at any moment leaves the previous checkpoint and pointers usable.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from .atomic import (
    TMP_PREFIX,
    fsync_dir,
    fsync_file,
    json_text,
    temporary_sibling,
    write_text_atomic,
)
from .checkpoint import BEST, LATEST, checkpoint_folders, read_pointer

if TYPE_CHECKING:
    import torch

    from ..model.rnn import CharRNN


def _json_text(obj: Any) -> str:
    return json_text(obj, indent=2, allow_nan=False) + "\n"


_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def save_file(tensors: Mapping[str, Any], path: str, metadata: dict[str, str]) -> None:
    """safetensors' own writer (imported on first use: it needs torch, which reading does not).
    Raises OSError when it cannot write (safetensors raises its own SafetensorError, whose text
    names the OS error: ``I/O error: No space left on device (os error 28) at path ...``)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file as write

    try:
        write(dict(tensors), path, metadata=metadata)
    except SafetensorError as e:
        m = _OS_ERROR.search(str(e))
        if m is None:
            raise OSError(str(e).strip() or "safetensors could not write it") from None
        code = int(m.group(1))
        raise OSError(code, os.strerror(code)) from None


def write_checkpoint(
    run_dir: Path,
    name: str,
    json_files: Mapping[str, Any],
    tensor_files: Mapping[str, Mapping[str, torch.Tensor]],
    raw_files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a checkpoint folder ``run_dir/name`` atomically and return its path."""
    run_dir = Path(run_dir)
    final = run_dir / name
    tmp = temporary_sibling(final)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        for fname, obj in json_files.items():
            (tmp / fname).write_text(_json_text(obj), encoding="utf-8")
            fsync_file(tmp / fname)
        for fname, data in (raw_files or {}).items():
            (tmp / fname).write_bytes(data)
            fsync_file(tmp / fname)
        for fname, tensors in tensor_files.items():
            flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
            save_file(flat, str(tmp / fname), metadata={"format": "pt"})
            fsync_file(tmp / fname)
        fsync_dir(tmp)
        if final.exists():
            # Same name again (e.g. a resumed run saving at the step it resumed from): move the
            # old one aside first so that the rename below cannot fail on a non-empty folder.
            old = temporary_sibling(final, "old-")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(run_dir)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = e.strerror or str(e)
        raise CheckpointError(f"{final}: cannot save checkpoint ({reason})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def set_pointer(run_dir: Path, pointer: str, name: str) -> None:
    """Atomically make ``run_dir/pointer`` name checkpoint ``name``."""
    path = Path(run_dir) / pointer
    try:
        write_text_atomic(path, name + "\n")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot update ({e.strerror or e})") from None


def prune(run_dir: Path) -> None:
    """Remove checkpoint folders no pointer names, and left-over temporary folders."""
    run_dir = Path(run_dir)
    keep = {read_pointer(run_dir, BEST), read_pointer(run_dir, LATEST)}
    if keep == {None}:
        return
    for p in checkpoint_folders(run_dir):
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def clean_temporary(run_dir: Path) -> None:
    """Remove half-written ``.tmp-*`` entries that an interrupted save left behind."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name.startswith(TMP_PREFIX):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def model_tensors(model: CharRNN) -> dict[str, torch.Tensor]:
    """The weights to store (a tied head shares the embedding and is stored once)."""
    sd = model.state_dict()
    if model.config.tie_weights:
        sd.pop("head.weight", None)
    return sd
