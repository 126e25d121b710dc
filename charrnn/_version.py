"""The version of charrnn: a leaf module, read by the package and by what writes checkpoints."""

__version__ = "0.2.0.dev0"
