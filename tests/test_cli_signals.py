"""Signals on the command line (charrnn/cli/signals.py), sent for real to this process: during
start-up the first ends it (Interrupted, 128 + the signal), while training it asks the run to
stop; SIGTERM and SIGHUP end any command the way Ctrl-C does."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import typer

from charrnn.cli.common import user_errors
from charrnn.cli.signals import STOP_SIGNALS, Interrupted, StopOnSignals, end_on_signals


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode; a loop gives it the chance
    for _ in range(1000):
        pass


def test_sighup_is_one_of_the_signals() -> None:
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_during_start_up_the_first_signal_ends_it_and_later_ones_wait(sig: int) -> None:
    with StopOnSignals() as stop:
        with pytest.raises(Interrupted) as e:
            _send(sig)
        assert e.value.signum == sig and stop.signal == sig
        _send(signal.SIGTERM)  # while the new run folder is removed: ignored
        _send(signal.SIGINT)
    assert stop.signal == sig


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_while_training_a_signal_asks_the_run_to_stop(
    sig: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with StopOnSignals() as stop:
        stop.training = True
        assert not stop.asked()
        _send(sig)
        assert stop.asked() and stop.signal == sig
        _send(signal.SIGHUP)  # a second SIGHUP or SIGTERM: nothing more
        assert stop.signal == sig
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C aborts
            _send(signal.SIGINT)
    assert "stopping after this step and saving a checkpoint" in capsys.readouterr().err
    assert signal.getsignal(sig) is not stop._on_signal  # put back as it was


@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGINT, 130, "charrnn: interrupted\n"),
        (signal.SIGTERM, 143, "charrnn: interrupted (SIGTERM)\n"),
        (signal.SIGHUP, 129, "charrnn: interrupted (SIGHUP)\n"),
    ],
)
def test_any_command_ends_on_a_signal_with_one_line(
    sig: int, code: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    end_on_signals()
    cleaned: list[bool] = []

    @user_errors
    def command() -> None:
        try:
            _send(sig)
            raise AssertionError("the signal did not end the command")
        finally:
            cleaned.append(True)

    with pytest.raises(typer.Exit) as e:
        command()
    assert e.value.exit_code == code and cleaned == [True]
    assert capsys.readouterr().err == line
