"""``charrnn sample``: generate text from a trained model, streamed to stdout."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import typer

from ..sample.policy import DEFAULT_LENGTH, DEFAULT_TEMPERATURE
from ..text.vocab import show_chars
from .common import (
    MAX_SAMPLES,
    MAX_SEED,
    Number,
    PacedWriter,
    StdoutClosed,
    device_param,
    encoding_option,
    err,
    errors_option,
    say,
    set_threads,
    silence_stdout,
    threads_param,
    write_out,
)
from .info import reading_target

SAMPLE_EPILOG = (
    "Examples:\n\n"
    "  charrnn sample --temp 0.8 | head -n 20\n\n"
    "  charrnn sample -c checkpoints/verses-gru --prime 'THE ' --length 300 --seed 1\n\n"
    "  charrnn sample --num-samples 5 --stop $'\\n\\n'"
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
        DEFAULT_TEMPERATURE,
        "--temp",
        "-t",
        parser=Number(float, 0.0),
        help="Temperature; 0 (or one too small to compute with) = greedy.",
        metavar="T",
    ),
    length: int = typer.Option(
        DEFAULT_LENGTH,
        "--length",
        "-n",
        parser=Number(int, 0),
        help="Characters to generate.",
        metavar="N",
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
    separator: str | None = typer.Option(
        None,
        "--separator",
        help="Printed between --num-samples samples, \\n and \\t read as newline and tab "
        "[a blank line].",
        metavar="TEXT",
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
    from ..sample.generate import generate, generate_many
    from ..sample.load import load_for_sampling
    from ..sample.policy import SampleConfig
    from ..text.reading import read_text

    if prime is not None and prime_file is not None:
        raise typer.BadParameter("give --prime or --prime-file, not both")
    set_threads(threads)
    # NumPy arrays on the CPU (torch never imported), or a torch model: sampling.engine decides.
    loaded = load_for_sampling(reading_target(checkpoint), device)
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
            between = "\n" if separator is None else _unescape(separator)
            for i, s in enumerate(samples):
                write_out((between if i else "") + s + ("" if s.endswith("\n") else "\n"))
    except StdoutClosed:
        silence_stdout()
        raise typer.Exit(0) from None


def _check_stop(stop: str | None, vocab: Any) -> None:
    """A note when the stop string holds characters the model never writes (it cannot match)."""
    unseen = vocab.unknown_chars(stop) if stop else []
    if unseen:
        hint = " (for a newline in bash, write --stop $'\\n')" if "\\n" in (stop or "") else ""
        note = (
            f"charrnn: note: --stop {shlex.quote(stop or '')} holds characters the model never "
            f"writes ({show_chars(unseen)}): it cannot match{hint}"
        )
        say(note)


def _unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` in an option value as newline, tab and backslash (the shell
    passes them as typed); everything else as it is."""
    table = {"n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\([nt\\])", lambda m: table[m.group(1)], text)
