"""A run folder: choosing its name, creating it, and removing it when nothing was saved in it.

A run folder holds the run's checkpoints, pointers, metrics.jsonl and token cache (see
:mod:`charrnn.checkpoint`). Its default name is ``<root>/<corpus stem>-<cell>``, with ``-2``,
``-3``, ... when taken.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import checkpoint as ck
from .data import STDIN
from .errors import CharRNNError


def choose(out: str | None, first_source: str, cell: str, root: str) -> Path:
    """The folder of a new run: ``out`` if it is free (missing or empty), else a new name under
    ``root`` from the first source's name and the cell. Raises CharRNNError for a used ``out``."""
    if out:
        run_dir = Path(out)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise CharRNNError(
                f"{run_dir}: already exists and is not empty; use --resume {run_dir} to continue "
                "it, or choose another --out"
            )
        return run_dir
    stem = "stdin" if first_source == STDIN else Path(first_source).stem or "corpus"
    stem = f"{stem}-{cell}"
    cand, i = Path(root) / stem, 2
    while cand.exists():
        cand, i = Path(root) / f"{stem}-{i}", i + 1
    return cand


def create(run_dir: Path) -> bool:
    """Make the folder (and its parents); True if it did not exist before."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharRNNError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    return created


def discard(run_dir: Path) -> None:
    """Remove a run folder this process created (on an error before anything was saved)."""
    shutil.rmtree(run_dir, ignore_errors=True)


def discard_if_empty(run_dir: Path) -> None:
    """Remove a run folder in which no complete checkpoint was saved."""
    if not ck.checkpoint_folders(run_dir):
        discard(run_dir)
