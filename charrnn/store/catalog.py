"""What is on disk: summaries of runs and checkpoints, for ``charrnn runs`` and ``charrnn info``.

Everything is read through :mod:`charrnn.store.checkpoint` (the module that owns the files); nothing
here prints, no weights are loaded and torch is never imported: parameter counts come from the
model config (:func:`charrnn.model.config.parameters_of`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..model.config import ModelConfig, parameters_of
from ..text.vocab import UNK
from ..units import best_bits_per_char, bits, perplexity_of
from . import checkpoint as ck
from . import disk
from .tensorfile import check_header, read_arrays

SORT_KEYS = ("name", "when", "bpc", "params", "steps", "size")


def count_parameters(model: dict[str, Any]) -> int:
    """Parameters of the model a config describes, by arithmetic (no model is built)."""
    try:
        mc = ModelConfig.from_dict(model)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"invalid model config ({e})") from None
    return parameters_of(mc)


def corpus_name(data: dict[str, Any]) -> str:
    """Short name of a run's corpus: the first file's name, ``+N`` for more files."""
    sources = data.get("sources") or []
    if not sources:
        return "-"
    first = Path(str(sources[0])).name
    if first == "corpus-stdin.txt" or first == "-":
        first = "<stdin>"
    return first + (f" +{len(sources) - 1}" if len(sources) > 1 else "")


@dataclass(frozen=True)
class RunSummary:
    name: str
    path: str
    corpus: str
    tokenizer: str
    cell: str
    layers: int
    hidden: int
    parameters: int
    steps: int
    best_val_bits_per_char: float | None
    best_step: int | None
    saved_at: str  # when the newest checkpoint was written, as config.json says
    modified: float  # the same as a Unix time (from the file), for sorting
    size_bytes: int
    init_from: dict[str, Any] | None = None  # where a fine-tuned run started (see origin_of)
    damaged: str | None = None  # the first problem of its best checkpoint's files (headers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _newest(run_dir: Path) -> Path:
    """The newest checkpoint of a run (:func:`charrnn.store.checkpoint.newest_checkpoint`)."""
    newest = ck.newest_checkpoint(run_dir)
    if newest is None:
        raise CheckpointError(f"{run_dir}: no complete checkpoint")
    return newest


def _best(run_dir: Path) -> Path:
    """The best checkpoint of a run, else its newest."""
    return ck.best_checkpoint(run_dir) or _newest(run_dir)


def summarize_run(run_dir: Path) -> RunSummary:
    """One run folder, from its newest checkpoint's config.json, its best checkpoint's first
    problem (headers only), each read again if the run prunes it meanwhile (a run that trains:
    :func:`charrnn.store.checkpoint.read_checkpoint`)."""
    run_dir = Path(run_dir)
    summary = ck.read_checkpoint(run_dir, lambda newest: _summary(run_dir, newest), resolve=_newest)
    damaged = ck.read_checkpoint(run_dir, _first_problem, lambda p: p is not None, _best)
    return replace(summary, damaged=damaged)


def _summary(run_dir: Path, newest: Path) -> RunSummary:
    """A run's summary from its newest checkpoint ``newest`` (``damaged`` left unknown)."""
    config = ck.read_config(newest)
    model = config.get("model") or {}
    metrics = config.get("metrics") or {}
    try:
        parameters = count_parameters(model)
    except CheckpointError as e:
        raise CheckpointError(f"{newest / ck.CONFIG}: {e}") from None
    return RunSummary(
        name=run_dir.name,
        path=str(run_dir),
        corpus=corpus_name(config.get("data") or {}),
        tokenizer=str((config.get("tokenizer") or {}).get("type", "char")),
        cell=str(model.get("cell", "?")),
        layers=int(model.get("layers", 0)),
        hidden=int(model.get("hidden", 0)),
        parameters=parameters,
        steps=int(metrics.get("step", 0)),
        best_val_bits_per_char=best_bits_per_char(metrics),
        best_step=metrics.get("best_step"),
        saved_at=str(config.get("saved_at", "")),
        modified=disk.saved_time(newest),
        size_bytes=disk.disk_usage(run_dir),
        init_from=origin_of(config),
    )


def _first_problem(ckpt: Path) -> str | None:
    """The first problem of a checkpoint's files, headers only (see :func:`checkpoint_problems`)."""
    found = checkpoint_problems(ckpt, weights=False)
    return found[0] if found else None


def origin_path(origin: dict[str, Any]) -> str:
    """Where a fine-tuned run started, as the user named it: ``checkpoints/verses-gru/step-N``
    (the absolute run folder for runs that did not record the path given)."""
    checkpoint = str(origin.get("checkpoint") or "?")
    label = str(origin.get("given") or origin.get("run") or "?")
    return label if Path(label).name == checkpoint else f"{label.rstrip('/')}/{checkpoint}"


def origin_of(config: dict[str, Any]) -> dict[str, Any] | None:
    """Where the run of a checkpoint's config.json started, ``{"run", "checkpoint", "step"}``
    (``charrnn train --init-from``); None for a run trained from scratch."""
    origin = config.get("init_from")
    return origin if isinstance(origin, dict) else None


def origin_text(origin: dict[str, Any] | None) -> str:
    """A short name for where a run started: ``shakespeare-gru@500`` (``-`` for none)."""
    if origin is None:
        return "-"
    name = Path(str(origin.get("run") or "?")).name
    step = origin.get("step")
    return f"{name}@{step}" if step is not None else f"{name}/{origin.get('checkpoint')}"


def list_runs(root: Path) -> tuple[list[RunSummary], list[str]]:
    """Runs in ``root`` (or ``root`` itself if it is a run), and one line per unreadable run."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"{root}: no such folder")
    candidates = [root] if ck.is_run_dir(root) else ck.run_folders(root)
    runs, problems = [], []
    # What is left of a run whose checkpoints were renamed away: named, not silently skipped.
    broken = [root] if not candidates else []
    broken += [p for p in disk.pointer_folders(root) if p not in candidates and p != root]
    for path in broken:
        problems += [f"{path}: {lost}" for lost in ck.missing_targets(path)]
    for path in candidates:
        try:
            runs.append(summarize_run(path))
        except CheckpointError as e:
            problems.append(str(e))
    return runs, problems


def sort_runs(runs: list[RunSummary], key: str, reverse: bool = False) -> list[RunSummary]:
    """Sort by ``key``: name A-Z, when newest first, bpc best first, params, steps and size
    (bytes on disk) most first. Runs without a validation figure go last when sorting by bpc."""
    if key not in SORT_KEYS:
        raise ValueError(f"sort key must be one of {', '.join(SORT_KEYS)}")
    if key == "name":
        out = sorted(runs, key=lambda r: r.name)
    elif key == "when":
        out = sorted(runs, key=lambda r: -r.modified)
    elif key == "bpc":

        def bpc(r: RunSummary) -> tuple[bool, float, str]:
            b = r.best_val_bits_per_char
            return (b is None, 0.0 if b is None else b, r.name)

        out = sorted(runs, key=bpc)
    elif key == "params":
        out = sorted(runs, key=lambda r: (-r.parameters, r.name))
    elif key == "size":
        out = sorted(runs, key=lambda r: (-r.size_bytes, r.name))
    else:
        out = sorted(runs, key=lambda r: (-r.steps, r.name))
    return out[::-1] if reverse else out


def describe_checkpoint(path: Path, preview: int = 48) -> dict[str, Any]:
    """What ``charrnn info`` shows, as plain data: where, when, model, vocabulary (the first
    ``preview`` entries, ``<UNK>`` first), training arguments, data, final metrics, and the
    problems found in its files (every header, and the model's weights). A checkpoint that its
    run prunes while it is read is read again as the pointer names it then
    (:func:`charrnn.store.checkpoint.read_checkpoint`): only one still there is damaged."""
    return ck.read_checkpoint(
        Path(path), lambda ckpt: _description(ckpt, preview), lambda d: bool(d["problems"])
    )


def _description(ckpt: Path, preview: int) -> dict[str, Any]:
    """:func:`describe_checkpoint` of the checkpoint folder ``ckpt``."""
    config = ck.read_config(ckpt)
    vocab = ck.load_vocab(ckpt, config)
    model = config.get("model") or {}
    try:
        parameters = count_parameters(model)
    except CheckpointError as e:
        raise CheckpointError(f"{ckpt / ck.CONFIG}: {e}") from None
    run_dir = ckpt.parent
    pointers = [p for p in (ck.BEST, ck.LATEST) if ck.read_pointer(run_dir, p) == ckpt.name]
    files = disk.file_sizes(ckpt)
    metrics = config.get("metrics") or {}
    return {
        "checkpoint": str(ckpt),
        "run": str(run_dir),
        "pointers": pointers,
        "saved_at": config.get("saved_at"),
        "charrnn_version": config.get("charrnn_version"),
        "format_version": config.get("format_version"),
        "model": model,
        "parameters": parameters,
        "tokenizer": config.get("tokenizer") or {"type": "char"},
        "vocab": {
            "size": len(vocab),
            "unk": UNK,
            "preview": vocab.itos[:preview],
            "unigram_entropy_bits": _finite(round(vocab.unigram_entropy_bits(), 4)),
        },
        "training": config.get("training") or {},
        "data": config.get("data") or {},
        "init_from": origin_of(config),
        "metrics": metrics,
        "validation": validation_figures(metrics),
        "files": files,
        "problems": checkpoint_problems(ckpt),  # empty when every file reads and checks out
    }


def validation_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The per-character figures of a checkpoint's last and best validation (None: unknown),
    from its config.json metrics (see :func:`charrnn.units.best_bits_per_char`)."""
    per_char = metrics.get("val_nats_per_char")
    if not isinstance(per_char, int | float):
        per_char = None
    return {
        "nats_per_char": per_char,
        "bits_per_char": None if per_char is None else bits(per_char),
        "perplexity": None if per_char is None else perplexity_of(per_char),
        "best_bits_per_char": best_bits_per_char(metrics),
        "best_step": metrics.get("best_step"),
    }


def _finite(x: float) -> float | None:
    """JSON has no NaN: an unknown figure (e.g. the entropy of subword pieces) is None."""
    return x if math.isfinite(x) else None


def checkpoint_problems(ckpt: Path, weights: bool = True) -> list[str]:
    """What is wrong with a checkpoint folder, one line each (empty: nothing found): config,
    vocabulary and trainer state (valid JSON), every safetensors file's header (names, shapes and
    dtypes of the model's), and with ``weights`` the model's values too (finite). Never raises
    for a damaged file."""
    ckpt = Path(ckpt)
    try:
        _, mc, _ = ck.read_model_config(ckpt)
    except CheckpointError as e:
        return [str(e)]
    found = []
    if (ckpt / ck.TRAINER_STATE).exists():
        try:
            ck.read_json(ckpt / ck.TRAINER_STATE)
        except CheckpointError as e:
            found.append(str(e))
    checks: list[tuple[str, Any]] = [(ck.MODEL, ck.expected_weights(mc))]
    checks += [
        (name, None) for name in (ck.OPTIMIZER, ck.TRAINER_TENSORS) if (ckpt / name).exists()
    ]
    for name, expected in checks:
        try:
            if name == ck.MODEL and weights:
                read_arrays(ckpt / name, expected)
            else:
                check_header(ckpt / name, expected)
        except CheckpointError as e:
            found.append(str(e))
    return found


def local_time(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix))
