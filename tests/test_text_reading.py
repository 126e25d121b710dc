from __future__ import annotations

from pathlib import Path

import pytest

from charrnn.errors import CorpusError
from charrnn.text.reading import iter_text, read_text


def test_read_text_policy_bom_and_crlf(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\r\n")
    assert read_text(p) == "one\ntwo\rthree\n"


def test_iter_text_handles_chunk_boundaries(tmp_path: Path) -> None:
    text = "é漢\r\n🙂a\r\nb" * 50
    p = tmp_path / "a.txt"
    p.write_bytes(text.encode("utf-8"))
    for size in (1, 2, 3, 7):
        assert "".join(iter_text(p, chunk_bytes=size)) == text.replace("\r\n", "\n")


def test_invalid_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    p = tmp_path / "bad.txt"
    p.write_bytes(b"hello \xff world")
    with pytest.raises(CorpusError) as e:
        read_text(p)
    assert str(e.value).startswith(f"{p}: not valid utf-8 at byte 6")
    assert read_text(p, errors="replace") == "hello \ufffd world"
    assert read_text(p, encoding="latin-1") == "hello ÿ world"


def test_missing_file_and_directory_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_text(tmp_path)
