from __future__ import annotations

import math

import pytest

from charrnn.text.vocab import REPLACEMENT_CHAR, UNK, UNK_ID, Vocab, show_chars


def test_round_trip_and_deterministic_order() -> None:
    text = "hello, wörld! 你好 🙂\nnaïve e\u0301"
    v = Vocab.build(text)
    assert v.itos[UNK_ID] == UNK
    assert v.chars == sorted(set(text))
    assert v.decode(v.encode(text)) == text
    assert Vocab.build(text[::-1]).chars == v.chars


def test_unseen_characters_encode_to_unk() -> None:
    v = Vocab.build("abc")
    ids = v.encode("abxc")
    assert ids == [v.stoi["a"], v.stoi["b"], UNK_ID, v.stoi["c"]]
    assert v.count_unknown("abxcyz") == 3
    assert v.decode(ids) == "ab" + REPLACEMENT_CHAR + "c"


def test_min_count_folds_rare_characters_into_unk() -> None:
    v = Vocab.build("aaab bbc", min_count=2)
    assert v.chars == ["a", "b"]
    assert v.encode("c ") == [UNK_ID, UNK_ID]
    assert v.counts[UNK_ID] == 2  # the space and the c


def test_dict_round_trip() -> None:
    v = Vocab.build("the quick brown fox")
    w = Vocab.from_dict(v.to_dict())
    assert w.itos == v.itos and w.counts == v.counts


def test_rejects_lone_surrogates_and_duplicates() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        Vocab(["a", "\ud800"])
    with pytest.raises(ValueError, match="distinct"):
        Vocab(["a", "a"])


def test_unigram_entropy() -> None:
    v = Vocab.build("abab")
    assert math.isclose(v.unigram_entropy_bits(), 1.0)


def test_show_chars_shows_no_control_or_format_character_raw() -> None:
    from .conftest import raw_controls

    chars = ["\x1b", "\x85", "\x0e", "\u202e", "\u2066", "\u200f", "\u061c", "\x7f", "ж"]
    shown = show_chars(chars, limit=20)
    assert raw_controls(shown) == []
    assert shown == ("U+001B, U+0085, U+000E, U+202E, U+2066, U+200F, U+061C, U+007F, 'ж'")
    # A subword piece of several characters: its controls escaped.
    assert show_chars(["a\x1b[2Jb", "\u202eevil"]) == "'a\\x1b[2Jb', '\\u202eevil'"
