"""Every device decision in one place: ``auto`` is CUDA when present, else the CPU."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

from .errors import CharRNNError

if TYPE_CHECKING:
    import torch

DEVICE_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")  # what --device accepts (lower case)


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` to a usable torch device (or a clear error)."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise CharRNNError(f"--device {spec}: CUDA is not available on this machine")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CharRNNError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
        return dev
    raise CharRNNError(f"--device {spec}: expected auto, cpu, cuda or cuda:N")


# Files whose absence rules out a GPU that torch could use: NVIDIA's driver, ROCm's, WSL's.
_GPU_FILES = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def cuda_possible() -> bool:
    """Whether ``auto`` could resolve to a CUDA device here, told without importing torch (which
    takes about a second): False when ``CUDA_VISIBLE_DEVICES`` hides every device, on macOS, and
    where no GPU driver is installed. True means "ask torch" (:func:`resolve_device`)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return False
    if sys.platform == "darwin":
        return False
    if sys.platform == "win32":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        return os.path.exists(os.path.join(root, "System32", "nvcuda.dll"))
    return any(os.path.exists(p) for p in _GPU_FILES)
