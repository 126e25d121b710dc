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
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError

if TYPE_CHECKING:
    import numpy as np
    import torch

_MAX_HEADER = 100 * 1024 * 1024

# safetensors dtype names and their sizes in bytes. Names are compared as strings, so the header
# checks need neither torch nor NumPy.
_ITEMSIZE = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}
# The same dtypes as NumPy names them, and torch without its "torch." prefix.
_NAMES = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}

# Expected tensors: name -> (shape, dtype), the dtype as safetensors, torch or NumPy names it.
Expected = Mapping[str, tuple[tuple[int, ...], Any]]


def dtype_name(dtype: Any) -> str:
    """The safetensors name (``F32``, ...) of a dtype given by that name, by torch or by NumPy."""
    if isinstance(dtype, type):  # a NumPy scalar type such as np.float32
        dtype = getattr(dtype, "__name__", dtype)
    name = str(dtype).removeprefix("torch.")
    return name if name in _ITEMSIZE else _NAMES.get(name, name)


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
        if dtype not in _ITEMSIZE:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {name!r} has a bad shape")
        if math.prod(shape) * _ITEMSIZE[dtype] != end - start:
            raise CheckpointError(f"{path}: tensor {name!r} size does not match its shape")
    return header


def _check_expected(path: Path, header: dict[str, Any], expected: Expected) -> None:
    """The names, shapes and dtypes of ``header`` are those of ``expected``."""
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
        if info["dtype"] != dtype_name(dtype):
            raise CheckpointError(
                f"{path}: tensor {name!r} has dtype {info['dtype']}, expected {dtype_name(dtype)}"
            )


def check_header(path: Path, expected: Expected | None = None) -> None:
    """Check a safetensors file's header (and, given ``expected``, its names, shapes and dtypes)
    without reading any tensor data: cheap enough to run over every run in a folder. Raises
    :class:`CheckpointError` naming the file and the problem."""
    _checked_header(Path(path), expected)


def _checked_header(path: Path, expected: Expected | None) -> None:
    header = _safetensors_header(path)
    if expected is not None:
        _check_expected(path, header, expected)


def read_tensors(path: Path, expected: Expected | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, on the CPU, checked against ``expected`` names/shapes/dtypes.

    Never unpickles: the header is parsed and checked here first, then safetensors reads the data.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load, load_file

    path = Path(path)
    _checked_header(path, expected)
    try:
        if _utf8_path(path):
            tensors = load_file(str(path), device="cpu")
        else:  # safetensors maps only files whose path is valid UTF-8: read this one whole
            tensors = load(path.read_bytes())
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot read tensors ({e})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf values")
    return tensors


def _utf8_path(path: Path) -> bool:
    """Whether ``path`` is valid UTF-8 (not a name with bytes from another locale)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_arrays(path: Path, expected: Expected | None = None) -> dict[str, np.ndarray]:
    """:func:`read_tensors` as NumPy arrays, with the same checks, and without torch (NumPy has
    no bfloat16: such a tensor is an error here)."""
    import numpy as np
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    _checked_header(path, expected)
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{path}: cannot read tensors ({e})") from None
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not bool(np.isfinite(a).all()):
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or Inf values")
    return arrays
