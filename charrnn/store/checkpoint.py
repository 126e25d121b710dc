"""Checkpoint folders: their layout, finding them, and reading them (writing is
:mod:`charrnn.store.saving`'s). No pickle anywhere.

A run folder holds checkpoint folders, two pointer files and a log of measurements::

    checkpoints/verses-gru/
        best                 text file: name of the checkpoint with the lowest validation loss
        latest               text file: name of the newest checkpoint (what --resume continues)
        metrics.jsonl        one JSON object per line: training and validation measurements
        step-00000400/
            config.json              format version, model + tokenizer config, training
                                     arguments, metrics
            vocab.json               the character vocabulary
            model.safetensors        model weights
            optimizer.safetensors    optimizer tensors           (for resuming)
            trainer_state.json       step, data position, RNG state, schedule (for resuming)
            trainer_state.safetensors  carried hidden state, torch RNG state (for resuming)

Writes are atomic: a checkpoint is built in a hidden temporary sibling folder, every file is
fsynced, and the folder is renamed into place; only then are the pointers replaced (write a
temporary file, fsync, ``os.replace``). A crash at any moment leaves the previous checkpoint and
pointers usable; left-over ``.tmp-*`` folders are ignored and removed by the next run.
``metrics.jsonl`` belongs to :mod:`charrnn.store.metrics`, which only ever appends to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..model.config import ModelConfig, weight_shapes
from ..text.tokenizers import KINDS, MODEL_FILE, SubwordTokenizer, Tokenizer
from ..text.vocab import Vocab
from .tensorfile import read_arrays, read_tensors

if TYPE_CHECKING:
    import torch

    from ..model.arrays import ArrayModel
    from ..model.rnn import CharRNN

FORMAT_VERSION = 1
CONFIG = "config.json"
VOCAB = "vocab.json"
MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
TRAINER_STATE = "trainer_state.json"
TRAINER_TENSORS = "trainer_state.safetensors"
BEST = "best"
LATEST = "latest"
_STEP_RE = re.compile(r"^step-\d+$")
# What a run folder holds before its first checkpoint (the token cache, the log, the lock).
RUN_FILES = ("tokens-train.bin", "metrics.jsonl", ".lock")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def read_pointer(run_dir: Path, pointer: str) -> str | None:
    """Checkpoint name a pointer file holds, or None if missing or pointing nowhere usable."""
    p = Path(run_dir) / pointer
    try:
        name = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not _STEP_RE.match(name) or not (Path(run_dir) / name / CONFIG).is_file():
        return None
    return name


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest step first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if _STEP_RE.match(p.name) and (p / CONFIG).is_file()]
    return sorted(found, key=lambda p: p.name)


def file_sizes(ckpt: Path) -> dict[str, int]:
    """Bytes of each file directly in a checkpoint folder, by name."""
    return {p.name: p.stat().st_size for p in sorted(Path(ckpt).iterdir()) if p.is_file()}


def saved_time(ckpt: Path) -> float:
    """When a checkpoint was written, as a Unix time (its config.json's modification time)."""
    return (Path(ckpt) / CONFIG).stat().st_mtime


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def disk_usage(path: Path) -> int:
    """Bytes in the files under ``path`` (symbolic links are not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed while we looked
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


# --------------------------------------------------------------------------- finding


def is_run_dir(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and not (path / CONFIG).is_file() and bool(checkpoint_folders(path))


def run_folders(root: Path) -> list[Path]:
    """The run folders directly in ``root``, by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if is_run_dir(p))


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint --resume continues: what ``latest`` names, else the newest complete one."""
    name = read_pointer(run_dir, LATEST)
    if name is not None:
        return Path(run_dir) / name
    folders = checkpoint_folders(run_dir)
    return folders[-1] if folders else None


def best_checkpoint(run_dir: Path) -> Path | None:
    name = read_pointer(run_dir, BEST)
    if name is not None:
        return Path(run_dir) / name
    return newest_checkpoint(run_dir)


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint folder, a run folder (its best checkpoint) or a folder of runs (its newest
    run's best) to a checkpoint folder. Raises CheckpointError naming the path otherwise,
    saying "no checkpoint yet" for a run that has not saved one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run folder")
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a folder (a checkpoint is a folder of files)")
    if (path / CONFIG).is_file():
        return path
    best = best_checkpoint(path)
    if best is not None:
        return best
    newest = newest_run(path)  # a folder of runs: its newest run
    if newest is not None:
        return resolve_checkpoint(newest)
    if any((path / name).exists() for name in RUN_FILES):
        raise CheckpointError(
            f"{path}: no checkpoint yet (a run saves its first at its first validation)"
        )
    raise CheckpointError(f"{path}: not a charrnn run or checkpoint folder (no {CONFIG})")


def newest_run(root: Path) -> Path | None:
    """The run under ``root`` whose newest checkpoint was written last."""
    root = Path(root)
    if not root.is_dir():
        return None
    best: tuple[float, Path] | None = None
    for run in root.iterdir():
        if not run.is_dir():
            continue
        ck = newest_checkpoint(run)
        if ck is None:
            continue
        mtime = (ck / CONFIG).stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, run)
    return best[1] if best else None


# --------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a checkpoint file, with one-line errors naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from the checkpoint") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text (corrupted?)") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: invalid JSON at line {e.lineno} ({e.msg})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return obj


def read_config(ckpt: Path) -> dict[str, Any]:
    """``config.json`` of a checkpoint folder, with its format version checked."""
    path = Path(ckpt) / CONFIG
    config = read_json(path)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported format_version {version!r} (this charrnn reads {FORMAT_VERSION})"
        )
    return config


# --------------------------------------------------------------------------- models


@dataclass
class LoadedModel:
    path: Path  # the checkpoint folder
    model: CharRNN
    vocab: Tokenizer
    config: dict[str, Any]  # config.json as read


def load_vocab(ckpt: Path, config: dict[str, Any] | None = None) -> Tokenizer:
    """The checkpoint's tokenizer: the character vocabulary, or a sentencepiece model."""
    kind = ((config or {}).get("tokenizer") or {}).get("type", "char")
    if kind in KINDS:
        path = Path(ckpt) / MODEL_FILE
        try:
            proto = path.read_bytes()
        except FileNotFoundError:
            raise CheckpointError(f"{path}: missing from the checkpoint") from None
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
        try:
            return SubwordTokenizer(proto, kind)
        except (RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"{path}: not a valid sentencepiece model ({e})") from None
    if kind != "char":
        raise CheckpointError(f"{Path(ckpt) / CONFIG}: unknown tokenizer type {kind!r}")
    path = Path(ckpt) / VOCAB
    d = read_json(path)
    try:
        return Vocab.from_dict(d)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: not a valid vocabulary ({e})") from None


def read_model_config(ckpt: Path) -> tuple[dict[str, Any], ModelConfig, Tokenizer]:
    """config.json (format version checked), its model config and the vocabulary, checked
    against each other: everything but the weights."""
    config = read_config(ckpt)
    try:
        mc = ModelConfig.from_dict(config["model"])
    except KeyError:
        raise CheckpointError(f"{ckpt / CONFIG}: no 'model' section") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt / CONFIG}: invalid model config ({e})") from None
    vocab = load_vocab(ckpt, config)
    if len(vocab) != mc.vocab_size:
        raise CheckpointError(
            f"{ckpt / VOCAB}: holds {len(vocab)} entries but config.json says "
            f"vocab_size {mc.vocab_size}"
        )
    return config, mc, vocab


def expected_weights(mc: ModelConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype) of every tensor in ``model.safetensors``, from the config alone."""
    return {name: (shape, "F32") for name, shape in weight_shapes(mc).items()}


def load_model(path: Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Model and vocabulary from a checkpoint or run folder, checked before any weight is used."""
    from ..model.rnn import CharRNN

    ckpt = resolve_checkpoint(Path(path))
    config, mc, vocab = read_model_config(ckpt)
    tensors = read_tensors(ckpt / MODEL, expected_weights(mc))
    model = CharRNN(mc)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    allowed_missing = {"head.weight"} if mc.tie_weights else set()
    if set(missing) - allowed_missing or unexpected:
        raise CheckpointError(f"{ckpt / MODEL}: tensors do not match the model")
    model.to(device)
    model.eval()
    return LoadedModel(ckpt, model, vocab, config)


@dataclass
class LoadedArrays:
    """A checkpoint loaded for the NumPy sampler: as :class:`LoadedModel`, with the weights as
    NumPy arrays (:class:`charrnn.model.arrays.ArrayModel`) and torch never imported."""

    path: Path
    model: ArrayModel
    vocab: Tokenizer
    config: dict[str, Any]


def load_arrays(path: Path) -> LoadedArrays:
    """:func:`load_model` without torch: the same checks (format version, names, shapes, dtypes,
    finite values), the weights read by safetensors' NumPy loader."""
    from ..model.arrays import ArrayModel

    ckpt = resolve_checkpoint(Path(path))
    config, mc, vocab = read_model_config(ckpt)
    arrays = read_arrays(ckpt / MODEL, expected_weights(mc))
    return LoadedArrays(ckpt, ArrayModel(mc, arrays), vocab, config)
