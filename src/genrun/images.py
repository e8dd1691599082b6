"""Image grids and PNG files without torchvision, so `genrun sample` starts fast."""

from __future__ import annotations

import math
from pathlib import Path

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


def save_png(image: torch.Tensor, path: Path) -> Path:
    """Write a C×H×W tensor in [0, 1] (C = 1 or 3) as an 8-bit PNG."""
    from PIL import Image

    array = image.mul(255).round().clamp(0, 255).to(torch.uint8)
    array = array[0] if array.shape[0] == 1 else array.permute(1, 2, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.numpy()).save(path)
    return path


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    return save_png(make_grid(images, nrow=nrow), path)


def interleave_rows(top: torch.Tensor, bottom: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """Images arranged so each row of `top` sits directly above the matching row of `bottom`."""
    rows = []
    for start in range(0, len(top), nrow):
        rows += [top[start : start + nrow], bottom[start : start + nrow]]
    return torch.cat(rows, 0)
