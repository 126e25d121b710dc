"""Loading a checkpoint for sampling: NumPy arrays for the NumPy engine, a torch model else."""

from __future__ import annotations

from pathlib import Path

from ..store.checkpoint import LoadedArrays, LoadedModel, load_arrays, load_model
from .generate import engine


def load_for_sampling(
    path: Path, device: str = "auto", fast: bool = True
) -> LoadedModel | LoadedArrays:
    """The checkpoint at ``path`` (a run or checkpoint folder) loaded the way
    :func:`charrnn.sample.generate.engine` chooses for ``device`` (``auto``, ``cpu``,
    ``cuda[:N]``) and ``fast``: NumPy arrays for the NumPy engine (torch is not imported), else
    a torch model on the device. Raises :class:`charrnn.errors.CheckpointError` for a missing or
    damaged checkpoint."""
    if engine(device, fast) == "numpy":
        return load_arrays(path)
    from ..device import resolve_device

    return load_model(path, resolve_device(device))
