"""``charrnn sample`` and ``charrnn eval-perplexity``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..store import checkpoint as ck
from ..text.vocab import show_chars
from .common import (
    MAX_BATCH,
    MAX_SAMPLES,
    MAX_SEED,
    Number,
    PacedWriter,
    StdoutClosed,
    device_option,
    device_param,
    encoding_option,
    err,
    errors_option,
    fail,
    find_checkpoint,
    format_table,
    out_or_quiet,
    set_threads,
    silence_stdout,
    threads_param,
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
        None,
        "--checkpoint",
        "-c",
        help="Run or checkpoint folder [default: the newest run].",
        metavar="RUN",
    ),
    temp: float = typer.Option(
        0.8,
        "--temp",
        "-t",
        parser=Number(float, 0.0),
        help="Temperature; 0 (or one too small to compute with) = greedy.",
        metavar="T",
    ),
    length: int = typer.Option(
        1000, "--length", "-n", parser=Number(int, 0), help="Characters to generate.", metavar="N"
    ),
    prime: str | None = typer.Option(
        None, "--prime", "-p", help="Text to start from.", metavar="TEXT"
    ),
    prime_file: str | None = typer.Option(
        None, "--prime-file", help="Read the priming text from a file (- = stdin).", metavar="FILE"
    ),
    seed: int | None = typer.Option(
        None,
        "--seed",
        parser=Number(int, 0, MAX_SEED),
        help="Random seed for reproducible output.",
        metavar="N",
    ),
    top_k: int | None = typer.Option(
        None, "--top-k", parser=Number(int, 1), help="Sample from the k likeliest.", metavar="K"
    ),
    top_p: float | None = typer.Option(
        None,
        "--top-p",
        parser=Number(float, 0.0, 1.0, open_low=True),
        help="Nucleus sampling: keep this much probability (0-1].",
        metavar="P",
    ),
    num_samples: int = typer.Option(
        1,
        "--num-samples",
        parser=Number(int, 1, MAX_SAMPLES),
        help="Independent samples (computed side by side).",
        metavar="N",
    ),
    stop: str | None = typer.Option(
        None,
        "--stop",
        help="End a sample where this string appears (not printed).",
        metavar="TEXT",
    ),
    encoding: str = encoding_option("Text encoding of --prime-file."),
    errors: str = errors_option("On undecodable bytes in --prime-file: strict, replace or ignore."),
    device: str = device_param(),
    threads: int | None = threads_param(),
) -> None:
    """Generate text from a trained model, streamed to stdout."""
    from ..sample.generate import SampleConfig, generate, generate_many
    from ..text.reading import read_text

    if prime is not None and prime_file is not None:
        raise typer.BadParameter("give --prime or --prime-file, not both")
    set_threads(threads)
    # NumPy arrays on the CPU (torch never imported), or a torch model: sampling.engine decides.
    loaded = ck.load_for_sampling(find_checkpoint(checkpoint), device)
    text = prime or ""
    if prime_file is not None:
        text = read_text(prime_file, encoding, errors)
    unknown = loaded.vocab.count_unknown(text)
    if unknown:
        err.print(
            f"charrnn: note: the prime has {unknown} character(s) the model never saw "
            f"({show_chars(loaded.vocab.unknown_chars(text))}); they are read as <UNK>",
            markup=False,
        )
    _check_stop(stop, loaded.vocab)
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


def _check_stop(stop: str | None, vocab: Any) -> None:
    """A note when the stop string holds characters the model never writes (it cannot match)."""
    unseen = vocab.unknown_chars(stop) if stop else []
    if unseen:
        hint = " (for a newline in bash, write --stop $'\\n')" if "\\n" in (stop or "") else ""
        err.print(
            f"charrnn: note: --stop {shlex.quote(stop or '')} holds characters the model never "
            f"writes ({show_chars(unseen)}): it cannot match{hint}",
            markup=False,
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
        64,
        "--streams",
        parser=Number(int, 1, MAX_BATCH),
        help="Pieces scored side by side (1 = exact).",
        metavar="N",
    ),
    burn_in: int = typer.Option(
        256,
        "--burn-in",
        parser=Number(int, 0),
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
    if exact and streams not in (1, 64):
        raise typer.BadParameter("--exact is one stream: leave out --streams", param_hint="--exact")
    streams = 1 if exact else streams
    set_threads(threads)
    loaded = ck.load_model(find_checkpoint(checkpoint), device_option(device))
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
                f"({show_chars(scored.unknown_chars)}; scored as <UNK>)",
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
