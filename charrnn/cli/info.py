"""``charrnn info``: describe one checkpoint, as text or as JSON.

The description is data, so it goes to stdout; a damaged checkpoint is described as far as it
can be, then reported on stderr (exit 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import CharRNNError, terminal_json, terminal_text
from ..store import catalog
from ..store.atomic import json_text
from .common import checkpoints_root, find_checkpoint, format_duration, human_bytes, out_or_quiet

INFO_EPILOG = (
    "Examples:\n\n"
    "  charrnn info checkpoints/verses-gru\n\n"
    "  charrnn info checkpoints/verses-450/step-00000450 --json"
)


def _show_char(piece: str) -> str:
    """A vocabulary entry (a character or a subword piece) with blanks and controls visible:
    a space as ␠, controls and format characters escaped (:func:`terminal_text`)."""
    return terminal_text(piece).replace(" ", "␠")


def reading_target(path: Path | None, how: str = "pass --checkpoint PATH") -> Path:
    """What a reading command (info, sample, eval-perplexity) reads: the folder named, else the
    run :func:`find_checkpoint` picks (not the checkpoint its pointer names now, so that a read
    that sees that checkpoint pruned by the training run can follow the pointer)."""
    if path is not None:
        return path
    found = find_checkpoint(None, how)
    return found if found == checkpoints_root() else found.parent


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "-"
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v) or "-"
    return str(v)


def info_text(d: dict[str, Any]) -> str:
    """The text of ``charrnn info`` from what :func:`charrnn.store.catalog.describe_checkpoint`
    returns."""
    m = d["model"]
    met = d["metrics"]
    vocab = d["vocab"]
    shown = " ".join(_show_char(c) for c in vocab["preview"])
    more = vocab["size"] - len(vocab["preview"])
    pointers = f" ({' and '.join(d['pointers'])} of its run)" if d["pointers"] else ""
    kind = d["tokenizer"].get("type", "char")
    h = vocab["unigram_entropy_bits"]
    entropy = "" if h is None else f" (unigram entropy {h:.3f} bits/char)"
    lines = [
        f"checkpoint  {d['checkpoint']}{pointers}",
        f"saved       {d['saved_at']} by charrnn {d['charrnn_version']} "
        f"(format {d['format_version']})",
    ]
    origin = d.get("init_from")
    if origin:
        where = catalog.origin_path(origin)
        lines.append(f"init from   {where} (step {_value(origin.get('step'))}): fine-tuned")
    lines += [
        f"model       {str(m.get('cell', '?')).upper()} {m.get('layers')}x{m.get('hidden')}, "
        f"{d['parameters']:,} parameters",
        f"tokenizer   {kind}, {vocab['size']} entries{entropy}",
        f"vocabulary  {shown}" + (f"  (+{more} more)" if more > 0 else ""),
    ]
    lines += _progress_lines(met, d["validation"])
    for title, section in (
        ("model config", m),
        ("training arguments", d["training"]),
        ("data", d["data"]),
        ("final metrics", met),
    ):
        lines.append("")
        lines.append(f"{title}:")
        width = max((len(k) for k in section), default=0)
        lines += [f"  {k.ljust(width)}  {_value(v)}" for k, v in section.items()]
    lines.append("")
    lines.append("files:")
    width = max((len(k) for k in d["files"]), default=0)
    lines += [f"  {k.ljust(width)}  {human_bytes(n)}" for k, n in d["files"].items()]
    # Names, sources and notes come from the data: nothing of them may drive the terminal.
    return "\n".join(terminal_text(line) for line in lines) + "\n"


def _progress_lines(met: dict[str, Any], v: dict[str, Any]) -> list[str]:
    """The progress and validation lines of ``info`` (none for a checkpoint without metrics)."""
    if not met:
        return []
    lines = []
    summary = f"step {met.get('step', '-')}"
    if met.get("characters_seen") is not None:
        summary += f", {met['characters_seen']:,} characters seen"
    if met.get("elapsed") is not None:
        summary += f", {format_duration(met['elapsed'])} of training"
    lines.append(f"progress    {summary}")
    if v["nats_per_char"] is not None:
        lines.append(
            f"val         {v['nats_per_char']:.4f} nats/char = {v['bits_per_char']:.4f} "
            f"bits/char, perplexity {v['perplexity']:.3f}"
        )
    if v["best_bits_per_char"] is not None:
        lines.append(f"best val    {v['best_bits_per_char']:.4f} bits/char (step {v['best_step']})")
    return lines


def info_command(
    checkpoint: Path | None = typer.Argument(
        None,
        help="Run folder (its best checkpoint) or checkpoint folder [default: newest run].",
        metavar="RUN",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Describe a checkpoint: model, parameters, vocabulary, training arguments, metrics."""
    d = catalog.describe_checkpoint(reading_target(checkpoint, "name a run or checkpoint folder"))
    if as_json:
        out_or_quiet(terminal_json(json_text(d, indent=2)) + "\n")
    else:
        out_or_quiet(info_text(d))
    if d["problems"]:  # described as far as it could be, then flagged: exit 1
        more = f" (and {len(d['problems']) - 1} more)" if len(d["problems"]) > 1 else ""
        raise CharRNNError(f"damaged checkpoint: {d['problems'][0]}{more}")
