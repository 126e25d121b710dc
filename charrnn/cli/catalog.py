"""``charrnn runs``, ``charrnn info`` and ``charrnn plot``: look at what training left on disk.

Tables, descriptions and JSON are data, so they go to stdout; notes go to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ..errors import CharRNNError
from ..store import catalog
from ..text.vocab import UNK
from .common import (
    Choice,
    Number,
    checkpoints_root,
    choices,
    err,
    find_checkpoint,
    format_duration,
    format_table,
    out_or_quiet,
)

RUNS_EPILOG = (
    "Examples:\n\n"
    "  charrnn runs\n\n"
    "  charrnn runs experiments/ --sort bpc\n\n"
    "  charrnn runs --json | jq '.[0].best_val_bits_per_char'"
)
INFO_EPILOG = (
    "Examples:\n\n"
    "  charrnn info checkpoints/verses-gru\n\n"
    "  charrnn info checkpoints/verses-gru/step-00000400 --json"
)
PLOT_EPILOG = (
    "Examples:\n\n"
    "  charrnn plot checkpoints/verses-gru checkpoints/verses-lstm --out curves.png\n\n"
    "  charrnn plot checkpoints/* --out all.svg --width 1400 --height 500\n\n"
    "Needs matplotlib: pip install 'charrnn[plot]'."
)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# ------------------------------------------------------------------------------ runs


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
        err.print(f"charrnn: note: skipped {p}", markup=False)
    for r in runs:
        if r.damaged:
            err.print(f"charrnn: note: {r.name} is damaged: {r.damaged}", markup=False)
    runs = catalog.sort_runs(runs, sort, reverse)
    if as_json:
        out_or_quiet(json.dumps([r.to_dict() for r in runs], indent=2, ensure_ascii=False) + "\n")
        return
    if not runs:
        err.print(f"no runs in {root}; train one with `charrnn train FILE`", markup=False)
        return
    header: tuple[str, ...] = ("name", "corpus", "tok", "cell", "layers x hidden", "params")
    header += ("steps", "best bpc", "when", "size")
    fine_tuned = any(r.init_from for r in runs)  # a column for them only when there are some
    header += ("from",) if fine_tuned else ()
    rows: list[tuple[str, ...]] = []
    for r in runs:
        bpc = r.best_val_bits_per_char
        rows.append(
            (
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
            )
            + ((catalog.origin_text(r.init_from),) if fine_tuned else ())
        )
    out_or_quiet(format_table(header, rows, left=4))


# ------------------------------------------------------------------------------ info


def _show_char(piece: str) -> str:
    """A vocabulary entry (a character or a subword piece) with blanks and controls visible."""
    names = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "␠"}
    if len(piece) > 1 and piece != UNK:
        return "".join(_show_char(c) for c in piece)
    if piece in names:
        return names[piece]
    if len(piece) == 1 and (ord(piece) < 32 or ord(piece) == 127):
        return f"\\x{ord(piece):02x}"
    return piece


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if v is None:
        return "-"
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v) or "-"
    return str(v)


def info_text(d: dict[str, Any]) -> str:
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
        where = f"{origin.get('run')}/{origin.get('checkpoint')}"
        lines.append(f"init from   {where} (step {_value(origin.get('step'))}): fine-tuned")
    lines += [
        f"model       {str(m.get('cell', '?')).upper()} {m.get('layers')}x{m.get('hidden')}, "
        f"{d['parameters']:,} parameters",
        f"tokenizer   {kind}, {vocab['size']} entries{entropy}",
        f"vocabulary  {shown}" + (f"  (+{more} more)" if more > 0 else ""),
    ]
    lines += _progress_lines(met, d["validation"], kind)
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
    return "\n".join(lines) + "\n"


def _progress_lines(met: dict[str, Any], v: dict[str, Any], kind: str) -> list[str]:
    """The progress and validation lines of ``info`` (none for a checkpoint without metrics)."""
    if not met:
        return []
    lines = []
    summary = f"step {met.get('step', '-')}"
    if met.get("tokens") is not None:
        seen = met.get("characters_seen")  # older checkpoints: tokens only
        if seen is None:
            summary += f", {met['tokens']:,} {'characters' if kind == 'char' else 'tokens'} seen"
        else:
            summary += f", {seen:,} characters seen"
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
    d = catalog.describe_checkpoint(find_checkpoint(checkpoint, "name a run or checkpoint folder"))
    if as_json:
        out_or_quiet(json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    else:
        out_or_quiet(info_text(d))
    if d["problems"]:  # described as far as it could be, then flagged: exit 1
        more = f" (and {len(d['problems']) - 1} more)" if len(d["problems"]) > 1 else ""
        raise CharRNNError(f"damaged checkpoint: {d['problems'][0]}{more}")


# ------------------------------------------------------------------------------ plot


def plot_command(
    runs: list[Path] = typer.Argument(
        ..., help="Run folders (or their metrics.jsonl) to compare.", metavar="RUN..."
    ),
    out: Path = typer.Option(
        Path("curves.png"),
        "--out",
        "-o",
        help="Image to write: .png, .svg or .pdf.",
        metavar="FILE",
    ),
    width: int = typer.Option(
        1000, "--width", parser=Number(int, 200, 10000), help="Width in pixels.", metavar="PX"
    ),
    height: int = typer.Option(
        420, "--height", parser=Number(int, 150, 10000), help="Height in pixels.", metavar="PX"
    ),
) -> None:
    """Plot validation bits/char against training time and characters seen, one line per run."""
    from .plotting import curves, figure

    fig = figure(curves(runs), width=width, height=height)
    try:
        fig.savefig(out, dpi=100)
    except (OSError, ValueError) as e:
        raise CharRNNError(f"{out}: cannot write the image ({e})") from None
    err.print(
        f"wrote {out} ({width}x{height}, {len(runs)} run{'s' if len(runs) > 1 else ''})",
        markup=False,
    )
