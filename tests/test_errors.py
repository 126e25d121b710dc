"""charrnn/errors.py: user errors, and the one rendering of text about the data that is safe to
show on a terminal (terminal_text, terminal_json)."""

from __future__ import annotations

import json

import pytest

from charrnn.errors import CharRNNError, CorpusError, OptionError, terminal_json, terminal_text

from .conftest import HOSTILE, raw_controls

# Every kind that must not reach a terminal raw, with how it is shown.
ESCAPES = {
    "\x1b": "\\x1b",  # ESC: escape sequences (colours, cursor moves, clearing the screen)
    "\x07": "\\x07",  # BEL
    "\r": "\\r",  # carriage return: overwrites the line
    "\x7f": "\\x7f",  # DEL
    "\x85": "\\x85",  # NEL, a C1 control
    "\x9b": "\\x9b",  # CSI, the one-byte escape sequence
    "\x0e": "\\x0e",  # shift-out: switches some terminals to another character set
    "\u202e": "\\u202e",  # right-to-left override
    "\u202a": "\\u202a",  # left-to-right embedding
    "\u2066": "\\u2066",  # left-to-right isolate
    "\u2069": "\\u2069",  # pop directional isolate
    "\u200e": "\\u200e",  # left-to-right mark
    "\u200f": "\\u200f",  # right-to-left mark
    "\u061c": "\\u061c",  # Arabic letter mark
    "\u2028": "\\u2028",  # line separator
    "\ufeff": "\\ufeff",  # zero-width no-break space (BOM)
    "\U000e0041": "\\U000e0041",  # a tag character
    "\udce9": "\\xe9",  # a file name's byte that was not UTF-8 (surrogateescape)
}


@pytest.mark.parametrize(("raw", "shown"), ESCAPES.items())
def test_terminal_text_escapes_every_control_and_format_character(raw: str, shown: str) -> None:
    assert terminal_text(f"a{raw}b") == f"a{shown}b"
    assert raw_controls(terminal_text(f"a{raw}b"), allow="") == []


def test_terminal_text_leaves_text_as_it_is_and_is_idempotent() -> None:
    plain = "Ünïcödé 漢字 emoji 👩‍👩‍👧 (ZWJ kept), a\\b, ←→"
    assert terminal_text(plain) == plain
    once = terminal_text(f"x{HOSTILE}\n\ty")
    assert once == "x\\x1b[31m\\x85\\x0e\\u202e\\n\\ty"
    assert terminal_text(once) == once
    assert terminal_text("two\nlines\tand\x1b", keep="\n\t") == "two\nlines\tand\\x1b"


def test_terminal_json_keeps_the_data() -> None:
    data = {"name": f"run{HOSTILE}\U000e0041\udce9", "n": [1, 2]}
    text = terminal_json(
        json.dumps(data, indent=2, ensure_ascii=False).replace("\\udce9", "\udce9")
    )
    assert raw_controls(text) == []
    assert json.loads(text) == data
    assert text.count("\n") == 6  # the layout's newlines stay


def test_error_messages_are_safe_for_a_terminal() -> None:
    for cls in (CharRNNError, CorpusError, OptionError):
        e = cls(f"evil{HOSTILE}.txt: empty file")
        assert str(e) == "evil\\x1b[31m\\x85\\x0e\\u202e.txt: empty file"
        assert e.args == (f"evil{HOSTILE}.txt: empty file",)  # the raw message is kept
    # A message quoting another error's message is not escaped twice.
    inner = CorpusError(f"a{HOSTILE}")
    assert str(CorpusError(f"outer: {inner}")) == f"outer: {inner}"
