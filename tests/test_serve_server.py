"""Stopping the server: SIGTERM ends the open streams with a final event and exits 0 within a
couple of seconds; Ctrl-C (SIGINT) exits 130."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from .serve_helpers import serve


@pytest.mark.slow
def test_sigterm_ends_streams_and_exits_0(trained_run: Path) -> None:
    with serve(trained_run) as s:
        lines: list[str] = []

        def stream() -> None:
            body = {"prompt": "a", "max_tokens": 100_000, "stream": True}
            with httpx.stream(
                "POST", s.url + "/v1/completions", json=body, headers=s.headers(), timeout=30
            ) as r:
                lines.extend(r.iter_lines())

        t = threading.Thread(target=stream)
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert s.proc.wait(10) == 0
        assert time.monotonic() - t0 < 3
        t.join(10)
        events = [x for x in lines if x.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        assert '"finish_reason": "length"' in events[-2]


@pytest.mark.slow
def test_ctrl_c_exits_130(trained_run: Path) -> None:
    with serve(trained_run, key=None) as s:
        s.proc.send_signal(signal.SIGINT)
        assert s.proc.wait(10) == 130
        assert "interrupted" in s.proc.communicate()[1]
