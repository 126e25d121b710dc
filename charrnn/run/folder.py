"""A run folder: choosing its name, creating it, locking it for its one writer, and removing it
when nothing was saved in it (also after a start-up cut short anywhere: :func:`discard_unsaved`
knows every run folder this process made).

A run folder holds the run's checkpoints, pointers, metrics.jsonl and token cache (see
:mod:`charrnn.store.checkpoint`). Its default name is ``<root>/<corpus stem>-<cell>``, with ``-2``,
``-3``, ... when taken.

One writer per run. ``charrnn train`` (new or ``--resume``) holds an exclusive OS lock on the
folder's ``.lock`` file from before it writes anything until the run ends::

    claim / adopt / lock(run_dir)      os.open(".lock") + flock(LOCK_EX | LOCK_NB)
                                       refused at once -> RunBusy naming the holder's pid
    ... training, saving ...           the descriptor stays open: the lock is held
    RunLock.release() / process end    the kernel drops the lock (also after SIGKILL)

The writer is a process: locks taken again in the process that holds one share it. The lock
file stays on disk (deleting it would let two writers lock two different files); it holds the
holder's pid, host and command for the refusal message. Readers never take the lock: they read
complete checkpoints only. (On Windows, ``msvcrt.locking`` stands in for ``flock``.)
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CharRNNError
from ..store import checkpoint as ck
from ..text.reading import STDIN
from ..training.distributed import Dist, broadcast_text

if TYPE_CHECKING:
    import torch

LOCK_FILE = ".lock"

if sys.platform == "win32":  # pragma: no cover - no Windows CI
    import msvcrt

    _FAR = 1 << 30  # lock a byte far past the text, so that others can still read the holder

    def _try_lock(fd: int) -> None:
        os.lseek(fd, _FAR, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        os.lseek(fd, 0, os.SEEK_SET)

else:
    import fcntl

    def _try_lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class RunBusy(CharRNNError):
    """Another process is writing this run folder."""


@dataclass
class _Hold:
    """This process's OS lock on one lock file, shared by the RunLocks that took it."""

    fd: int
    key: tuple[int, int]  # (device, inode) of the lock file: kept unique by the open fd
    count: int = 1


_HOLDS: dict[tuple[int, int], _Hold] = {}
_HOLDS_LOCK = threading.Lock()
# Run folders (and staging folders) this process made and has not discarded, and the one it is
# making: :func:`discard_unsaved` finds them wherever a signal handler that ends the process
# cuts the code short (see :func:`_make_new`).
_MADE: set[Path] = set()
_MAKING: set[Path] = set()


def _forget_holds() -> None:
    """In a forked child: the parent's holds are not the child's (it closes its copies)."""
    global _HOLDS_LOCK
    _HOLDS_LOCK = threading.Lock()
    for hold in _HOLDS.values():
        with contextlib.suppress(OSError):
            os.close(hold.fd)
        hold.fd = -1
    _HOLDS.clear()
    _MADE.clear()  # nor are the folders it made the child's to remove
    _MAKING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_holds)


class RunLock:
    """The one writer's hold on a run folder: an OS lock on its ``.lock`` file, held while the
    file stays open. The writer is a process: RunLocks taken in one process on one folder share
    its lock, which goes when the last is released (or the process ends). A RunLock made
    without a hold holds nothing (what the ranks of a torchrun job other than 0 get)."""

    def __init__(self, hold: _Hold | None = None) -> None:
        self._hold = hold

    @property
    def held(self) -> bool:
        return self._hold is not None

    def release(self) -> None:
        """Let the next writer in (closing the last descriptor drops the lock); safe to repeat."""
        with _HOLDS_LOCK:
            hold, self._hold = self._hold, None
            if hold is None or hold.fd < 0:
                return
            hold.count -= 1
            if hold.count == 0:
                _HOLDS.pop(hold.key, None)
                os.close(hold.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock(run_dir: Path) -> RunLock:
    """Take the writer lock of ``run_dir`` (an existing folder) without waiting.

    Raises RunBusy, naming the process that holds it, when another process has it;
    CharRNNError when the lock file cannot be opened or locked."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise CharRNNError(f"{run_dir}: cannot open the run's lock file ({e.strerror})") from None
    with _HOLDS_LOCK:
        st = os.fstat(fd)
        hold = _HOLDS.get((st.st_dev, st.st_ino))
        if hold is not None:  # this process is the writer already
            os.close(fd)
            hold.count += 1
            return RunLock(hold)
        _lock_or_refuse(fd, run_dir)
        hold = _HOLDS[(st.st_dev, st.st_ino)] = _Hold(fd, (st.st_dev, st.st_ino))
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(note) + "\n").encode("utf-8"))
    except OSError:
        pass  # the note only names the holder in a refusal; the lock is what counts
    return RunLock(hold)


def _lock_or_refuse(fd: int, run_dir: Path) -> None:
    """Lock ``fd`` at once, or close it and raise RunBusy naming the holder (CharRNNError when
    the file system cannot lock)."""
    try:
        _try_lock(fd)
    except (BlockingIOError, PermissionError):
        holder = _holder(fd)
        os.close(fd)
        raise RunBusy(
            f"{run_dir}: another charrnn train ({holder}) is writing this run; "
            "wait for it to end, or train into another --out"
        ) from None
    except OSError as e:
        os.close(fd)
        raise CharRNNError(f"{run_dir}: cannot lock the run folder ({e.strerror})") from None


def _holder(fd: int, tries: int = 20) -> str:
    """``pid 1234`` (``pid 1234 on HOST`` for another host) from the lock file's note, which
    the holder writes just after it locks: read again for a moment while it is not there."""
    for attempt in range(tries):
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            note: Any = json.loads(os.read(fd, 4096).decode("utf-8"))
            pid, host = int(note["pid"]), str(note.get("host") or "")
            break
        except (OSError, ValueError, TypeError, KeyError):
            if attempt == tries - 1:
                return "pid unknown"  # locked, and no note yet
            time.sleep(0.01)
    here = socket.gethostname()
    return f"pid {pid}" if host in ("", here) else f"pid {pid} on {host}"


def lock_on_main(run_dir: Path, dist: Dist, device: torch.device) -> RunLock:
    """The writer lock of ``run_dir`` for a job of ``dist`` processes: rank 0, the one that
    writes, takes it; a refusal is raised on every rank, so that no rank waits for it."""
    if not dist.enabled:
        return lock(run_dir)
    held, refusal = RunLock(), ""
    if dist.is_main:
        try:
            held = lock(run_dir)
        except CharRNNError as e:
            refusal = str(e) or "error"
    refusal = broadcast_text(dist, refusal, device)
    if refusal:
        raise RunBusy(refusal)
    return held


def claim(out: str) -> tuple[Path, bool, RunLock]:
    """The folder a new run was told to use (``--out``), created if missing and locked for
    writing. Returns the folder, whether this call created it, and the lock. ``out`` must be
    missing or empty (a lock file aside), which is checked again once the lock is held. (A run
    without ``--out`` reads its corpus in a :func:`stage` folder and :func:`adopt` names it.)
    Raises CharRNNError for a used ``out``, RunBusy when another run holds it."""
    run_dir = Path(out)
    _check_free(run_dir)
    created = not run_dir.is_dir() and _make_new(run_dir)
    held = lock(run_dir)
    try:
        _check_free(run_dir)
    except CharRNNError:
        held.release()
        _MADE.discard(run_dir)  # another process filled it: not ours to remove
        raise
    return run_dir, created, held


def auto_name(first_source: str, cell: str) -> str:
    """The folder name of a new run without ``--out``: ``<first source's stem>-<cell>``."""
    stem = "stdin" if first_source == STDIN else Path(first_source).stem or "corpus"
    return f"{stem}-{cell}"


STAGING_PREFIX = ".new-"  # a new run's folder while its name is not yet decided


def stage(root: str) -> Path:
    """A hidden folder in ``root`` (made if missing) where a new run without ``--out`` reads
    its corpus before the plan decides the run's name; :func:`adopt` moves it to that name.
    Run listings skip it: it holds no checkpoint. Raises CharRNNError when it cannot be made."""
    base = Path(root)
    _make(base)
    while True:
        staged = base / f"{STAGING_PREFIX}{secrets.token_hex(4)}"
        _MAKING.add(staged)  # see _make_new
        try:
            os.mkdir(staged, 0o700)
        except FileExistsError:
            continue
        except OSError as e:
            raise CharRNNError(f"{base}: cannot create a run folder in it ({e.strerror})") from None
        else:
            _MADE.add(staged)
            return staged
        finally:
            _MAKING.discard(staged)


def adopt(staged: Path, name: str) -> tuple[Path, RunLock]:
    """Move the files of a :func:`stage` folder to a new run folder beside it, ``name`` (or
    ``name-2``, ``-3``, ... when taken), claimed the way :func:`claim` claims one and locked;
    the staging folder is removed. Returns the folder and its lock. Raises CharRNNError when a
    file cannot move (the staging folder is then left as it was, for the caller to discard)."""
    new_dir = _make_next(staged.parent, name)
    try:
        new_lock = lock(new_dir)
    except CharRNNError:
        discard(new_dir)
        raise
    moved: list[str] = []
    try:
        for path in staged.iterdir():
            if path.name != LOCK_FILE:
                os.replace(path, new_dir / path.name)
                moved.append(path.name)
    except OSError as e:
        for moved_name in moved:  # put the files back as they were
            with contextlib.suppress(OSError):
                os.replace(new_dir / moved_name, staged / moved_name)
        new_lock.release()
        discard(new_dir)
        raise CharRNNError(
            f"{new_dir}: cannot move the new run's files in ({e.strerror})"
        ) from None
    discard(staged)
    return new_dir, new_lock


def _check_free(run_dir: Path) -> None:
    """Raise CharRNNError unless ``run_dir`` is missing or an empty folder (a lock file aside)."""
    if run_dir.exists() and (
        not run_dir.is_dir() or any(p.name != LOCK_FILE for p in run_dir.iterdir())
    ):
        raise CharRNNError(
            f"{run_dir}: already exists and is not empty; use --resume {run_dir} to continue "
            "it, or choose another --out"
        )


def _make(run_dir: Path) -> bool:
    """Make the folder (and its parents); True if this call created it."""
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CharRNNError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    try:
        os.mkdir(run_dir)
    except FileExistsError:
        return False
    except OSError as e:
        raise CharRNNError(f"{run_dir}: cannot create the run folder ({e.strerror})") from None
    return True


def _make_new(run_dir: Path) -> bool:
    """:func:`_make` for a run folder of this process: noted in ``_MAKING`` before it is made
    and in ``_MADE`` once made, so that :func:`discard_unsaved` finds it whatever the moment a
    signal ends the process (between ``os.mkdir`` and the next line included)."""
    _MAKING.add(run_dir)
    try:
        created = _make(run_dir)
        if created:
            _MADE.add(run_dir)
    finally:
        _MAKING.discard(run_dir)
    return created


def _make_next(root: Path, stem: str) -> Path:
    """Create and return the first free folder of ``stem``, ``stem-2``, ... in ``root``."""
    for i in itertools.count(1):
        run_dir = root / (stem if i == 1 else f"{stem}-{i}")
        if not run_dir.exists() and _make_new(run_dir):
            return run_dir
    raise AssertionError("unreachable")


def discard(run_dir: Path) -> None:
    """Remove a run folder this process created (on an error before anything was saved)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    _MADE.discard(Path(run_dir))


def discard_if_empty(run_dir: Path) -> None:
    """Remove a run folder in which no complete checkpoint was saved."""
    if not ck.checkpoint_folders(run_dir):
        discard(run_dir)


def discard_unsaved() -> None:
    """Remove every run folder (and staging folder) this process made in which no complete
    checkpoint was saved: what a start-up cut short by a signal leaves, wherever it fell (a
    folder being made this very moment is removed if it is there, and still empty)."""
    for run_dir in sorted(_MAKING):
        with contextlib.suppress(OSError):
            os.rmdir(run_dir)
    for run_dir in sorted(_MADE):
        discard_if_empty(run_dir)
