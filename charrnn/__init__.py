"""charrnn: character-level recurrent language models, trained and sampled from the shell."""

import warnings

# torch warns at import when NumPy is absent; charrnn does not use NumPy.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

__version__ = "0.1.0"
