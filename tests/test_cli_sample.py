"""``charrnn sample``: its defaults are the sampling policy's; the command line starts light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer

from charrnn.cli import app
from charrnn.sample import policy

ROOT = Path(__file__).resolve().parent.parent


def _defaults(command: str) -> dict[str, object]:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {p.name: p.default for p in params}


def test_sample_defaults_are_the_policy_s() -> None:
    d = _defaults("sample")
    assert d["length"] == policy.DEFAULT_LENGTH and d["temp"] == policy.DEFAULT_TEMPERATURE


def test_the_command_line_starts_without_numpy() -> None:
    for args in (["--help"], ["sample", "--help"], ["eval-perplexity", "--help"]):
        code = (
            "import sys; from charrnn.cli import app; sys.argv = ['charrnn', *sys.argv[1:]]\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch')))"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().endswith("[]"), (args, r.stdout[-300:])
