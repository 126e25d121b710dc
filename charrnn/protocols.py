"""The parameters of the parallel scoring protocol (see :mod:`charrnn.evaluation`), in a leaf
module without torch, so that ``eval-perplexity --help``, the training config and the scoring
code read the same numbers: the text is cut into ``DEFAULT_STREAMS`` pieces scored side by
side, each read from ``DEFAULT_BURN_IN`` tokens before its start."""

DEFAULT_STREAMS = 64  # pieces scored side by side
DEFAULT_BURN_IN = 256  # tokens of context read before each piece
