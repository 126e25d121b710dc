"""``charrnn runs``: the training runs in a folder, as a table or as JSON.

The table and the JSON are data, so they go to stdout; notes go to stderr.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import terminal_json
from ..store import catalog
from ..store.atomic import json_text
from .common import (
    Choice,
    checkpoints_root,
    choices,
    format_table,
    human_bytes,
    out_or_quiet,
    say,
)

RUNS_EPILOG = (
    "Examples:\n\n"
    "  charrnn runs\n\n"
    "  charrnn runs experiments/ --sort bpc\n\n"
    "  charrnn runs --json | jq '.[0].best_val_bits_per_char'"
)


def runs_command(
    folder: Path | None = typer.Argument(
        None,
        help="Folder of runs, or one run [default: $CHARRNN_CHECKPOINTS or ./checkpoints].",
        metavar="DIR",
    ),
    sort: str = typer.Option(
        "when",
        "--sort",
        "-s",
        parser=Choice(catalog.SORT_KEYS),
        help="name, when (newest first), bpc, params or steps.",
        metavar=choices(catalog.SORT_KEYS),
    ),
    reverse: bool = typer.Option(False, "--reverse", "-r", help="Reverse the order."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List training runs: corpus, model, steps, best validation bits/char, age, size."""
    root = folder if folder is not None else checkpoints_root()
    runs, problems = catalog.list_runs(root)
    for p in problems:
        say(f"charrnn: note: skipped {p}")
    for r in runs:
        if r.damaged:
            say(f"charrnn: note: {r.name} is damaged: {r.damaged}")
    runs = catalog.sort_runs(runs, sort, reverse)
    if as_json:
        out_or_quiet(terminal_json(json_text([r.to_dict() for r in runs], indent=2)) + "\n")
        return
    if not runs:
        say(f"no runs in {root}; train one with `charrnn train FILE`")
        return
    out_or_quiet(runs_table(runs))


def runs_table(runs: list[catalog.RunSummary]) -> str:
    """The table of ``charrnn runs``: one row per run, a ``from`` column only when some run
    was fine-tuned. Names come from the data (a corpus named with an escape sequence): each
    cell is escaped by :func:`.common.format_table`."""
    header: tuple[str, ...] = ("name", "corpus", "tok", "cell", "layers x hidden", "params")
    header += ("steps", "best bpc", "when", "size")
    fine_tuned = any(r.init_from for r in runs)
    header += ("from",) if fine_tuned else ()
    rows: list[tuple[str, ...]] = []
    for r in runs:
        bpc = r.best_val_bits_per_char
        row = (
            r.name + (" (damaged)" if r.damaged else ""),
            r.corpus,
            r.tokenizer,
            r.cell,
            f"{r.layers}x{r.hidden}",
            f"{r.parameters:,}",
            str(r.steps),
            "-" if bpc is None else f"{bpc:.3f}",
            catalog.local_time(r.modified),
            human_bytes(r.size_bytes),
        ) + ((catalog.origin_text(r.init_from),) if fine_tuned else ())
        rows.append(row)
    return format_table(header, rows, left=4)
