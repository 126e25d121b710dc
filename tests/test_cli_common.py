"""Shared pieces of the command line (charrnn/cli/common.py): durations, sizes and tables for
people, the option parsers' one-line usage errors, the user-error wrapper's exit codes, and
paced output to stdout."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from charrnn.cli import common
from charrnn.cli.common import (
    Choice,
    Number,
    PacedWriter,
    StdoutClosed,
    codec,
    device_spec,
    fail,
    format_duration,
    format_table,
    human_bytes,
    parse_duration,
    user_errors,
)
from charrnn.errors import CharRNNError, CheckpointError, OptionError

# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1h30m", 5400.0),
        ("1.5h", 5400.0), (" 10M ", 600.0), ("2h5m10s", 7510.0), ("0.5", 0.5), ("1M30S", 90.0),
    ],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_milliseconds() -> None:
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("1m500ms") == pytest.approx(60.5)


def test_no_duration_is_none() -> None:
    assert parse_duration(None) is None


@pytest.mark.parametrize("text", ["soon", "10x", "-5", "m", "1h-", "1e3"])
def test_what_is_not_a_duration_says_so(text: str) -> None:
    with pytest.raises(typer.BadParameter, match=f"'{text}' is not a duration like 90s, 10m or 2h"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["", "   ", "0", "0s", "0h0m"])
def test_a_duration_must_be_positive(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="is not a positive duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.0s"), (-3.0, "0.0s"), (5.04, "5.0s"), (59.9, "59.9s"), (60.0, "1m00s"),
        (61.4, "1m01s"), (3599.0, "59m59s"), (3600.0, "1h00m"), (5400.0, "1h30m"),
        (90_000.0, "25h00m"),
    ],
)  # fmt: skip
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "10m", "2h", "1h30m"])
def test_formatted_durations_parse_back(text: str) -> None:
    seconds = parse_duration(text)
    assert seconds is not None and parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (512, "512 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"),
     (5 * 1024**2, "5.0 MB"), (3.2 * 1024**3, "3.2 GB"), (2048 * 1024**3, "2048.0 GB")],
)  # fmt: skip
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


def test_format_table_aligns_left_then_right() -> None:
    table = format_table(("run", "steps", "bpc"), [("a", "5", "2.10"), ("longer", "1200", "1.9")])
    assert table == "run     steps   bpc\na           5  2.10\nlonger   1200   1.9\n"
    two_left = format_table(("a", "b", "c"), [("xx", "yy", "1")], left=2)
    assert two_left.splitlines() == ["a   b   c", "xx  yy  1"]


# ----------------------------------------------------------------------------- option parsers


def test_choice_returns_a_known_value_and_lists_the_choices_otherwise() -> None:
    cell = Choice(("lstm", "gru", "rnn"))
    assert cell("gru") == "gru"
    with pytest.raises(typer.BadParameter, match=r"^'GRU': expected lstm, gru or rnn$"):
        cell("GRU")  # case matters, as in the library
    with pytest.raises(typer.BadParameter, match=r"^'x': expected only$"):
        Choice(["only"])("x")
    assert common.choices(["lstm", "gru"]) == "lstm|gru"


def test_number_parses_integers_and_floats() -> None:
    assert Number(int, 1)("12") == 12 and isinstance(Number(int)(" 12 "), int)
    assert Number(float, 0.0)("2.5") == 2.5
    assert Number(float)(3) == 3  # a default already a number passes through
    with pytest.raises(typer.BadParameter, match=r"^'1\.5' is not an integer$"):
        Number(int)("1.5")
    with pytest.raises(typer.BadParameter, match=r"^'abc' is not a number$"):
        Number(float)("abc")


@pytest.mark.parametrize("value", ["nan", "NaN", math.nan])
def test_nan_is_never_a_value(value: Any) -> None:
    with pytest.raises(typer.BadParameter, match="NaN is not a valid value"):
        Number(float, inf_means="no limit")(value)


def test_infinity_only_where_it_means_something() -> None:
    with pytest.raises(typer.BadParameter, match="inf is not a finite number"):
        Number(float, 0.0)("inf")
    assert Number(float, 0.0, inf_means="no clipping")("inf") == math.inf
    with pytest.raises(typer.BadParameter, match="-inf is not a finite number"):
        Number(float, inf_means="no limit")("-inf")


@pytest.mark.parametrize(
    ("parser", "value", "message"),
    [
        (Number(int, 1, 64), "0", "0 is out of range (1 <= x <= 64)"),
        (Number(int, 1, 64), "65", "65 is out of range (1 <= x <= 64)"),
        (Number(int, 1, 1 << 15), "40000", "40000 is out of range (1 <= x <= 32,768)"),
        (Number(float, 0.0, 1000.0, open_low=True), "0", "0 is out of range (0 < x <= 1000)"),
        (Number(float, 0.0, 0.5), "0.6", "0.6 is out of range (0 <= x <= 0.5)"),
        (Number(float, 0.0, inf_means="no limit"), "-1", "(0 <= x; inf: no limit)"),
    ],
)
def test_out_of_range_names_the_range(parser: Number, value: str, message: str) -> None:
    with pytest.raises(typer.BadParameter) as e:
        parser(value)
    assert message in str(e.value)


def test_the_bounds_themselves_are_accepted() -> None:
    assert Number(int, 1, 64)("1") == 1 and Number(int, 1, 64)("64") == 64
    assert Number(float, 0.0, 0.5)("0") == 0.0
    assert Number(float, 0.0, open_low=True)("1e-9") == 1e-9


def test_describe() -> None:
    assert Number(float).describe() == "any finite value"
    assert Number(int, 0).describe() == "0 <= x"
    assert Number(float, high=2.0).describe() == "x <= 2"


def test_codec_and_device_spec_parsers() -> None:
    assert codec("latin-1") == "latin-1"
    with pytest.raises(typer.BadParameter, match="unknown text encoding 'klingon'"):
        codec("klingon")
    for spec in ("auto", "CPU", "cuda", "cuda:3", " cuda:0 "):
        assert device_spec(spec) == spec  # checked, then passed on as given
    with pytest.raises(typer.BadParameter, match="'tpu': expected auto, cpu, cuda or cuda:N"):
        device_spec("tpu")


# ----------------------------------------------------------------------------- errors and exits


@pytest.mark.parametrize(
    ("error", "code"),
    [(OptionError("--x: bad"), 2), (CharRNNError("bad file"), 1), (CheckpointError("broken"), 1)],
)
def test_user_errors_are_one_line_and_an_exit_code(
    error: CharRNNError, code: int, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.delenv("CHARRNN_DEBUG", raising=False)

    @user_errors
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as e:
        command()
    assert e.value.exit_code == code
    captured = capsys.readouterr()
    assert captured.err == f"charrnn: error: {error}\n" and captured.out == ""


def test_ctrl_c_is_exit_130(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as e:
        command()
    assert e.value.exit_code == 130 and capsys.readouterr().err == "charrnn: interrupted\n"


def test_other_errors_are_not_hidden() -> None:
    @user_errors
    def command() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        command()


def test_user_errors_keeps_the_signature_typer_reads() -> None:
    def command(files: list[str], hidden: int = 3) -> int:
        """Doc."""
        return hidden

    wrapped = user_errors(command)
    assert wrapped.__name__ == "command" and wrapped.__doc__ == "Doc."
    assert wrapped(["a"], hidden=5) == 5


def test_markup_in_messages_is_printed_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as e:
        fail("[bold]not bold[/bold] path/[x]", code=3)
    assert e.value.exit_code == 3
    assert capsys.readouterr().err == "charrnn: error: [bold]not bold[/bold] path/[x]\n"


def test_debug_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    for value, on in (("", False), ("0", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("CHARRNN_DEBUG", value)
        assert common.debug_enabled() is on


# ----------------------------------------------------------------------------- output


class Sink:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, text: str) -> None:
        self.writes.append(text)


def test_paced_writer_sends_the_first_text_at_once_then_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = Sink()
    monkeypatch.setattr(common, "write_out", sink)
    clock = [100.0]
    monkeypatch.setattr(common.time, "monotonic", lambda: clock[0])
    w = PacedWriter(interval=0.5)
    w.write("H")
    assert sink.writes == ["H"]  # the time to the first character matters
    clock[0] += 0.25
    w.write("e")
    w.write("l")
    assert sink.writes == ["H"]
    clock[0] += 0.25
    w.write("l")
    assert sink.writes == ["H", "ell"]
    w.write("o")
    w.flush()
    w.flush()  # nothing left: no empty write
    assert sink.writes == ["H", "ell", "o"]


def test_write_out_writes_utf8_whatever_the_locale(capfd: pytest.CaptureFixture[str]) -> None:
    common.write_out("naïve — 東京\n")
    assert capfd.readouterr().out == "naïve — 東京\n"


def test_a_closed_pipe_makes_output_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    def closed(text: str) -> None:
        raise StdoutClosed()

    silenced: list[bool] = []
    monkeypatch.setattr(common, "write_out", closed)
    monkeypatch.setattr(common, "silence_stdout", lambda: silenced.append(True))
    common.out_or_quiet("text")  # no exception: ``| head`` is not an error
    assert silenced == [True]


def test_set_threads_sets_the_variables_torch_and_numpy_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, "1")  # restored after the test
    before = torch.get_num_threads()
    try:
        common.set_threads(2)
        assert os.environ["OPENBLAS_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "2"
        assert "torch" in sys.modules and torch.get_num_threads() == 2
        common.set_threads(None)  # not given: nothing changes
        assert os.environ["OMP_NUM_THREADS"] == "2"
    finally:
        torch.set_num_threads(before)


def test_live_display_is_off_under_no_color_and_dumb_terminals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(type(common.err), "is_terminal", property(lambda self: True))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert common.live_display()
    monkeypatch.setenv("TERM", "dumb")
    assert not common.live_display()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not common.live_display()


def test_checkpoints_root_and_a_root_without_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CHARRNN_CHECKPOINTS", raising=False)
    assert common.checkpoints_root() == Path("checkpoints")
    monkeypatch.setenv("CHARRNN_CHECKPOINTS", str(tmp_path))
    assert common.checkpoints_root() == tmp_path
    with pytest.raises(CheckpointError, match=r"no trained runs found; .* or pass -c RUN$"):
        common.find_checkpoint(None, how="pass -c RUN")


def test_write_out_to_a_full_device_is_one_stdout_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn.cli.streams import StdoutError

    with open("/dev/full", "w", encoding="utf-8") as full:
        monkeypatch.setattr(sys, "stdout", full)
        with pytest.raises(
            StdoutError, match=r"^stdout: cannot write \(No space left on device\)$"
        ):
            common.write_out("text\n")
        full.buffer.raw.close()  # drop what could not be written


def test_a_stdout_error_is_one_line_exit_1_and_stdout_is_silenced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from charrnn.cli.streams import StdoutError

    silenced: list[bool] = []
    monkeypatch.setattr(common, "silence_stdout", lambda: silenced.append(True))

    @user_errors
    def command() -> None:
        raise StdoutError(OSError(28, "No space left on device"))

    with pytest.raises(typer.Exit) as e:
        command()
    assert e.value.exit_code == 1 and silenced == [True]
    assert capsys.readouterr().err == (
        "charrnn: error: stdout: cannot write (No space left on device)\n"
    )


def test_a_table_lines_up_names_that_are_not_utf8_as_printed() -> None:
    name = os.fsdecode(b"caf\xe9.txt")
    table = format_table(("corpus", "n"), [(name, "1"), ("x", "22")]).splitlines()
    assert table[1] == "caf\\xe9.txt   1"
    assert len({len(line) for line in table}) == 1
