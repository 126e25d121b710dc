"""Signals on the command line (charrnn/cli/signals.py), sent for real: during start-up the
first ends the process at once after its clean-up (one line, 128 + the signal), while training it
asks the run to stop; outside it any command ends at once with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from charrnn.cli.signals import STOP_SIGNALS, StopOnSignals, exit_line

LINES = {
    signal.SIGINT: "charrnn: interrupted",
    signal.SIGTERM: "charrnn: interrupted (SIGTERM)",
    signal.SIGHUP: "charrnn: interrupted (SIGHUP)",
}


@pytest.fixture(autouse=True)
def _restore_handlers() -> Iterator[None]:
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    yield
    for s, h in old.items():
        signal.signal(s, h)


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs at the next bytecode


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_signals_and_their_lines() -> None:
    assert set(STOP_SIGNALS) == {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    assert {s: exit_line(s) for s in STOP_SIGNALS} == LINES


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_during_start_up_a_signal_cleans_up_then_ends_the_process(tmp_path: Path, sig: int) -> None:
    """The clean-up runs whole (a second signal during it waits), then one line, 128 + sig."""
    code = f"""
import os, signal, time
from charrnn.cli.signals import StopOnSignals
def clean_up():
    os.kill(os.getpid(), signal.SIGTERM)  # a second signal, while cleaning up
    time.sleep(0.1)
    open("cleaned", "w").close()
with StopOnSignals(clean_up=clean_up):
    os.kill(os.getpid(), {int(sig)})
    for _ in range(100):
        time.sleep(0.05)
print("not ended")
"""
    r = _python(code, tmp_path)
    assert (r.returncode, r.stderr, r.stdout) == (128 + sig, LINES[sig] + "\n", "")
    assert (tmp_path / "cleaned").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_while_training_a_signal_asks_the_run_to_stop(
    sig: int, capsys: pytest.CaptureFixture[str]
) -> None:
    with StopOnSignals(clean_up=lambda: pytest.fail("training: nothing to clean up")) as stop:
        stop.training = True
        assert not stop.asked()
        _send(sig)
        assert stop.asked() and stop.signal == sig
        _send(signal.SIGHUP)  # a second SIGHUP or SIGTERM: nothing more
        _send(signal.SIGTERM)
        assert stop.signal == sig
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C aborts
            _send(signal.SIGINT)
    assert "stopping after this step and saving a checkpoint" in capsys.readouterr().err
    assert signal.getsignal(sig) is not stop._on_signal  # put back as it was


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_any_command_ends_at_once_with_one_line(tmp_path: Path, sig: int) -> None:
    code = f"""
import os, time
from charrnn.cli.signals import end_on_signals
end_on_signals()
os.kill(os.getpid(), {int(sig)})
time.sleep(5)
print("not ended")
"""
    r = _python(code, tmp_path)
    assert (r.returncode, r.stderr, r.stdout) == (128 + sig, LINES[sig] + "\n", "")


def test_a_closed_stderr_does_not_keep_it_from_ending(tmp_path: Path) -> None:
    code = """
import os, signal, time
from charrnn.cli.signals import end_on_signals
end_on_signals()
os.close(2)
os.kill(os.getpid(), signal.SIGHUP)
time.sleep(5)
"""
    assert _python(code, tmp_path).returncode == 129
