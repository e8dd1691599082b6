"""genrun: a command-line experiment runner for generative deep learning."""

__version__ = "0.1.0"
