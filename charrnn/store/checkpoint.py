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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
READ_TRIES = 3  # a read, and up to two more of the checkpoint a pointer names after a prune
PRUNE_GRACE = 0.25  # seconds a checkpoint no pointer names may take to vanish (being pruned)
T = TypeVar("T")


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


def _entries(folder: Path) -> list[Path]:
    """What a folder holds (nothing if it is not there, or was removed while it was listed)."""
    try:
        return list(Path(folder).iterdir())
    except OSError:
        return []


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest step first."""
    found = [p for p in _entries(run_dir) if _STEP_RE.match(p.name) and (p / CONFIG).is_file()]
    return sorted(found, key=lambda p: p.name)


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


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


def missing_targets(run_dir: Path) -> list[str]:
    """What a run's pointers name that is not there (a renamed or removed step folder), as
    ``best names step-00000400, which is missing`` lines; empty when both are fine or absent."""
    lost = []
    for pointer in (BEST, LATEST):
        try:
            name = (Path(run_dir) / pointer).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if not (Path(run_dir) / name / CONFIG).is_file():
            lost.append(
                f"its {pointer} pointer names {name}, which is missing (renamed or removed?); "
                f"restore {name}, or write the name of a checkpoint folder into {pointer}"
            )
    return lost


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
    lost = missing_targets(path)
    if lost:
        raise CheckpointError(f"{path}: {lost[0]}")
    if any((path / name).exists() for name in RUN_FILES):
        raise CheckpointError(
            f"{path}: no checkpoint yet (a run saves its first at its first validation)"
        )
    raise CheckpointError(f"{path}: not a charrnn run or checkpoint folder (no {CONFIG})")


def newest_run(root: Path) -> Path | None:
    """The run under ``root`` whose newest checkpoint was written last."""
    best: tuple[float, Path] | None = None
    for run in _entries(root):
        if not run.is_dir():
            continue
        ck = newest_checkpoint(run)
        if ck is None:
            continue
        try:
            mtime = (ck / CONFIG).stat().st_mtime
        except OSError:  # pruned while we looked: its run has a newer one
            continue
        if best is None or mtime > best[0]:
            best = (mtime, run)
    return best[1] if best else None


# --------------------------------------------------------------------------- reading


def _identity(folder: Path) -> tuple[int, int] | None:
    """(device, inode) of a folder: which folder a name stands for (None: none now)."""
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        return st.st_dev, st.st_ino
    return None


def read_checkpoint(
    path: Path,
    read: Callable[[Path], T],
    damaged: Callable[[T], bool] = lambda _: False,
    resolve: Callable[[Path], Path] = resolve_checkpoint,
) -> T:
    """``read(ckpt)`` of the checkpoint ``resolve(path)`` gives, made again (READ_TRIES in
    all) with the one it gives then when the checkpoint read was removed or replaced meanwhile
    (a run in training prunes the folders its pointers no longer name): that is not damage.
    What ``read`` raises (CheckpointError, OSError), or a result ``damaged`` flags, stands for
    a checkpoint still there and still the one ``path`` resolves to. Raises CheckpointError for
    a checkpoint named itself that was removed, or one replaced under every read."""
    path = Path(path)
    ckpt = resolve(path)
    for _ in range(READ_TRIES):
        before = _identity(ckpt)
        error: BaseException | None = None
        try:
            result = read(ckpt)
        except (CheckpointError, OSError) as e:
            error = e
        newer = _moved(path, ckpt, before, error is not None or damaged(result), resolve)
        if newer is None:
            if error is not None:
                raise error
            return result
        ckpt = newer
    raise CheckpointError(f"{path}: replaced under {READ_TRIES} reads in a row; try again")


def _moved(
    path: Path, ckpt: Path, before: Any, failed: bool, resolve: Callable[[Path], Path]
) -> Path | None:
    """What to read after a read of ``ckpt`` (the folder ``before``); None: the read stands, as
    the folder is still there and, if the read ``failed``, what ``path`` resolves to, unpruned."""
    still = before is not None and _identity(ckpt) == before
    if still and not failed:
        return None
    try:
        now = resolve(path)
    except CheckpointError:
        if still and not _pruned_soon(ckpt, before):
            return None  # the read's own error says more
        if ckpt != path:
            raise
        raise CheckpointError(f"{path}: removed while it was read (pruned by its run)") from None
    return now if now != ckpt or not still or _pruned_soon(ckpt, before) else None


def _pruned_soon(ckpt: Path, before: Any) -> bool:
    """Whether ``ckpt``, named by no pointer of a run whose pointers name other checkpoints,
    vanishes within PRUNE_GRACE seconds (its run is pruning it)."""
    names = {read_pointer(ckpt.parent, BEST), read_pointer(ckpt.parent, LATEST)} - {None}
    deadline = time.monotonic() + (PRUNE_GRACE if names and ckpt.name not in names else 0)
    while time.monotonic() < deadline and _identity(ckpt) == before:
        time.sleep(0.01)
    return _identity(ckpt) != before


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

    def load(ckpt: Path) -> LoadedModel:
        config, mc, vocab = read_model_config(ckpt)
        tensors = read_tensors(ckpt / MODEL, expected_weights(mc))
        model = CharRNN(mc)
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        allowed_missing = {"head.weight"} if mc.tie_weights else set()
        if set(missing) - allowed_missing or unexpected:
            raise CheckpointError(f"{ckpt / MODEL}: tensors do not match the model")
        return LoadedModel(ckpt, model, vocab, config)

    loaded = read_checkpoint(path, load)  # again if a training run prunes it meanwhile
    loaded.model.to(device)
    loaded.model.eval()
    return loaded


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

    def load(ckpt: Path) -> LoadedArrays:
        config, mc, vocab = read_model_config(ckpt)
        arrays = read_arrays(ckpt / MODEL, expected_weights(mc))
        return LoadedArrays(ckpt, ArrayModel(mc, arrays), vocab, config)

    return read_checkpoint(path, load)
