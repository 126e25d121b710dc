"""``metrics.jsonl``: the measurements of a run, appended while it trains, read by runs/plot.

One JSON object per line, in a run folder beside its checkpoints::

    {"event": "start", "step": 0, "time": 0.0, "chars": 0, "resumed": false, "parameters": ...}
    {"event": "step", "step": 20, ..., "train_loss": 2.91, "train_bits_per_char": 4.2, "lr": ...}
    {"event": "eval", "step": 200, ..., "val_loss": 1.93, "val_bits_per_char": 2.78, "best": true}
    {"event": "end", "step": 400, ..., "reason": "max_time"}

``train_loss`` and ``val_loss`` are nats per token (per character for the character tokenizer);
``*_bits_per_char`` are per character (see :mod:`charrnn.units`). ``time`` is seconds of
training over all sessions, ``chars`` characters seen, ``wall`` a Unix time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .atomic import json_text

METRICS = "metrics.jsonl"


def _plain_number(x: Any) -> Any:
    """JSON has no NaN or Infinity: write them as null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def sig(x: float | None) -> float | None:
    """``x`` to 6 significant digits, to keep metrics.jsonl readable."""
    return None if x is None else float(f"{x:.6g}")


class MetricsLog:
    """Appends measurements to ``run_dir/metrics.jsonl``, one JSON object per line.

    Each line goes out in a single unbuffered ``write`` to a file opened for appending, so a
    reader of a run in progress sees whole lines; at worst the very last line is incomplete, and
    :func:`read_metrics` skips it. Lines are not fsynced: a crash may lose the last few, which
    the checkpoints do not depend on. A line torn by a kill (the file does not end with a
    newline) is ended when the log is opened again, so the next session's first record (its
    ``start``) begins a line of its own instead of being glued onto the torn one, which the
    reader then skips. Raises :class:`CheckpointError` when it cannot write.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / METRICS
        self._file: Any = None

    def write(self, record: Mapping[str, Any]) -> None:
        plain = {k: _plain_number(v) for k, v in record.items()}
        line = json_text(plain, separators=(", ", ": ")) + "\n"
        try:
            if self._file is None:
                self._file = self._open()
            self._file.write(line.encode("utf-8"))
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot write ({e.strerror or e})") from None

    def _open(self) -> Any:
        """The log opened for appending, its torn last line (if any) ended first."""
        f = open(self.path, "a+b", buffering=0)  # noqa: SIM115 (kept open)
        try:
            end = f.seek(0, os.SEEK_END)
            if end > 0:
                f.seek(end - 1)
                if f.read(1) != b"\n":
                    f.write(b"\n")  # appended: the torn record stays a line of its own
        except BaseException:
            f.close()
            raise
        return f

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (empty if there is none), oldest first.

    Safe while the run is training: an incomplete last line is skipped, as is any line that is
    not a JSON object. A ``start`` record of a resumed session at step s drops the earlier
    records after step s, which that session redoes, so the result is one consistent history.
    Raises :class:`CheckpointError` when the file exists but cannot be read.
    """
    path = Path(run_dir) / METRICS
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    records: list[dict[str, Any]] = []
    for raw in data.split(b"\n")[:-1]:  # the part after the last newline is incomplete
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("event") == "start" and isinstance(obj.get("step"), int):
            start = obj["step"]
            records = [
                r for r in records if not (isinstance(r.get("step"), int) and r["step"] > start)
            ]
        records.append(obj)
    return records
