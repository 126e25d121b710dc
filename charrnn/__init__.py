"""charrnn: character-level recurrent language models, trained and sampled from the shell.

This module is the public Python API; the command line (``charrnn train``, ``sample``,
``eval-perplexity``) is a thin layer over the same library::

    import charrnn

    run = charrnn.train("corpora/verses.txt", max_steps=500)    # -> the run folder (a Path)
    m = charrnn.load_model(run)                                  # its best checkpoint
    print(charrnn.generate(m, "THE ", length=200, seed=1))
    print(charrnn.score(m, "THE HOLLOW LAKE\\n").bits_per_char)

``import charrnn`` is cheap: torch, NumPy and the submodules are imported by the functions that
need them, on first use. Errors a user can fix (a missing file, a damaged checkpoint, a corpus
too small, ...) raise :class:`CharRNNError` or one of its subclasses, with a one-line message.
The lower-level modules stay available for finer control: :mod:`charrnn.sample.generate` (streaming,
batches of samples), :mod:`charrnn.evaluation` (scoring protocols) and :mod:`charrnn.run.session`
(starting, resuming and saving runs).
"""

from __future__ import annotations

from typing import Any

from ._version import __version__
from .api import generate, generate_stream, load_model, score, score_file, train
from .errors import CharRNNError, CheckpointError, CorpusError, TrainingError
from .units import Score

__all__ = [
    "CharRNNError",
    "CheckpointError",
    "CorpusError",
    "LoadedModel",
    "Score",
    "TrainingError",
    "__version__",
    "generate",
    "generate_stream",
    "load_model",
    "score",
    "score_file",
    "train",
]


def __getattr__(name: str) -> Any:
    """Names whose modules import torch, resolved on first use (``charrnn.LoadedModel``)."""
    if name == "LoadedModel":
        from .store.checkpoint import LoadedModel

        return LoadedModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
