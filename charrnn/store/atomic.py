"""Atomic file writes: build in a temporary sibling, fsync, rename into place (stdlib only).

A reader (or a crash) sees the old file or the new one, never a part of it::

    path.tmp-NAME-PID   written, flushed, fsynced      (hidden: TMP_PREFIX, ignored by readers)
          |  os.replace  (atomic on POSIX and Windows)
          v
    path/NAME           the new content; the folder is fsynced so the rename survives a crash

Every module that writes a file others read (pointers, the token cache, the copy of standard
input, checkpoint folders) goes through here. Errors are raised as ``OSError``: each caller turns
them into a one-line message naming its own kind of file. JSON that is stored (config.json,
metrics.jsonl) is made by :func:`json_text`, which can always be written as UTF-8.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

TMP_PREFIX = ".tmp-"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any, **options: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **options)`` that always encodes as UTF-8: a lone
    surrogate (how Python holds a file name's bytes that are not UTF-8, such as a Latin-1
    ``caf\\xe9.txt``) is written as its JSON escape ``\\udce9``, which reads back as the same
    string, so the same file name."""
    text = json.dumps(obj, ensure_ascii=False, **options)
    if not _LONE_SURROGATE.search(text):
        return text
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def temporary_sibling(path: Path, tag: str = "") -> Path:
    """The hidden name a file or folder ``path`` is built under before it is renamed into place."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{tag}{path.name}-{os.getpid()}")


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where folders cannot be fsynced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file already written and closed to the disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary sibling of ``path`` for writing bytes; on a clean exit it is fsynced and
    renamed onto ``path``, on any exception it is removed and ``path`` is left as it was.

    Raises ``OSError`` when the file cannot be written or renamed.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically. Raises ``OSError``."""
    with atomic_file(path) as f:
        f.write(text.encode("utf-8"))


def copy_stream_atomic(src: BinaryIO, path: Path) -> None:
    """Copy a byte stream (e.g. standard input) into ``path`` atomically, in bounded memory.
    Raises ``OSError``."""
    with atomic_file(path) as f:
        shutil.copyfileobj(src, f, 1 << 20)
