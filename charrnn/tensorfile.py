"""Reading safetensors files without trusting them: the header is parsed and checked first.

A checkpoint's tensors are safetensors files (no pickle, so loading cannot run code). Before any
data is read, the header is checked here: its length against the file's size, every tensor's
offsets inside the file, dtypes charrnn knows, sizes that match their shapes, and (when given)
the names, shapes and dtypes that config.json implies. Errors are one line naming the file.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError

_MAX_HEADER = 100 * 1024 * 1024

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}


def _safetensors_header(path: Path) -> dict[str, Any]:
    """Parse and check a safetensors header without loading anything."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: truncated ({size} bytes, not a safetensors file)")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, _MAX_HEADER):
                raise CheckpointError(
                    f"{path}: not a safetensors file (header length {n} exceeds file size {size})"
                )
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing from the checkpoint") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{path}: not a safetensors file (bad header)") from None
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            start, end = info["data_offsets"]
            dtype = info["dtype"]
            shape = info["shape"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: bad header entry for tensor {name!r}") from None
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data_len):
            raise CheckpointError(
                f"{path}: tensor {name!r} points past the end of the file (truncated?)"
            )
        if dtype not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has a bad shape")
        itemsize = torch.empty((), dtype=_DTYPES[dtype]).element_size()
        if math.prod(shape) * itemsize != end - start:
            raise CheckpointError(f"{path}: tensor {name!r} size does not match its shape")
    return header


def read_tensors(
    path: Path, expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]] | None = None
) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, on the CPU, checked against ``expected`` names/shapes/dtypes.

    Never unpickles: the header is parsed and checked here first, then safetensors reads the data.
    """
    path = Path(path)
    header = _safetensors_header(path)
    if expected is not None:
        names = set(header) - {"__metadata__"}
        missing = sorted(set(expected) - names)
        extra = sorted(names - set(expected))
        if missing:
            raise CheckpointError(f"{path}: missing tensor {missing[0]!r}")
        if extra:
            raise CheckpointError(f"{path}: unexpected tensor {extra[0]!r}")
        for name, (shape, dtype) in expected.items():
            info = header[name]
            if tuple(info["shape"]) != tuple(shape):
                raise CheckpointError(
                    f"{path}: tensor {name!r} has shape {tuple(info['shape'])}, "
                    f"config.json implies {tuple(shape)}"
                )
            if _DTYPES[info["dtype"]] != dtype:
                raise CheckpointError(
                    f"{path}: tensor {name!r} has dtype {info['dtype']}, "
                    f"expected {_DTYPE_NAMES.get(dtype, str(dtype))}"
                )
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot read tensors ({e})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf values")
    return tensors
