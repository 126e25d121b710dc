"""``charrnn eval-perplexity``: score text files (nats/char, bits/char, perplexity)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..protocols import DEFAULT_BURN_IN, DEFAULT_STREAMS
from ..store import checkpoint as ck
from ..text.vocab import show_chars
from .common import (
    MAX_BATCH,
    Number,
    device_option,
    device_param,
    encoding_option,
    errors_option,
    fail,
    format_table,
    out_or_quiet,
    say,
    set_threads,
    threads_param,
)
from .info import reading_target

MAX_BURN_IN = 1 << 30  # more context than any text has; beyond it numbers stop being sizes

if TYPE_CHECKING:
    from ..evaluation import TextScore


EVAL_EPILOG = (
    "Examples:\n\n"
    "  charrnn eval-perplexity held-out.txt\n\n"
    "  charrnn eval-perplexity held-out.txt --exact\n\n"
    "  cat a.txt | charrnn eval-perplexity - --json -c checkpoints/verses-gru"
)


def eval_command(
    files: list[str] = typer.Argument(
        ..., help="Text files to score (- = stdin).", metavar="FILE..."
    ),
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        "-c",
        help="Run or checkpoint folder [default: the newest run].",
        metavar="RUN",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    encoding: str = encoding_option("Text encoding of the files."),
    errors: str = errors_option("On undecodable bytes: strict, replace or ignore."),
    device: str = device_param(),
    threads: int | None = threads_param(),
    exact: bool = typer.Option(
        False, "--exact", help="One stream, state carried through each file (slow on a CPU)."
    ),
    streams: int = typer.Option(
        DEFAULT_STREAMS,
        "--streams",
        parser=Number(int, 1, MAX_BATCH),
        help="Pieces scored side by side (1 = exact).",
        metavar="N",
    ),
    burn_in: int = typer.Option(
        DEFAULT_BURN_IN,
        "--burn-in",
        parser=Number(int, 0, MAX_BURN_IN),
        help="Characters of context read before each piece, unscored.",
        metavar="N",
    ),
) -> None:
    """Score text files: nats/char, bits/char and perplexity.

    By default each file is cut into pieces scored side by side, each piece read from
    --burn-in characters before its start (within a tiny tolerance of the exact figure);
    --exact scores one stream with the state carried through the whole file.
    """
    from ..evaluation import score_text
    from ..text.reading import iter_text

    if files.count("-") > 1:
        raise typer.BadParameter("standard input (-) can be named only once")
    if exact and streams not in (1, DEFAULT_STREAMS):
        raise typer.BadParameter("--exact is one stream: leave out --streams", param_hint="--exact")
    streams = 1 if exact else streams
    set_threads(threads)
    loaded = ck.load_model(reading_target(checkpoint), device_option(device))
    rows: list[dict[str, Any]] = []
    for f in files:
        name = "<stdin>" if f == "-" else f
        scored = score_text(
            loaded.model, loaded.vocab, iter_text(f, encoding, errors), streams, burn_in
        )
        if scored.chars < 2:
            short = f"{name}: {scored.chars} characters; at least 2 are needed to score a text"
            fail(short)
        if scored.unknown:
            say(
                f"charrnn: note: {name} has {scored.unknown} character(s) the model never saw "
                f"({show_chars(scored.unknown_chars)}; scored as <UNK>)"
            )
        protocol = "exact" if streams == 1 else f"{streams} streams, burn-in {burn_in}"
        rows.append(_eval_row(name, scored, protocol))
    if as_json:
        out_or_quiet(json.dumps({"checkpoint": str(loaded.path), "files": rows}, indent=2) + "\n")
        return
    header = ("file", "chars", "unknown", "nats/char", "bits/char", "perplexity", "checkpoint")
    scored_with = f"{loaded.path.parent.name}/{loaded.path.name}"  # run/step: which one was scored
    table = [
        (
            r["file"],
            str(r["chars"]),
            str(r["unknown"]),
            f"{r['nats_per_char']:.4f}",
            f"{r['bits_per_char']:.4f}",
            f"{r['perplexity']:.3f}",
            scored_with,
        )
        for r in rows
    ]
    out_or_quiet(format_table(header, table))


def _eval_row(name: str, scored: TextScore, protocol: str) -> dict[str, Any]:
    """One file's figures, as ``--json`` prints them (per character unless named per token)."""
    s = scored.score
    return {
        "file": name,
        "chars": scored.chars,
        "unknown": scored.unknown,
        "tokens_scored": s.tokens,
        "nats_per_char": s.nats_per_char,
        "bits_per_char": s.bits_per_char,
        "perplexity": s.perplexity,
        "nats_per_token": s.nats_per_token,
        "bits_per_token": s.bits_per_token,
        "protocol": protocol,
    }
