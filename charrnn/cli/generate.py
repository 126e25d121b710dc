"""``charrnn sample`` and ``charrnn eval-perplexity``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from .. import checkpoint as ck
from ..data import DECODE_ERRORS
from ..device import resolve_device
from .common import (
    PacedWriter,
    StdoutClosed,
    check_choice,
    err,
    fail,
    find_checkpoint,
    format_table,
    out_or_quiet,
    set_threads,
    silence_stdout,
    write_out,
)

if TYPE_CHECKING:
    from ..evaluation import TextScore

SAMPLE_EPILOG = (
    "Examples:\n\n"
    "  charrnn sample --temp 0.8 | head -n 20\n\n"
    "  charrnn sample -c checkpoints/verses-gru --prime 'THE ' --length 300 --seed 1\n\n"
    "  charrnn sample --num-samples 5 --stop $'\\n\\n'"
)
EVAL_EPILOG = (
    "Examples:\n\n"
    "  charrnn eval-perplexity held-out.txt\n\n"
    "  charrnn eval-perplexity held-out.txt --exact\n\n"
    "  cat a.txt | charrnn eval-perplexity - --json -c checkpoints/verses-gru"
)


def sample_command(
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Run or checkpoint folder [default: newest run]."
    ),
    temp: float = typer.Option(0.8, "--temp", "-t", min=0.0, help="Temperature; 0 = greedy."),
    length: int = typer.Option(1000, "--length", "-n", min=0, help="Characters to generate."),
    prime: str | None = typer.Option(None, "--prime", "-p", help="Text to start from."),
    prime_file: str | None = typer.Option(
        None, "--prime-file", help="Read the priming text from a file (- = stdin)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for reproducible output."),
    top_k: int | None = typer.Option(None, "--top-k", min=1, help="Sample from the k likeliest."),
    top_p: float | None = typer.Option(
        None, "--top-p", max=1.0, help="Nucleus sampling: keep this much probability (0-1]."
    ),
    num_samples: int = typer.Option(
        1, "--num-samples", min=1, help="Independent samples (computed side by side)."
    ),
    stop: str | None = typer.Option(
        None, "--stop", help="End a sample where this string appears (not printed)."
    ),
    encoding: str = typer.Option(
        "utf-8", "--encoding", help="Text encoding of --prime-file.", show_default=True
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
) -> None:
    """Generate text from a trained model, streamed to stdout."""
    from ..data import read_text
    from ..sampling import SampleConfig, generate, generate_many

    if top_p is not None and top_p <= 0:
        raise typer.BadParameter("must be in (0, 1]", param_hint="--top-p")
    if prime is not None and prime_file is not None:
        raise typer.BadParameter("give --prime or --prime-file, not both")
    set_threads(threads)
    dev = resolve_device(device)
    loaded = ck.load_model(find_checkpoint(checkpoint), dev)
    text = prime or ""
    if prime_file is not None:
        text = read_text(prime_file, encoding)
    unknown = loaded.vocab.count_unknown(text)
    if unknown:
        err.print(
            f"charrnn: note: the prime has {unknown} character(s) the model never saw; "
            "they are read as <UNK>",
            markup=False,
        )
    cfg = SampleConfig(length=length, temperature=temp, top_k=top_k, top_p=top_p, seed=seed)
    last = ""
    try:
        if num_samples == 1:
            out = PacedWriter()
            for piece in generate(loaded.model, loaded.vocab, text, cfg, stop=stop):
                out.write(piece)
                last = piece or last
            if not last.endswith("\n"):
                out.write("\n")
            out.flush()
        else:
            samples = generate_many(loaded.model, loaded.vocab, num_samples, text, cfg, stop)
            for i, s in enumerate(samples):
                write_out(("\n" if i else "") + s + ("" if s.endswith("\n") else "\n"))
    except StdoutClosed:
        silence_stdout()
        raise typer.Exit(0) from None


def eval_command(
    files: list[str] = typer.Argument(..., help="Text files to score (- = stdin)."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", "-c", help="Run or checkpoint folder [default: newest run]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the files."),
    errors: str = typer.Option(
        "strict", "--errors", help="On undecodable bytes: strict, replace or ignore."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads."),
    exact: bool = typer.Option(
        False, "--exact", help="One stream, state carried through each file (slow on a CPU)."
    ),
    streams: int = typer.Option(
        64, "--streams", min=1, help="Pieces scored side by side (1 = exact)."
    ),
    burn_in: int = typer.Option(
        256, "--burn-in", min=0, help="Characters of context read before each piece, unscored."
    ),
) -> None:
    """Score text files: nats/char, bits/char and perplexity.

    By default each file is cut into pieces scored side by side, each piece read from
    --burn-in characters before its start (within a tiny tolerance of the exact figure);
    --exact scores one stream with the state carried through the whole file.
    """
    from ..data import iter_text
    from ..evaluation import score_text

    check_choice(errors, DECODE_ERRORS, "--errors")
    if files.count("-") > 1:
        raise typer.BadParameter("standard input (-) can be named only once")
    streams = 1 if exact else streams
    set_threads(threads)
    loaded = ck.load_model(find_checkpoint(checkpoint), resolve_device(device))
    rows: list[dict[str, Any]] = []
    for f in files:
        name = "<stdin>" if f == "-" else f
        scored = score_text(
            loaded.model, loaded.vocab, iter_text(f, encoding, errors), streams, burn_in
        )
        if scored.chars < 2:
            fail(f"{name}: {scored.chars} characters; at least 2 are needed to score a text")
        if scored.unknown:
            err.print(
                f"charrnn: note: {name} has {scored.unknown} character(s) the model never saw "
                "(scored as <UNK>)",
                markup=False,
            )
        protocol = "exact" if streams == 1 else f"{streams} streams, burn-in {burn_in}"
        rows.append(_eval_row(name, scored, protocol))
    if as_json:
        out_or_quiet(json.dumps({"checkpoint": str(loaded.path), "files": rows}, indent=2) + "\n")
        return
    header = ("file", "chars", "unknown", "nats/char", "bits/char", "perplexity")
    table = [
        (
            r["file"],
            str(r["chars"]),
            str(r["unknown"]),
            f"{r['nats_per_char']:.4f}",
            f"{r['bits_per_char']:.4f}",
            f"{r['perplexity']:.3f}",
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
