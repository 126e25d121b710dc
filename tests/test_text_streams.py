"""Passes over a chunked text: each must give what one pass over the whole text gives, however
the text is cut into chunks."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest

from charrnn.text.streams import (
    at_line_ends,
    control_count,
    count_chars,
    split_chunks,
    text_stats,
)

TEXT = "The wolf.\nA door, a lamp,\n\n and ça va — 狼\tend\n" * 7


def _chunks(text: str, seed: int) -> list[str]:
    rng, out, i = random.Random(seed), [], 0
    while i < len(text):
        n = rng.randint(0, 9)  # empty chunks too
        out.append(text[i : i + n])
        i += n
    return out


@pytest.mark.parametrize("seed", range(5))
def test_stats_and_counts_do_not_depend_on_the_chunks(seed: int) -> None:
    chunks = _chunks(TEXT, seed)
    stats = text_stats(chunks)
    assert stats.chars == len(TEXT)
    assert stats.sha256 == hashlib.sha256(TEXT.encode("utf-8")).hexdigest()
    assert count_chars(chunks) == Counter(TEXT)


@pytest.mark.parametrize(("seed", "cut"), [(0, 0), (1, 1), (2, 50), (3, len(TEXT)), (4, 10**6)])
def test_a_cut_splits_the_text_at_one_place(seed: int, cut: int) -> None:
    parts = list(split_chunks(_chunks(TEXT, seed), cut))
    assert "".join(a for a, _ in parts) == TEXT[:cut]
    assert "".join(b for _, b in parts) == TEXT[cut:]


@pytest.mark.parametrize("seed", range(4))
def test_line_end_regrouping_keeps_both_texts_and_cuts_after_newlines(seed: int) -> None:
    cut = 101
    pairs = list(at_line_ends(split_chunks(_chunks(TEXT, seed), cut)))
    assert "".join(a for a, _ in pairs) == TEXT[:cut]
    assert "".join(b for _, b in pairs) == TEXT[cut:]
    # every chunk but the last of each part ends a line
    vals = [b for _, b in pairs if b]
    assert all(v.endswith("\n") for v in vals[:-1])


def test_control_characters_are_counted_except_ordinary_whitespace() -> None:
    counts = count_chars("a\nb\tc\r\fd\x00e\x1b\x7f\x85 ")
    assert control_count(counts) == 4  # NUL, ESC, DEL and the C1 NEL; not \n \t \r \f
    assert control_count(Counter("plain text\n")) == 0
