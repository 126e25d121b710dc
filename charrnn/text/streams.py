"""Passes over a text that arrives in chunks (a corpus is never held whole in memory): its
length and sha256, its character counts, a cut into two parts, and regrouping at line ends.
Standard library only; :mod:`charrnn.run.corpus` runs them over a run's sources."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

_CONTROL_OK = {"\n", "\t", "\r", "\f"}  # control characters that ordinary text holds


@dataclass(frozen=True)
class TextStats:
    """A text's length in characters and the sha256 (hex) of its UTF-8 encoding."""

    chars: int
    sha256: str


def text_stats(chunks: Iterable[str]) -> TextStats:
    """Length in characters and sha256 of the UTF-8 encoding of a chunked text."""
    h = hashlib.sha256()
    n = 0
    for chunk in chunks:
        n += len(chunk)
        h.update(chunk.encode("utf-8"))
    return TextStats(n, h.hexdigest())


def split_chunks(chunks: Iterable[str], cut: int) -> Iterator[tuple[str, str]]:
    """(part before ``cut``, part from ``cut`` on) for each chunk of a text."""
    pos = 0
    for chunk in chunks:
        end = pos + len(chunk)
        if end <= cut:
            yield chunk, ""
        elif pos >= cut:
            yield "", chunk
        else:
            yield chunk[: cut - pos], chunk[cut - pos :]
        pos = end


def count_chars(chunks: Iterable[str]) -> Counter[str]:
    """How often each character occurs in a chunked text."""
    counter: Counter[str] = Counter()
    for chunk in chunks:
        counter.update(chunk)
    return counter


def at_line_ends(parts: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """Regroup (train, val) chunks so that each ends after a newline where it can, for
    tokenizers whose output depends on where a chunk is cut (words stay whole)."""
    carry = ["", ""]
    for pair in parts:
        out = []
        for j in (0, 1):
            text = carry[j] + pair[j]
            cut = text.rfind("\n") + 1
            if cut == 0 and len(text) < (1 << 22):
                out.append("")
                carry[j] = text
            else:
                cut = cut or len(text)
                out.append(text[:cut])
                carry[j] = text[cut:]
        if carry[0] and pair[1]:  # the training part has ended: flush what it holds
            out[0] += carry[0]
            carry[0] = ""
        yield out[0], out[1]
    yield carry[0], carry[1]


def _is_bad_control(ch: str) -> bool:
    o = ord(ch)
    return (o < 32 or 0x7F <= o < 0xA0) and ch not in _CONTROL_OK


def control_count(counts: Mapping[str, int]) -> int:
    """How many NUL or other control characters (besides newline, tab, CR, FF) were counted."""
    return sum(n for ch, n in counts.items() if _is_bad_control(ch))
