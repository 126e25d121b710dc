"""What the corpus generators in this folder share: growing a text unit by unit, and the
command line (``--seed``, ``--chars``, ``--out``). Standard library only."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence


def grow(make_unit: Callable[[random.Random], str], seed: int, chars: int) -> str:
    """Whole units (poems, modules) from a seeded generator until at least ``chars`` characters."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = 0
    while total < chars:
        unit = make_unit(rng)
        parts.append(unit)
        total += len(unit)
    return "".join(parts)


def main(
    make_corpus: Callable[[int, int], str],
    description: str,
    default_chars: int,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``--seed``, ``--chars``, ``--out`` and write the corpus (UTF-8, LF newlines)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument(
        "--chars",
        type=int,
        default=default_chars,
        help=f"stop after the first whole unit that reaches this many characters "
        f"(default: {default_chars})",
    )
    parser.add_argument("--out", help="write to this file instead of stdout (UTF-8)")
    args = parser.parse_args(argv)
    if args.chars < 1:
        parser.error("--chars must be positive")
    text = make_corpus(args.seed, args.chars)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    else:
        sys.stdout.reconfigure(encoding="utf-8", newline="\n")  # type: ignore[union-attr]
        sys.stdout.write(text)
    return 0
