"""The defaults of sampling and scoring, in a leaf module (no torch, no NumPy), so that every
layer that names them reads the same numbers: ``--help``, the Python API's signatures, the
sampling policy (:mod:`charrnn.sample.policy`), the training config and the scoring code.

Scoring (the parallel protocol of :mod:`charrnn.evaluation`): the text is cut into
``DEFAULT_STREAMS`` pieces scored side by side, each read from ``DEFAULT_BURN_IN`` tokens
before its start."""

DEFAULT_LENGTH = 1000  # sampling: steps (characters, or subword pieces)
DEFAULT_TEMPERATURE = 0.8  # sampling: softmax temperature

DEFAULT_STREAMS = 64  # pieces scored side by side
DEFAULT_BURN_IN = 256  # tokens of context read before each piece
