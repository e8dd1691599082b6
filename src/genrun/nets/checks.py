"""Size arguments checked where a net is built, so a zero or negative size fails before training.

A zero-width layer builds and even trains (an empty latent has no KL), and only sampling fails, after
the whole run. The message names the argument as the config does, so the CLI can name the knob.
"""

from __future__ import annotations


def require_positive(**sizes) -> None:
    """Raise ValueError naming the first size (an int, or a list of ints) below 1."""
    for name, value in sizes.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(int(v) < 1 for v in values):
            raise ValueError(f"{name} must be at least 1, got {value}")
