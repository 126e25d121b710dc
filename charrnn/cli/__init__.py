"""The ``charrnn`` command: parse options, call the library, render on stderr.

Generated text and machine-readable results go to stdout; progress, notices and errors go to
stderr. Exit codes: 0 success, 1 a runtime error the user can fix (one line, no traceback),
2 a usage error, 130 interrupted (143 for SIGTERM during training).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup

from .common import user_errors
from .eval import EVAL_EPILOG, eval_command
from .info import INFO_EPILOG, info_command
from .plot import PLOT_EPILOG, plot_command
from .runs import RUNS_EPILOG, runs_command
from .sample import SAMPLE_EPILOG, sample_command
from .train import TRAIN_EPILOG, train_command


class _Commands(TyperGroup):
    """The app's commands, with their arguments shown the Unix way in ``--help`` (``FILE...``,
    ``[DIR]``) instead of Typer's Python type labels (``FILE... <list[str]>``, ``{RUN...}...``)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in command.params if command is not None else ():
            if isinstance(param, TyperArgument):
                _show_plainly(param)
        return command


def _show_plainly(arg: TyperArgument) -> None:
    """Typer's argument display hooks, answered per argument (its metavar as given)."""
    shown = str(arg.metavar or str(arg.name).upper())
    usage = shown if arg.required else f"[{shown}]"
    hooks: Any = arg  # instance attributes that shadow the class's methods
    hooks.display_type_rich = lambda ctx: None
    hooks._rich_display_name = lambda: shown
    hooks._usage_display_name = lambda: usage


app = typer.Typer(
    name="charrnn",
    cls=_Commands,
    help="Train character-level RNN language models on any UTF-8 text and generate text.",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help is plain text: rich markup would swallow bracketed text such as "[default: gru]".
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    epilog=(
        "Examples:\n\n"
        "  charrnn train corpora/verses.txt && charrnn sample | head\n\n"
        "  charrnn runs --sort bpc\n\n"
        "Shell completion: charrnn --install-completion, or --show-completion to print the\n"
        "script of the shell it is typed in."
    ),
)


app.command("train", epilog=TRAIN_EPILOG)(user_errors(train_command))
app.command("sample", epilog=SAMPLE_EPILOG)(user_errors(sample_command))
app.command("eval-perplexity", epilog=EVAL_EPILOG)(user_errors(eval_command))
app.command("runs", epilog=RUNS_EPILOG)(user_errors(runs_command))
app.command("info", epilog=INFO_EPILOG)(user_errors(info_command))
app.command("plot", epilog=PLOT_EPILOG)(user_errors(plot_command))


# ------------------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. ``--debug`` anywhere shows tracebacks of user errors."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ["CHARRNN_DEBUG"] = "1"
    try:
        app(args=args, prog_name="charrnn")
    finally:
        # A Ctrl-C while the interpreter shuts down (atexit callbacks, thread joins) would print
        # "Exception ignored in atexit callback" with a traceback: end at once instead.
        signal.signal(signal.SIGINT, _exit_interrupted)


def _exit_interrupted(signum: int, frame: object) -> None:
    os._exit(130)


__all__ = ["app", "main"]
