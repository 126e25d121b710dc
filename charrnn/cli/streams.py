"""The command line's standard streams, as :func:`charrnn.cli.main` installs them.

stdout carries data. When it cannot be written (a full disk, ``> /dev/full``, an I/O error) the
command ends with one line, ``charrnn: error: stdout: cannot write (No space left on device)``,
exit 1: every write goes through :class:`Guarded`, which turns the ``OSError`` into
:class:`StdoutError`, whoever writes (``write_out``, Typer's ``--help``, a rich console). A reader
that went away (``| head``) stays a ``BrokenPipeError``, which the commands end on quietly.

stderr carries messages for people. When it cannot be written (the terminal or SSH session
closed: EIO; a closed pipe) the messages are dropped, so that what the command is doing, such
as saving a checkpoint, goes on.

Names the file system gave Python as surrogate escapes (bytes that are not UTF-8, like the
``\\xe9`` of a Latin-1 ``café.txt``) are shown as ``\\xNN`` (:func:`shown`), never a crash.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Any, TextIO, cast

from ..errors import CharRNNError, escaped_char

_SURROGATE = re.compile("[\ud800-\udfff]")


class StdoutError(CharRNNError):
    """stdout cannot be written (other than a closed pipe)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"stdout: cannot write ({error.strerror or error})")


def shown(text: str) -> str:
    """``text`` as it can be printed: each byte of a name that was not UTF-8 (a surrogate
    escape) as ``\\xNN``, what ``os.fsencode(name).decode("utf-8", "backslashreplace")`` shows
    (:func:`charrnn.errors.escaped_char`); everything else as it is."""
    if not _SURROGATE.search(text):
        return text
    return _SURROGATE.sub(lambda m: escaped_char(m.group()), text)


def shell_quote(text: str) -> str:
    """:func:`shlex.quote`, except that a name holding bytes that are not UTF-8 is quoted the
    way bash and zsh read them back as those bytes: ``$'caf\\xe9.txt'``."""
    if not _SURROGATE.search(text):
        return shlex.quote(text)
    return "$'" + shown(text.replace("\\", "\\\\").replace("'", "\\'")) + "'"


class Guarded:
    """A standard stream (or its binary buffer) whose write failures are handled: on stdout
    an ``OSError`` becomes :class:`StdoutError` (``BrokenPipeError`` is left as it is); on
    stderr it is dropped. Text is written :func:`shown`. Everything else is the stream's own."""

    def __init__(self, stream: Any, is_stdout: bool) -> None:
        self._stream = stream
        self._is_stdout = is_stdout
        inner = getattr(stream, "buffer", None)
        self._buffer = None if inner is None else Guarded(inner, is_stdout)

    @property
    def buffer(self) -> Any:
        if self._buffer is None:
            raise AttributeError("buffer")
        return self._buffer

    def write(self, data: Any) -> int:
        if isinstance(data, str):
            data = shown(data)
        try:
            return int(self._stream.write(data) or 0)
        except OSError as e:
            self._failed(e)
            return len(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            self._failed(e)

    def _failed(self, e: OSError) -> None:
        if not self._is_stdout:
            return  # stderr: nobody left to tell
        if isinstance(e, BrokenPipeError):
            raise e
        raise StdoutError(e) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Put :class:`Guarded` in front of ``sys.stdout`` and ``sys.stderr`` (once)."""
    if sys.stdout is not None and not isinstance(sys.stdout, Guarded):
        sys.stdout = cast(TextIO, Guarded(sys.stdout, is_stdout=True))
    if sys.stderr is not None and not isinstance(sys.stderr, Guarded):
        sys.stderr = cast(TextIO, Guarded(sys.stderr, is_stdout=False))
