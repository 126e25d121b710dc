"""The docs cannot drift from the CLI: every `charrnn ...` command line in the code blocks of
README.md and docs/*.md parses with the current options and values (nothing is run), and
docs/cli.md is what `python docs/gen_cli.py` writes from the commands' own --help."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer

from charrnn.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDERS = re.compile(r"\[options\]|\[[A-Z-]+|FILE\.\.\.|RUN\.\.\.|KEY\]")


def _command_lines(path: Path) -> list[tuple[int, str]]:
    """Every shell command of the file's code blocks that runs charrnn (continuations joined),
    with the line number it starts on."""
    lines: list[tuple[int, str]] = []
    fence = re.compile(r"^```(\w*)")
    lang: str | None = None  # the language of the open fence, None outside
    pending, start = "", 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = fence.match(raw)
        if m:
            lang = m.group(1) if lang is None else None
            continue
        if lang in ("", "sh", "bash", "shell"):
            text = raw.rstrip()
            start = start or n
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            lines.append((start, pending + text))
            pending, start = "", 0
    return [(n, line) for n, line in lines if re.search(r"(^|[\s|&;(])charrnn\s", line)]


def _invocations(line: str) -> list[list[str]]:
    """The argument lists given to charrnn on a shell line (after pipes, &&, torchrun -m)."""
    tokens = shlex.split(line, comments=True, posix=True)
    out: list[list[str]] = []
    current: list[str] | None = None
    for tok in tokens:
        if tok in ("|", "&&", "||", ";", "&"):
            current = None
        elif current is not None:
            current.append(tok)
        elif tok == "charrnn":
            current = []
            out.append(current)
    # a separator glued to a word (`head` and `|` are separate tokens in shlex only with spaces)
    return [[t for t in inv if not t.startswith(("2>", ">"))] for inv in out]


def _problem(args: list[str]) -> str | None:
    """Why ``charrnn ARGS`` does not parse (None: it does)."""
    group: Any = typer.main.get_command(app)
    if not args:
        return "bare charrnn"
    try:
        if args[0].startswith("-"):
            group.make_context("charrnn", list(args))  # top-level options
            return None
        if args[0] not in group.commands:
            return f"no command {args[0]!r}"
        ctx = group.context_class(group, info_name="charrnn")
        group.commands[args[0]].make_context(args[0], list(args[1:]), parent=ctx)
    except (typer.Exit, SystemExit):
        return None  # --help, --show-completion: eager options that end parsing
    except Exception as e:  # a usage error: an option or value the CLI does not take
        return f"does not parse: {e}"
    return None


CASES = [
    pytest.param(path, line, id=f"{path.relative_to(ROOT)}:{n}")
    for path in DOCS
    for n, line in _command_lines(path)
    if not PLACEHOLDERS.search(line)
]


def test_the_docs_have_commands_to_check() -> None:
    assert len([c for c in CASES if c.values[0] == README]) >= 10
    assert len(CASES) > 40
    assert {p.name for p in DOCS} >= {"README.md", "cli.md", "guide.md", "defaults.md"}


@pytest.mark.parametrize(("path", "line"), CASES)
def test_doc_command_parses(path: Path, line: str) -> None:
    for args in _invocations(line):
        problem = _problem(args)
        if problem:
            pytest.fail(f"{path.relative_to(ROOT)}: `charrnn {shlex.join(args)}`: {problem}")


@pytest.mark.parametrize(
    "line",
    [
        "charrnn train corpora/verses.txt --no-such-option 3",
        "charrnn sample --temp hot",
        "charrnn runs --sort nonsense",
        "charrnn no-such-command",
        "cat x | charrnn eval-perplexity - --exact --streams",
    ],
)
def test_the_check_refuses_what_the_cli_refuses(line: str) -> None:
    assert any(_problem(args) for args in _invocations(line))


def test_placeholder_lines_are_the_only_ones_left_out() -> None:
    left_out = [
        line for path in DOCS for _, line in _command_lines(path) if PLACEHOLDERS.search(line)
    ]
    assert all(re.search(r"[A-Z]{3}|\[options\]", line) for line in left_out), left_out


# ----------------------------------------------------------------------------- docs/cli.md


def _gen_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_from_the_current_help() -> None:
    gen = _gen_cli()
    current = gen.DOC.read_text(encoding="utf-8") if gen.DOC.exists() else ""
    assert current == gen.render(), "docs/cli.md is stale: run python docs/gen_cli.py"


def test_cli_reference_lists_every_command() -> None:
    gen = _gen_cli()
    group: Any = typer.main.get_command(app)
    names = list(group.commands)
    assert [p for p in gen.commands() if p] == [(name,) for name in names]
    text = gen.render()
    for name in names:
        assert f"## `charrnn {name}`" in text and f"Usage: charrnn {name} " in text
