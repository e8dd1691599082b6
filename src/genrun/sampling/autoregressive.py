"""Raster-order sampling of an autoregressive image model (PixelCNN over pixels, a prior over code grids),
kept apart from the network: the net maps a partly drawn grid to logits for every position, and this loop
draws position after position, row by row, channel by channel within a pixel (R, G, B, as van den Oord
et al. order them). This form runs the whole net once per position; reusing work between positions is
the net's business (a cache it keeps), not the loop's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genrun.sampling.filters import next_token


@torch.no_grad()
def sample_raster(logits_of: Callable[[torch.Tensor], torch.Tensor], shape: tuple[int, int, int, int],
                  temperature: float = 1.0, generator: torch.Generator | None = None,
                  start: torch.Tensor | None = None, first_row: int = 0,
                  on_row: Callable[[int], None] | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Integer grids B×C×H×W drawn in raster order; `logits_of(grid)` returns B×K×C×H×W logits.

    `start` with `first_row` keeps the rows above `first_row` (completion of a given top half); temperature
    0 takes the arg max at every position (deterministic). `on_row(i)` is called after each row (progress).
    """
    b, c, h, w = shape
    grid = torch.zeros(shape, dtype=torch.long, device=device) if start is None else start.clone().to(device)
    for i in range(first_row, h):
        for j in range(w):
            for k in range(c):
                logits = logits_of(grid)[:, :, k, i, j]
                grid[:, k, i, j] = next_token(logits.float(), temperature, None, None, generator)
        if on_row is not None:
            on_row(i)
    return grid
