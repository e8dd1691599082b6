"""The raster-order sampler, against a toy causal model whose every draw is known."""

from __future__ import annotations

import torch

from genrun.sampling.autoregressive import sample_raster

K = 5


def count_up(grid: torch.Tensor) -> torch.Tensor:
    """Logits B×K×C×H×W: each position (raster order, channels innermost) predicts the previous one plus 1."""
    b, c, h, w = grid.shape
    flat = grid.permute(0, 2, 3, 1).reshape(b, -1)  # row, column, channel: the sampling order
    previous = torch.cat([torch.zeros(b, 1, dtype=torch.long), flat[:, :-1]], 1)
    logits = torch.nn.functional.one_hot((previous + 1) % K, K).float() * 20
    return logits.reshape(b, h, w, c, K).permute(0, 4, 3, 1, 2)


def test_positions_are_drawn_in_raster_order_channel_by_channel():
    rows = []
    grid = sample_raster(count_up, (2, 3, 4, 4), temperature=0, on_row=rows.append)
    order = torch.arange(3 * 4 * 4).reshape(4, 4, 3).permute(2, 0, 1)  # position index of (c, i, j)
    assert torch.equal(grid[0], (order + 1) % K) and torch.equal(grid[1], grid[0])
    assert rows == [0, 1, 2, 3]


def test_completion_keeps_the_given_rows_and_a_seed_repeats_the_draw():
    start = torch.full((1, 1, 4, 4), 2, dtype=torch.long)
    completed = sample_raster(count_up, (1, 1, 4, 4), temperature=0, start=start, first_row=2)
    assert torch.equal(completed[0, 0, :2], start[0, 0, :2])
    assert completed[0, 0, 2, 0] == 3  # continues from the last given pixel
    noisy = [sample_raster(count_up, (1, 1, 4, 4), temperature=50.0, generator=torch.Generator().manual_seed(3))
             for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1]) and not torch.equal(noisy[0], sample_raster(count_up, (1, 1, 4, 4), 0))
