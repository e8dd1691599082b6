"""Image grids as tensors without torchvision, so `genrun sample` starts fast (TensorBoard's image tab and the
streamed reconstruction layout); the titled, labelled PNG pictures are genrun.figures'."""

from __future__ import annotations

import math

import torch


def make_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0
              ) -> torch.Tensor:
    """B×C×H×W in [0, 1] → C×H'×W' tiled with `nrow` images per row (default: square-ish)."""
    images = images.detach().float().cpu().clamp(0, 1)
    if images.dim() == 3:
        images = images.unsqueeze(1)
    b, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(b)))
    rows = math.ceil(b / nrow)
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(b):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def interleave_rows(top: torch.Tensor, bottom: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """Images arranged so each row of `top` sits directly above the matching row of `bottom`."""
    rows = []
    for start in range(0, len(top), nrow):
        rows += [top[start : start + nrow], bottom[start : start + nrow]]
    return torch.cat(rows, 0)
