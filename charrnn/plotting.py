"""Learning curves of runs as a matplotlib figure (matplotlib is the optional ``plot`` extra).

:func:`curves` reads each run's ``metrics.jsonl`` (through :mod:`charrnn.metrics`) and
:func:`figure` draws validation bits/char against training time and against characters seen,
one line per run, side by side. Saving the figure is left to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checkpoint as ck
from .errors import CharRNNError, CheckpointError
from .metrics import METRICS, read_metrics

INSTALL_HINT = "pip install 'charrnn[plot]' (or pip install matplotlib)"


@dataclass(frozen=True)
class Curve:
    name: str
    seconds: list[float]  # training time at each evaluation
    chars: list[int]  # characters seen at each evaluation
    bits: list[float]  # validation bits/char at each evaluation


def run_folder(path: Path) -> Path:
    """A run folder from a run folder, one of its checkpoints, or its metrics.jsonl."""
    path = Path(path)
    if path.name == METRICS:
        return path.parent
    if ck.is_checkpoint(path):
        return path.parent  # a checkpoint folder
    return path


def curve(path: Path, name: str | None = None) -> Curve:
    """The validation curve of one run."""
    run = run_folder(path)
    records = read_metrics(run)
    if not records:
        if not ck.is_run_dir(run):
            raise CheckpointError(f"{path}: not a run folder")
        raise CheckpointError(
            f"{run}: no {METRICS} (runs trained before charrnn wrote it cannot be plotted)"
        )
    evals = [
        r
        for r in records
        if r.get("event") == "eval"
        and isinstance(r.get("val_bits_per_char"), int | float)
        and isinstance(r.get("time"), int | float)
        and isinstance(r.get("chars"), int)
    ]
    if not evals:
        raise CheckpointError(f"{run / METRICS}: no validation measurements yet")
    return Curve(
        name=name or run.name,
        seconds=[float(r["time"]) for r in evals],
        chars=[int(r["chars"]) for r in evals],
        bits=[float(r["val_bits_per_char"]) for r in evals],
    )


def curves(paths: list[Path]) -> list[Curve]:
    """One curve per run; runs of the same folder name are told apart by their parent."""
    names = [run_folder(p).resolve().name for p in paths]
    out = []
    for p, n in zip(paths, names, strict=True):
        label = n if names.count(n) == 1 else f"{run_folder(p).resolve().parent.name}/{n}"
        out.append(curve(p, label))
    return out


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
    longest = max(max(c.seconds) for c in data)
    scale, unit = (60.0, "minutes") if longest > 180 else (1.0, "seconds")
    for c in data:
        style = {"marker": "o" if len(c.bits) < 30 else None, "markersize": 3, "label": c.name}
        by_time.plot([s / scale for s in c.seconds], c.bits, **style)
        by_chars.plot(c.chars, c.bits, **style)
    by_time.set_xlabel(f"training time ({unit})")
    by_time.set_ylabel("validation bits/char")
    by_chars.set_xlabel("characters seen")
    by_chars.xaxis.set_major_formatter(EngFormatter())
    for ax in (by_time, by_chars):
        ax.grid(True, alpha=0.3)
    by_chars.legend(loc="best", fontsize="small")
    fig.suptitle("validation bits per character (lower is better)")
    return fig
