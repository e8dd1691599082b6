"""Raster-order sampling of a PixelCNN (pixels, or a prior's code grid), apart from the network.

Positions are drawn row by row, left to right, channels in order within a pixel (R, G, B). Two ways,
giving the same draws under the same seed (the random numbers are taken in the same order):

- `cached` (default): the net's RasterState computes each row of the vertical stack once, from the rows
  above, and then one column of the horizontal stack per pixel from the columns to its left, so drawing
  an image costs about one forward pass instead of one per pixel;
- `naive`: the whole net runs once per position (H·W·C passes), kept as the benchmark's reference.

Given positions (`known`, with their values in `start`) are kept: completing the bottom half of an image
conditions on its top half. Images are drawn `batch_size` at a time, so memory does not grow with the count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

import torch

from genrun.errors import GenrunError
from genrun.progress import bar
from genrun.sampling.filters import next_token
from genrun.sampling.threads import one_cpu_thread

METHODS = ("cached", "naive")


def draw(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """One value per row of N×K logits (temperature 0: the arg max), drawn where the generator lives."""
    if generator is not None and generator.device != logits.device:
        return next_token(logits.float().to(generator.device), temperature, None, None, generator).to(logits.device)
    return next_token(logits.float(), temperature, None, None, generator)


@torch.no_grad()
def _fill(net, grid: torch.Tensor, labels: torch.Tensor | None, keep: torch.Tensor | None, temperature: float,
          generator: torch.Generator | None, method: str, on_row) -> torch.Tensor:
    """Draw every position of `grid` (in place) that `keep` does not mark as given."""
    _n, channels, height, width = grid.shape
    todo = torch.ones(channels, height, width, dtype=torch.bool) if keep is None else ~keep.all(0).cpu()
    todo_rows = todo.any(2).any(0).tolist()
    todo = todo.tolist()
    state = net.raster_state(grid, labels) if method == "cached" else None
    # The cached path's steps are small (a row, a column): extra CPU threads cost more than they save.
    with one_cpu_thread(grid.device) if state is not None else nullcontext():
        for i in range(height):
            if state is not None:
                state.begin_row(i)  # the vertical stack reads only rows above: every row, given or not
            if todo_rows[i]:
                _fill_row(net, state, grid, labels, keep, todo, i, temperature, generator)
            if on_row is not None:
                on_row()
    return grid


def _fill_row(net, state, grid: torch.Tensor, labels: torch.Tensor | None, keep: torch.Tensor | None,
              todo: list, i: int, temperature: float, generator: torch.Generator | None) -> None:
    """Draw the positions of row i left to right, channels in order: from the cached state, or a whole pass each."""
    _n, channels, _height, width = grid.shape
    for j in range(width):
        for c in range(channels):
            if not todo[c][i][j]:
                continue
            logits = state.logits_at(i, j)[:, :, c] if state is not None else net(grid, labels)[:, :, c, i, j]
            drawn = draw(logits, temperature, generator)
            grid[:, c, i, j] = drawn if keep is None else torch.where(keep[:, c, i, j], grid[:, c, i, j], drawn)


def sample_batches(net, shape: tuple[int, int, int, int], temperature: float = 1.0,
                   generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                   known: torch.Tensor | None = None, start: torch.Tensor | None = None, batch_size: int = 64,
                   method: str = "cached", description: str = "drawing pixels") -> Iterator[torch.Tensor]:
    """Integer grids (on the CPU) of `shape` N×C×H×W, `batch_size` at a time, in raster order.

    `labels` (N) condition a class-conditional net; `known` (bool, broadcastable to `shape`) marks positions
    whose values are taken from `start` instead of drawn. `net` is a GatedPixelCNN (or any net with its
    `forward(grid, labels)` and `raster_state`) on the device the grids should be drawn on.
    """
    if method not in METHODS:
        raise GenrunError(f"method={method}: choose {' or '.join(METHODS)}")
    if batch_size < 1:
        raise GenrunError(f"batch_size={batch_size}: must be at least 1")
    n, channels, height, width = shape
    if known is not None:
        if start is None:
            raise GenrunError("sampling with given positions (known) needs their values (start)")
        known = torch.broadcast_to(known.bool(), shape)
    device = next(net.parameters()).device
    batches = -(-n // batch_size)
    with bar(f"{description} ({n:,} images, {height} rows each)", batches * height) as shown:
        for first in range(0, n, batch_size):
            count = min(batch_size, n - first)
            grid = torch.zeros((count, channels, height, width), dtype=torch.long, device=device)
            keep = None
            if known is not None:
                keep = known[first : first + count].to(device)
                grid = torch.where(keep, start[first : first + count].long().to(device), grid)
            y = None if labels is None else labels[first : first + count].long().to(device)
            yield _fill(net, grid, y, keep, temperature, generator, method, shown.advance).cpu()


def sample(net, shape: tuple[int, int, int, int], temperature: float = 1.0, generator: torch.Generator | None = None,
           labels: torch.Tensor | None = None, known: torch.Tensor | None = None, start: torch.Tensor | None = None,
           batch_size: int = 64, method: str = "cached", description: str = "drawing pixels") -> torch.Tensor:
    """All of `sample_batches` as one N×C×H×W integer tensor on the CPU."""
    return torch.cat(list(sample_batches(net, shape, temperature, generator, labels, known, start, batch_size,
                                         method, description)))
