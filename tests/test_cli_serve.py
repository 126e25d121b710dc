"""``charrnn serve``: its options, the one-line hint without the extra, the warning on a
non-loopback address without a key."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from charrnn.cli import app


def test_help_lists_the_options() -> None:
    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    for option in ("--host", "--port", "--api-key", "--max-streams", "--threads", "--device"):
        assert option in r.output


def test_without_the_extra_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else real(name, *a)
    )
    r = CliRunner().invoke(app, ["serve"])
    assert r.exit_code == 1
    assert "pip install 'charrnn[serve]'" in r.output and len(r.output.strip().splitlines()) == 1


def test_non_loopback_without_key_warns(monkeypatch: pytest.MonkeyPatch, trained_run: Path) -> None:
    calls: list[Any] = []
    monkeypatch.setattr("charrnn.serve.server.run", lambda *a: calls.append(a))
    monkeypatch.delenv("CHARRNN_API_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", str(trained_run), "--host", "0.0.0.0", "--port", "9"])
    assert r.exit_code == 0, r.output
    assert "without an API key" in r.output and "http://0.0.0.0:9/" in r.output
    assert calls and calls[0][1:] == ("0.0.0.0", 9)
    r = CliRunner().invoke(app, ["serve", str(trained_run), "--port", "70000"])
    assert r.exit_code == 2
