"""Errors meant for the user: the CLI prints their message on one line and exits 1."""

from __future__ import annotations


class CharRNNError(Exception):
    """Base class: something the user can fix (bad file, bad checkpoint, bad option)."""


class CorpusError(CharRNNError):
    """A text file could not be read or is unusable for training or evaluation."""


class CheckpointError(CharRNNError):
    """A checkpoint is missing, incomplete, corrupted or from an unknown format."""


class TrainingError(CharRNNError):
    """Training cannot go on (diverged, corpus too small for the requested run, ...)."""


class OptionError(CharRNNError):
    """Options that do not go together, or a value the library refuses: a usage error (the CLI
    exits 2, as for any bad option value)."""
