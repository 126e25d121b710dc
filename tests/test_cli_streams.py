"""The command line's guarded standard streams (charrnn/cli/streams.py), on real files: a stdout
that is a full device ends in StdoutError, a stderr that cannot be written is dropped, and
names with bytes that are not UTF-8 are shown as \\xNN (and quoted so that bash reads them
back)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn.cli.streams import Guarded, StdoutError, shell_quote, shown

NOT_UTF8 = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 name as Python sees it: 'caf\udce9.txt'


def test_a_full_stdout_is_one_stdout_error() -> None:
    with open("/dev/full", "w", encoding="utf-8") as full:
        out = Guarded(full, is_stdout=True)
        with pytest.raises(StdoutError) as e:
            out.write("x" * 100_000)  # more than the buffer: the write itself fails
            out.flush()
        assert str(e.value) == "stdout: cannot write (No space left on device)"
        with pytest.raises(StdoutError):
            out.buffer.write(b"x")
            out.buffer.flush()
        full.buffer.raw.close()  # drop what could not be written


def test_a_closed_pipe_stays_a_broken_pipe() -> None:
    r, w = os.pipe()
    os.close(r)
    with open(w, "w", encoding="utf-8") as f:
        out = Guarded(f, is_stdout=True)
        out.write("x")
        with pytest.raises(BrokenPipeError):
            out.flush()
        f.buffer.raw.close()


def test_a_stderr_that_cannot_be_written_is_dropped() -> None:
    with open("/dev/full", "w", encoding="utf-8") as full:
        guarded = Guarded(full, is_stdout=False)
        assert guarded.write("a message nobody can read\n") > 0
        guarded.flush()  # no exception: whatever the command was doing goes on
        full.buffer.raw.close()


def test_everything_else_is_the_stream_s_own(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w", encoding="utf-8") as f:
        g = Guarded(f, is_stdout=True)
        assert g.fileno() == f.fileno() and g.encoding == "utf-8" and not g.isatty()
        g.writelines(["a", NOT_UTF8])
        g.flush()
    assert (tmp_path / "f").read_text(encoding="utf-8") == "acaf\\xe9.txt"
    assert not hasattr(Guarded(io.StringIO(), is_stdout=True), "buffer")


def test_names_that_are_not_utf8_are_shown_as_their_bytes() -> None:
    assert (
        shown(NOT_UTF8)
        == "caf\\xe9.txt"
        == os.fsencode(NOT_UTF8).decode("utf-8", "backslashreplace")
    )
    assert shown("plain café ✓") == "plain café ✓"


@pytest.mark.parametrize("name", [NOT_UTF8, "it's " + NOT_UTF8 + "\\x", "plain name", "a b"])
def test_a_quoted_name_reads_back_in_bash_as_the_same_bytes(name: str) -> None:
    quoted = shell_quote(name)
    quoted.encode("utf-8")  # printable
    r = subprocess.run(
        ["bash", "-c", f"printf %s {quoted}"], capture_output=True, check=True, timeout=30
    )
    assert r.stdout == os.fsencode(name)


def test_the_real_streams_are_guarded_once() -> None:
    code = (
        "import sys; from charrnn.cli import streams; streams.guard_streams(); "
        "streams.guard_streams(); assert isinstance(sys.stdout, streams.Guarded); "
        "assert not isinstance(sys.stdout._stream, streams.Guarded); print('x' * 100000)"
    )
    with open("/dev/full", "w") as full:
        r = subprocess.run(
            [sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True, timeout=60
        )
    assert r.returncode != 0 and "StdoutError: stdout: cannot write" in r.stderr
