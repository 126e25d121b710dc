"""Character vocabulary with a reserved ``<UNK>`` id. Standard library only.

Id 0 is always ``<UNK>``; the characters of the training text follow in code-point order, so the
same text always gives the same vocabulary. A fine-tuned run (``--init-from``) keeps its parent's
ids and appends the characters new to it (:meth:`Vocab.extended`), so code must not assume
code-point order. Characters that were never seen (or were seen fewer than ``min_count`` times)
encode to ``<UNK>``; ``<UNK>`` decodes to U+FFFD.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import terminal_text

UNK = "<UNK>"
UNK_ID = 0
REPLACEMENT_CHAR = "\ufffd"


class Vocab:
    """Maps characters to ids and back."""

    def __init__(self, chars: Sequence[str], counts: Sequence[int] | None = None) -> None:
        for ch in chars:
            if len(ch) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {ch!r}")
            if 0xD800 <= ord(ch) <= 0xDFFF:
                raise ValueError(f"vocabulary cannot hold a lone surrogate ({ord(ch):#x})")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self.chars: list[str] = list(chars)
        self.itos: list[str] = [UNK, *self.chars]
        self.stoi: dict[str, int] = {ch: i + 1 for i, ch in enumerate(self.chars)}
        # counts[i] is how often id i occurred in the training text (UNK included).
        self.counts: list[int] = list(counts) if counts is not None else [0] * len(self.itos)
        if len(self.counts) != len(self.itos):
            raise ValueError("counts must have one entry per id, <UNK> included")

    @classmethod
    def build(cls, text: str | Iterable[str], min_count: int = 1) -> Vocab:
        """Vocabulary of ``text`` (a string or an iterable of string chunks).

        Characters seen fewer than ``min_count`` times are left out and so fold into ``<UNK>``.
        """
        counter: Counter[str] = Counter()
        if isinstance(text, str):
            counter.update(text)
        else:
            for chunk in text:
                counter.update(chunk)
        return cls.from_counts(counter, min_count)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_count: int = 1) -> Vocab:
        """Vocabulary from character counts (see :meth:`build`)."""
        kept = sorted(ch for ch, n in counts.items() if n >= min_count)
        unk_count = sum(n for ch, n in counts.items() if n < min_count)
        return cls(kept, [unk_count, *(counts[ch] for ch in kept)])

    def extended(self, counts: Mapping[str, int], min_count: int = 1) -> Vocab:
        """This vocabulary grown by the characters of ``counts`` (a new training text) that it
        lacks and that occur at least ``min_count`` times, appended in code-point order: every
        old character keeps its id. The counts are those of the new text (0 for old characters
        it does not use); the rarer new characters count as ``<UNK>``."""
        added = sorted(ch for ch, n in counts.items() if n >= min_count and ch not in self.stoi)
        unk = sum(n for ch, n in counts.items() if n < min_count and ch not in self.stoi)
        chars = [*self.chars, *added]
        return Vocab(chars, [unk, *(counts.get(ch, 0) for ch in chars)])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, ch: object) -> bool:
        return ch in self.stoi

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; unknown characters become ``UNK_ID``."""
        get = self.stoi.get
        return [get(ch, UNK_ID) for ch in text]

    def count_unknown(self, text: str) -> int:
        """How many characters of ``text`` would encode to ``<UNK>``."""
        stoi = self.stoi
        return sum(1 for ch in text if ch not in stoi)

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that encode to ``<UNK>``, in order of appearance."""
        stoi = self.stoi
        return [ch for ch in dict.fromkeys(text) if ch not in stoi]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; ``<UNK>`` becomes U+FFFD."""
        itos = self.itos
        return "".join(REPLACEMENT_CHAR if i == UNK_ID else itos[i] for i in ids)

    def unigram_entropy_bits(self) -> float:
        """Entropy of the training text's character distribution, in bits/char."""
        total = sum(self.counts)
        if total == 0:
            return 0.0
        return -sum(n / total * math.log2(n / total) for n in self.counts if n)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "unk": UNK, "chars": self.chars, "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Vocab:
        if d.get("type", "char") != "char":
            raise ValueError(f"unknown vocabulary type {d.get('type')!r}")
        chars = d["chars"]
        if not isinstance(chars, list) or not all(isinstance(c, str) for c in chars):
            raise ValueError("'chars' must be a list of strings")
        counts = d.get("counts")
        return cls(chars, counts)


def show_chars(chars: Sequence[str], limit: int = 5) -> str:
    """Characters for a message: ``'ж', '€', U+0007 and 3 more`` (controls, format characters
    such as U+202E and blanks as code points, so that nothing invisible is shown and nothing
    reaches the terminal raw; a longer piece with its controls escaped, see
    :func:`charrnn.errors.terminal_text`)."""
    shown = [
        f"U+{ord(c):04X}" if len(c) == 1 and (c.isspace() or not c.isprintable()) else f"'{c}'"
        for c in chars
    ]
    shown = [terminal_text(s) for s in shown]
    more = len(shown) - limit
    head = ", ".join(shown[:limit])
    return f"{head} and {more} more" if more > 0 else head
