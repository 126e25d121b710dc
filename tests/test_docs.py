"""README.md cannot drift from the CLI: every `charrnn ...` command line in its code blocks
parses with the current options and values (nothing is run)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from charrnn.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDERS = re.compile(r"\[options\]|\[[A-Z-]+|FILE\.\.\.|RUN\.\.\.|KEY\]")


def _command_lines() -> list[str]:
    """Every shell command of README's code blocks that runs charrnn (continuations joined)."""
    lines: list[str] = []
    fence = re.compile(r"^```(\w*)")
    lang: str | None = None  # the language of the open fence, None outside
    pending = ""
    for raw in README.read_text(encoding="utf-8").splitlines():
        m = fence.match(raw)
        if m:
            lang = m.group(1) if lang is None else None
            continue
        if lang in ("", "sh", "bash", "shell"):
            text = raw.rstrip()
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            lines.append(pending + text)
            pending = ""
    return [line for line in lines if re.search(r"(^|[\s|&;(])charrnn\s", line)]


def _invocations(line: str) -> list[list[str]]:
    """The argument lists given to charrnn on a shell line (after pipes, &&, torchrun -m)."""
    tokens = shlex.split(line, comments=True, posix=True)
    out: list[list[str]] = []
    current: list[str] | None = None
    for tok in tokens:
        if tok in ("|", "&&", "||", ";"):
            current = None
        elif current is not None:
            current.append(tok)
        elif tok == "charrnn":
            current = []
            out.append(current)
    # a separator glued to a word (`head` and `|` are separate tokens in shlex only with spaces)
    return [[t for t in inv if not t.startswith(("2>", ">"))] for inv in out]


LINES = [line for line in _command_lines() if not PLACEHOLDERS.search(line)]


def test_readme_has_commands_to_check() -> None:
    assert len(LINES) > 20


@pytest.mark.parametrize("line", LINES)
def test_readme_command_parses(line: str) -> None:
    group: Any = typer.main.get_command(app)
    for args in _invocations(line):
        assert args, f"bare charrnn in {line!r}"
        try:
            if args[0].startswith("-"):
                group.make_context("charrnn", list(args))  # top-level options
                continue
            assert args[0] in group.commands, f"README: no command {args[0]!r} in {line!r}"
            ctx = group.context_class(group, info_name="charrnn")
            group.commands[args[0]].make_context(args[0], list(args[1:]), parent=ctx)
        except (typer.Exit, SystemExit):
            continue  # --help, --show-completion: eager options that end parsing
        except Exception as e:  # a usage error: an option or value the CLI does not take
            pytest.fail(f"README: `charrnn {' '.join(args)}` does not parse: {e}")
