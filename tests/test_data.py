from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charrnn.errors import CorpusError
from charrnn.text.reading import (
    batchify,
    fit_batch,
    iter_text,
    num_windows,
    read_text,
    split_text,
    window,
    windows,
)


def test_batchify_rows_are_contiguous_stretches() -> None:
    ids = torch.arange(25)
    data = batchify(ids, 3)
    assert data.shape == (3, 8)
    assert data[1].tolist() == list(range(8, 16))


def test_windows_cover_each_stream_and_targets_are_shifted() -> None:
    data = batchify(torch.arange(100), 4)  # (4, 25)
    xs, ys = [], []
    for _, x, y in windows(data, 7):
        assert x.shape == y.shape
        assert torch.equal(y[:, :-1], x[:, 1:])
        xs.append(x)
        ys.append(y)
    assert len(xs) == num_windows(25, 7) == 4
    # Consecutive windows continue each row: together they are the row without its last item.
    assert torch.equal(torch.cat(xs, dim=1), data[:, :-1])
    assert torch.equal(torch.cat(ys, dim=1), data[:, 1:])


def test_window_last_is_shorter() -> None:
    data = batchify(torch.arange(30), 3)  # (3, 10)
    x, y = window(data, 2, 4)
    assert x.shape == (3, 1) and y[:, 0].tolist() == [9, 19, 29]


def test_fit_batch_shrinks_for_small_corpora() -> None:
    assert fit_batch(10_000, 64, 64).shrunk is False
    f = fit_batch(500, 64, 64)
    assert (f.batch_size, f.seq_len, f.shrunk) == (7, 64, True)
    f = fit_batch(20, 64, 64)
    assert (f.batch_size, f.seq_len) == (1, 19)


def test_split_text_holds_out_the_tail() -> None:
    train, val = split_text("abcdefghij", 0.2)
    assert (train, val) == ("abcdefgh", "ij")


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
