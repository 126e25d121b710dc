"""Write docs/cli.md, the command reference, from the ``charrnn`` command's own ``--help``.

    python docs/gen_cli.py           # (re)write docs/cli.md
    python docs/gen_cli.py --check   # exit 1 if docs/cli.md is not what the command says now

The commands are enumerated from the Typer app itself (``charrnn.cli.app``), not from a list
kept here, and each command's help is produced through ``typer.testing.CliRunner`` for a
terminal of a fixed width (``COLUMNS`` = 100, within the app's ``max_content_width``), so the file
is the same on every machine and reads as ``COLUMNS=100 charrnn ... --help`` prints it.
``tests/test_docs.py`` fails when docs/cli.md is stale.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from charrnn.cli import app

DOC = Path(__file__).resolve().parent / "cli.md"
PROG = "charrnn"
COLUMNS = 100
# The terminal as the help sees it. Typer's completion options read the shell detection switch.
ENV: dict[str, str | None] = {
    "COLUMNS": str(COLUMNS),
    "LINES": "50",
    "TERM": "dumb",
    "NO_COLOR": "1",
    "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": None,
}
HEADER = """\
# Command reference

Generated from the commands' own `--help` by `python docs/gen_cli.py` (do not edit by hand:
run it again after changing an option; `tests/test_docs.py` fails when this file is stale).
The usage guide, with examples and what the options mean together, is [guide.md](guide.md);
the measured defaults are in [defaults.md](defaults.md).
"""


def commands(group: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path of the app, the app itself first, in the order ``--help`` lists
    them (groups are walked into)."""
    group = typer.main.get_command(app) if group is None else group
    yield path
    subcommands = getattr(group, "commands", None)
    if not subcommands:
        return
    ctx = group.context_class(group, info_name=PROG)
    for name in group.list_commands(ctx):
        yield from commands(subcommands[name], (*path, name))


def width() -> int:
    """The help's width on a terminal of COLUMNS columns, as the command computes it (the
    runner forces 80 columns unless it is told the width)."""
    settings = typer.main.get_command(app).context_settings or {}
    return max(min(COLUMNS, settings.get("max_content_width") or 80) - 2, 50)


def help_text(path: tuple[str, ...]) -> str:
    """``charrnn PATH... --help`` as the command prints it."""
    result = CliRunner().invoke(
        app, [*path, "--help"], prog_name=PROG, env=ENV, terminal_width=width()
    )
    if result.exit_code != 0:
        raise SystemExit(f"{PROG} {' '.join(path)} --help failed:\n{result.output}")
    return "\n".join(line.rstrip() for line in result.output.rstrip().splitlines())


def render() -> str:
    parts = [HEADER]
    for path in commands():
        title = " ".join((PROG, *path))
        parts.append(f"## `{title}`\n\n```text\n{help_text(path)}\n```\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if docs/cli.md is stale (write nothing)"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run python docs/gen_cli.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
