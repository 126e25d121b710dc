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


def test_sampled_text_stays_exact_while_notes_are_escaped(hostile_run: Path) -> None:
    """What ``sample`` writes on stdout is the model's text, controls and all (it is the data);
    what it writes about the data on stderr (an unseen character of the prime) is escaped."""
    from typer.testing import CliRunner

    from charrnn.sample.generate import generate
    from charrnn.sample.load import load_for_sampling
    from charrnn.sample.policy import SampleConfig

    from .conftest import raw_controls

    args = ["sample", "-c", str(hostile_run), "--length", "400", "--seed", "3"]
    r = CliRunner().invoke(app, [*args, "--prime", "a\u202e\u2066"])
    assert r.exit_code == 0, r.output
    loaded = load_for_sampling(hostile_run, "cpu")
    cfg = SampleConfig(length=400, seed=3)
    text = "".join(generate(loaded.model, loaded.vocab, "a\u202e\u2066", cfg))
    assert r.stdout.rstrip("\n") == text.rstrip("\n") and raw_controls(r.stdout) != []
    assert "U+2066" in r.stderr and raw_controls(r.stderr) == []


def test_a_separator_between_samples(trained_run: Path) -> None:
    from typer.testing import CliRunner

    base = ["sample", "-c", str(trained_run), "--num-samples", "3", "--length", "30", "--seed", "2"]
    plain = CliRunner().invoke(app, base)
    marked = CliRunner().invoke(app, [*base, "--separator", "\\n%%\\t\\n"])
    assert plain.exit_code == marked.exit_code == 0, marked.output
    samples = plain.stdout.split("\n\n")  # the default: a blank line between samples
    assert len(samples) == 3
    assert marked.stdout.count("\n%%\t\n") == 2
    assert marked.stdout.replace("\n%%\t\n", "\n") == plain.stdout  # in place of the blank line
