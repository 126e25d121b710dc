"""Every device decision in one place: ``auto`` is CUDA when present, else the CPU."""

from __future__ import annotations

import torch

from .errors import CharRNNError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` to a usable torch device (or a clear error)."""
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
