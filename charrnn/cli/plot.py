"""``charrnn plot``: learning curves of runs as an image (matplotlib: the ``plot`` extra).

:func:`curves` reads each run's ``metrics.jsonl`` (through :mod:`charrnn.store.metrics`) and
:func:`figure` draws validation bits/char (solid) and the training loss beside it (dashed, same
colour) against training time and against characters seen, one colour per run, side by side: a
gap that opens between the two is overfitting. A run without validation draws its training
curve alone. :func:`plot_command` saves the figure and says so on stderr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from ..errors import CharRNNError, CheckpointError
from ..store import checkpoint as ck
from ..store.metrics import METRICS, read_metrics
from .common import Number, err, say
from .streams import shown

PLOT_EPILOG = (
    "Examples:\n\n"
    "  charrnn plot checkpoints/verses-gru checkpoints/verses-450 --out curves.png\n\n"
    "  charrnn plot checkpoints/* --out all.svg --width 1400 --height 500\n\n"
    "Needs matplotlib: pip install 'charrnn[plot]'."
)
INSTALL_HINT = "pip install 'charrnn[plot]' (or pip install matplotlib)"


@dataclass(frozen=True)
class Curve:
    name: str
    seconds: list[float]  # training time at each evaluation
    chars: list[int]  # characters seen at each evaluation
    bits: list[float]  # validation bits/char at each evaluation
    # The same at each ``step`` record: the running mean of recent training losses (dropout on).
    train_seconds: list[float] = field(default_factory=list)
    train_chars: list[int] = field(default_factory=list)
    train_bits: list[float] = field(default_factory=list)
    best: int | None = None  # index in ``bits`` of the best validation (what ``best`` names)
    resumes: list[tuple[float, int]] = field(default_factory=list)  # (time, chars) of each resume


def _points(records: list[dict[str, Any]], event: str, key: str) -> list[dict[str, Any]]:
    """The records of ``event`` that hold a number under ``key``, a time and a char count."""
    return [
        r
        for r in records
        if r.get("event") == event
        and isinstance(r.get(key), int | float)
        and isinstance(r.get("time"), int | float)
        and isinstance(r.get("chars"), int)
    ]


def run_folder(path: Path) -> Path:
    """A run folder from a run folder, one of its checkpoints, or its metrics.jsonl."""
    path = Path(path)
    if path.name == METRICS:
        return path.parent
    if ck.is_checkpoint(path):
        return path.parent  # a checkpoint folder
    return path


def curve(path: Path, name: str | None = None) -> Curve:
    """The validation and training curves of one run."""
    run = run_folder(path)
    records = read_metrics(run)
    if not records:
        if not ck.is_run_dir(run):
            raise CheckpointError(f"{path}: not a run folder")
        raise CheckpointError(f"{run}: no {METRICS}")
    evals = _points(records, "eval", "val_bits_per_char")
    steps = _points(records, "step", "train_bits_per_char")
    if not evals and not steps:
        raise CheckpointError(f"{run / METRICS}: no measurements yet")
    starts = _points(records, "start", "step")
    bits = [float(r["val_bits_per_char"]) for r in evals]
    return Curve(
        best=min(range(len(bits)), key=bits.__getitem__) if bits else None,
        resumes=[(float(r["time"]), int(r["chars"])) for r in starts if r["step"]],
        name=name or run.name,
        seconds=[float(r["time"]) for r in evals],
        chars=[int(r["chars"]) for r in evals],
        bits=[float(r["val_bits_per_char"]) for r in evals],
        train_seconds=[float(r["time"]) for r in steps],
        train_chars=[int(r["chars"]) for r in steps],
        train_bits=[float(r["train_bits_per_char"]) for r in steps],
    )


def plottable(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The paths that name a run (its folder, a checkpoint of it, or its metrics.jsonl), and
    a note for each other one, skipped as ``runs`` skips what is not a run (so that
    ``checkpoints/*`` works beside a README). A missing path is an error, as is nothing left
    to plot (CheckpointError)."""
    kept, notes = [], []
    for p in paths:
        if not p.exists():
            raise CheckpointError(f"{p}: no such run folder")
        run = run_folder(p)
        if (run / METRICS).is_file() or ck.is_run_dir(run):
            kept.append(p)
        else:
            notes.append(f"{p}: not a run folder, skipped")
    if not kept:
        if len(paths) == 1:
            raise CheckpointError(f"{paths[0]}: not a run folder")
        raise CheckpointError(f"no run folder among the {len(paths)} paths given")
    return kept, notes


def curves(paths: list[Path]) -> list[Curve]:
    """One curve per run; runs of the same folder name are told apart by their parent."""
    names = [run_folder(p).resolve().name for p in paths]
    out = []
    for p, n in zip(paths, names, strict=True):
        label = n if names.count(n) == 1 else f"{run_folder(p).resolve().parent.name}/{n}"
        out.append(curve(p, shown(label)))  # a name with bytes that are not UTF-8: \xNN
    return out


def _mark(ax: Any, c: Curve, x: list[float] | list[int], k: float, colour: str, axis: int) -> None:
    """The best validation as a star, each resume as a dotted vertical line."""
    if c.best is not None:
        ax.plot([x[c.best] / k], [c.bits[c.best]], marker="*", markersize=11, color=colour)
    for point in c.resumes:
        ax.axvline(point[axis] / k, color=colour, linestyle=":", linewidth=1.0, alpha=0.7)


def figure(data: list[Curve], width: int = 1000, height: int = 420, dpi: int = 100) -> Any:
    """A figure of ``width`` x ``height`` pixels (at ``dpi``): bits/char vs time and vs chars."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import EngFormatter
    except ImportError:
        raise CharRNNError(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from None

    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend draws it: files only, never a window, no pyplot state
    by_time, by_chars = fig.subplots(1, 2, sharey=True)
    longest = max(max([*c.seconds, *c.train_seconds], default=0.0) for c in data)
    scale, unit = (60.0, "minutes") if longest > 180 else (1.0, "seconds")
    for i, c in enumerate(data):
        colour = f"C{i % 10}"
        val = {"color": colour, "marker": "o" if len(c.bits) < 30 else None, "markersize": 3}
        train: dict[str, Any] = {"color": colour, "linestyle": "--", "linewidth": 1.0, "alpha": 0.8}
        (val if c.bits else train)["label"] = c.name  # each run once in the legend
        for ax, x, tx, k in (
            (by_time, c.seconds, c.train_seconds, scale),
            (by_chars, c.chars, c.train_chars, 1),
        ):
            if c.bits:
                ax.plot([v / k for v in x], c.bits, **val)
            if c.train_bits:
                ax.plot([v / k for v in tx], c.train_bits, **train)
            _mark(ax, c, x, k, colour, 0 if ax is by_time else 1)
    by_time.set_xlabel(f"training time ({unit})")
    by_time.set_ylabel("bits/char")
    by_chars.set_xlabel("characters seen")
    by_chars.xaxis.set_major_formatter(EngFormatter())
    for ax in (by_time, by_chars):
        ax.grid(True, alpha=0.3)
    by_chars.legend(loc="best", fontsize="small")
    fig.suptitle(
        "bits per character: validation solid (best: star), training dashed, resumes dotted "
        "(lower is better)"
    )
    return fig


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
    runs, notes = plottable(runs)
    for note in notes:
        say(f"note: {note}")
    fig = figure(curves(runs), width=width, height=height)
    try:
        fig.savefig(out, dpi=100)
    except (OSError, ValueError) as e:
        raise CharRNNError(f"{out}: cannot write the image ({e})") from None
    err.print(
        f"wrote {out} ({width}x{height}, {len(runs)} run{'s' if len(runs) > 1 else ''})",
        markup=False,
    )
