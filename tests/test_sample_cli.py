"""``charrnn sample`` and ``charrnn eval-perplexity`` take their defaults from the library."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import typer

from charrnn import evaluation
from charrnn.cli import app
from charrnn.cli import eval as eval_cli
from charrnn.sample import policy

ROOT = Path(__file__).resolve().parent.parent


def _defaults(command: str) -> dict[str, object]:
    params = typer.main.get_command(app).commands[command].params  # type: ignore[attr-defined]
    return {p.name: p.default for p in params}


def test_sample_defaults_are_the_policy_s() -> None:
    d = _defaults("sample")
    assert d["length"] == policy.DEFAULT_LENGTH and d["temp"] == policy.DEFAULT_TEMPERATURE


def test_eval_defaults_are_the_evaluation_s() -> None:
    """The command repeats evaluation's constants (evaluation imports torch); they agree."""
    assert eval_cli.DEFAULT_STREAMS == evaluation.DEFAULT_STREAMS
    assert eval_cli.DEFAULT_BURN_IN == evaluation.DEFAULT_BURN_IN
    d = _defaults("eval-perplexity")
    assert d["streams"] == evaluation.DEFAULT_STREAMS and d["burn_in"] == evaluation.DEFAULT_BURN_IN
    score = inspect.signature(evaluation.score_text).parameters
    assert score["streams"].default == evaluation.DEFAULT_STREAMS
    assert score["burn_in"].default == evaluation.DEFAULT_BURN_IN


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
