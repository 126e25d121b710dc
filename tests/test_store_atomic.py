"""Atomic file writes (charrnn/store/atomic.py): a reader sees the old file or the new one, never
a part; a failed write leaves the old file whole and no temporary file behind."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from charrnn.store.atomic import (
    TMP_PREFIX,
    atomic_file,
    copy_stream_atomic,
    fsync_dir,
    fsync_file,
    temporary_sibling,
    write_text_atomic,
)


class Boom(Exception):
    pass


def test_the_temporary_is_a_hidden_sibling_named_after_the_file_and_process(
    tmp_path: Path,
) -> None:
    path = tmp_path / "latest"
    tmp = temporary_sibling(path)
    assert tmp.parent == tmp_path  # the same folder: os.replace stays one rename
    assert tmp.name == f"{TMP_PREFIX}latest-{os.getpid()}"
    assert temporary_sibling(path, "old-").name == f"{TMP_PREFIX}old-latest-{os.getpid()}"
    assert tmp.name.startswith(".")  # hidden from listings


def test_the_new_content_appears_only_when_the_writer_is_done(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with atomic_file(path) as f:
        f.write(b"new ")
        f.write(b"content")
        assert path.read_bytes() == b"old"  # a reader meanwhile sees the old file
        assert temporary_sibling(path).exists()
    assert path.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_a_writer_that_raises_leaves_the_old_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"the old, complete file")
    with pytest.raises(Boom), atomic_file(path) as f:
        f.write(b"half of the new")
        raise Boom()
    assert path.read_bytes() == b"the old, complete file"
    assert os.listdir(tmp_path) == ["f.txt"]  # no temporary file left behind


def test_a_writer_that_raises_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    with pytest.raises(Boom), atomic_file(path) as f:
        f.write(b"partial")
        raise Boom()
    assert os.listdir(tmp_path) == []


def test_an_unwritable_place_raises_oserror_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError), atomic_file(tmp_path / "missing" / "f.txt") as f:
        f.write(b"x")
    assert os.listdir(tmp_path) == []


def test_a_rename_that_fails_removes_the_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_write_text_atomic_writes_utf8_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "pointer"
    write_text_atomic(path, "step-00000001\n")
    write_text_atomic(path, "Café, 東京 ✓\n")
    assert path.read_bytes() == "Café, 東京 ✓\n".encode()
    assert os.listdir(tmp_path) == ["pointer"]


def test_copy_stream_atomic_copies_a_stream_longer_than_its_buffer(tmp_path: Path) -> None:
    data = bytes(range(256)) * (10 * 1024) + b"tail"  # 2.5 MiB: more than one 1 MiB chunk
    path = tmp_path / "stdin-copy.txt"
    copy_stream_atomic(io.BytesIO(data), path)
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["stdin-copy.txt"]


class _BreakingStream(io.RawIOBase):
    """A stream that gives ``good`` bytes, then fails (a pipe whose writer died)."""

    def __init__(self, good: bytes) -> None:
        self.parts: Iterator[bytes] = iter([good])

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        part = next(self.parts, None)
        if part is None:
            raise OSError(5, "Input/output error")
        return part


def test_a_stream_that_fails_midway_leaves_the_old_copy(tmp_path: Path) -> None:
    path = tmp_path / "copy.txt"
    path.write_bytes(b"previous copy")
    with pytest.raises(OSError, match="Input/output error"):
        copy_stream_atomic(_BreakingStream(b"some new bytes"), path)  # type: ignore[arg-type]
    assert path.read_bytes() == b"previous copy"
    assert os.listdir(tmp_path) == ["copy.txt"]


def test_fsync_helpers_work_and_a_missing_folder_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fsync_file(path)
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "does-not-exist")  # must not raise
    with pytest.raises(FileNotFoundError):
        fsync_file(tmp_path / "absent")
    assert path.read_bytes() == b"x"


# ------------------------------------------------------------------------- stored JSON


def test_stored_json_holds_a_name_that_is_not_utf8_and_gives_it_back(tmp_path: Path) -> None:
    import json

    from charrnn.store.atomic import json_text

    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9.txt")  # a Latin-1 file name
    obj = {"sources": [name], "plain": "café ✓"}
    text = json_text(obj, indent=2)
    write_text_atomic(tmp_path / "config.json", text)  # encodable: no UnicodeEncodeError
    assert "\\udce9" in text and "café ✓" in text  # escaped; other text as it is
    back = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert back == obj
    assert os.fsencode(back["sources"][0]).endswith(b"/caf\xe9.txt")  # the same file
    assert json_text({"a": "é"}) == json.dumps({"a": "é"}, ensure_ascii=False)
