"""The ``charrnn`` command: parse options, call the library, render on stderr.

Generated text and machine-readable results go to stdout; progress, notices and errors go to
stderr. Exit codes: 0 success, 1 a runtime error the user can fix (one line, no traceback),
2 a usage error, 128 + the signal when interrupted: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup

from .common import Choice, err, silence_stdout, user_errors
from .eval import EVAL_EPILOG, eval_command
from .info import INFO_EPILOG, info_command
from .plot import PLOT_EPILOG, plot_command
from .runs import RUNS_EPILOG, runs_command
from .sample import SAMPLE_EPILOG, sample_command
from .serve import SERVE_EPILOG, serve_command
from .signals import end_on_signals
from .streams import StdoutError, guard_streams
from .train import TRAIN_EPILOG, train_command


class _Commands(TyperGroup):
    """The app's commands, with their arguments shown the Unix way in ``--help`` (``FILE...``,
    ``[DIR]``) instead of Typer's Python type labels (``FILE... <list[str]>``, ``{RUN...}...``)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in command.params if command is not None else ():
            if isinstance(param, TyperArgument):
                _show_plainly(param)
            _complete_choices(param)
        return command


def _show_plainly(arg: TyperArgument) -> None:
    """Typer's argument display hooks, answered per argument (its metavar as given)."""
    shown = str(arg.metavar or str(arg.name).upper())
    usage = shown if arg.required else f"[{shown}]"
    hooks: Any = arg  # instance attributes that shadow the class's methods
    hooks.display_type_rich = lambda ctx: None
    hooks._rich_display_name = lambda: shown
    hooks._usage_display_name = lambda: usage


def _complete_choices(param: Any) -> None:
    """Shell completion of an option's values where its parser is a :class:`Choice`
    (``charrnn train --cell <TAB>``: gru lstm rnn)."""
    parser = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
    choice = getattr(parser, "parser", None)
    if isinstance(choice, Choice) and param._custom_shell_complete is None:
        values = choice.values
        param._custom_shell_complete = lambda ctx, p, text: [
            v for v in values if v.startswith(text)
        ]


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
app.command("serve", epilog=SERVE_EPILOG)(user_errors(serve_command))


# ------------------------------------------------------------------------------ entry point


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. ``--debug`` anywhere shows tracebacks of user errors.

    stdout and stderr are guarded (:mod:`.streams`): a stdout that cannot be written, even by
    Typer's ``--help`` or the last flush, ends in one line and exit 1. Ctrl-C, SIGTERM and
    SIGHUP end a command with one line and exit 128 + the signal (:mod:`.signals`)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        os.environ["CHARRNN_DEBUG"] = "1"
    guard_streams()
    end_on_signals()
    try:
        try:
            app(args=args, prog_name="charrnn")
        finally:
            sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's exit
    except StdoutError as e:
        silence_stdout()
        err.print(f"charrnn: error: {e}", markup=False)
        raise SystemExit(1) from None
    finally:
        # A Ctrl-C (or SIGTERM, SIGHUP) while the interpreter shuts down (atexit callbacks,
        # thread joins) would print "Exception ignored in atexit callback" with a traceback: end
        # at once instead.
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _exit_interrupted)


def _exit_interrupted(signum: int, frame: object) -> None:
    os._exit(128 + signum)


__all__ = ["app", "main"]
