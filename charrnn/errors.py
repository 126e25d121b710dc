"""Errors meant for the user: the CLI prints their message on one line and exits 1.

A message often quotes the data (a file's name, a character of it), which may hold characters
that drive a terminal: an escape sequence, a carriage return, a bidirectional override that
shows the line in another order. :func:`terminal_text` writes those as visible escapes; every
message of these errors goes through it (``str(error)``), as does everything else charrnn shows
about the data (``info``, ``runs``, the training previews and notices). Standard library only.
"""

from __future__ import annotations

import unicodedata

# Categories whose characters are invisible controls or formatting: C0, DEL, C1 (Cc), the bidi
# marks, embeddings, overrides and isolates and other format characters (Cf), lone surrogates
# (Cs: the bytes of a file name that were not UTF-8), line and paragraph separators (Zl, Zp).
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ and ZWJ shape letters and emoji; they move nothing
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def unsafe_char(ch: str) -> bool:
    """Whether ``ch`` (one character) must not reach a terminal raw (see :func:`terminal_text`)."""
    return unicodedata.category(ch) in _UNSAFE and ch not in _JOINERS


def escaped_char(ch: str) -> str:
    """A visible escape for ``ch``: ``\\n``, ``\\x1b``, ``\\u202e``, ``\\U000e0001``; a surrogate
    that stands for a byte that was not UTF-8 (Python's ``surrogateescape``) as that byte,
    ``\\xff``."""
    if ch in _NAMED:
        return _NAMED[ch]
    n = ord(ch)
    if 0xDC80 <= n <= 0xDCFF:
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def terminal_text(text: str, keep: str = "") -> str:
    """``text`` safe to show on a terminal: every control or format character that could move
    the cursor, change colours, end the line or reorder it (C0 controls, DEL, C1 controls such
    as U+0085, bidirectional controls such as U+202E, other Unicode Cc/Cf characters, line and
    paragraph separators, lone surrogates) written as a visible escape (:func:`escaped_char`).
    Characters in ``keep`` (e.g. ``"\\n\\t"`` for text shown over several lines) stay as they
    are. Backslashes are not doubled, so the function is idempotent: a message built from
    messages it already made safe comes out the same."""
    if text.isprintable():
        return text  # the common case, at C speed (printable text holds none of them)
    return "".join(escaped_char(c) if unsafe_char(c) and c not in keep else c for c in text)


def terminal_json(text: str) -> str:
    """JSON text safe to show on a terminal: each character :func:`terminal_text` would escape
    (inside the strings, where ``json.dumps(..., ensure_ascii=False)`` leaves them raw) written
    as a JSON escape instead, ``\\u202e``, so the JSON still decodes to the same data. The
    newlines of the layout (``indent=``) are kept."""
    out = []
    for c in text:
        if c == "\n" or not unsafe_char(c):
            out.append(c)
        elif ord(c) < 0x10000:
            out.append(f"\\u{ord(c):04x}")
        else:
            n = ord(c) - 0x10000
            out.append(f"\\u{0xD800 + (n >> 10):04x}\\u{0xDC00 + (n & 0x3FF):04x}")
    return "".join(out)


class CharRNNError(Exception):
    """Base class: something the user can fix (bad file, bad checkpoint, bad option). Its
    message, as ``str()`` gives it, is safe for a terminal (:func:`terminal_text`)."""

    def __str__(self) -> str:
        return terminal_text(super().__str__())


class CorpusError(CharRNNError):
    """A text file could not be read or is unusable for training or evaluation."""


class CheckpointError(CharRNNError):
    """A checkpoint is missing, incomplete, corrupted or from an unknown format."""


class TrainingError(CharRNNError):
    """Training cannot go on (diverged, corpus too small for the requested run, ...)."""


class OptionError(CharRNNError):
    """Options that do not go together, or a value the library refuses: a usage error (the CLI
    exits 2, as for any bad option value)."""
