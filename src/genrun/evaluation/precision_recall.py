"""Improved precision and recall (Kynkäänniemi et al. 2019): k-nearest-neighbour manifolds in feature space.

Each set's manifold is the union of balls around its points, with radius the distance to the point's k-th
nearest neighbour in the same set. Precision: the share of samples inside the real manifold (quality);
recall: the share of real points inside the samples' manifold (diversity).

Every comparison of all points with all points runs in square blocks, so memory stays at a block however many
points there are; the time still grows with the product of the set sizes (see `knn_seconds`).
"""

from __future__ import annotations

import torch

from genrun.budget import timed
from genrun.progress import Bar, bar

BLOCK = 1024


def _blocks(n: int, block: int) -> int:
    return -(-n // block)


def knn_radii(x: torch.Tensor, k: int, block: int = BLOCK, shown: Bar | None = None) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row; `shown` advances once per block of rows."""
    radii = []
    for start in range(0, len(x), block):
        rows = x[start : start + block].double()
        nearest = None  # the k + 1 smallest distances so far; the point itself is among them, at distance 0
        for col in range(0, len(x), block):
            d = torch.cdist(rows, x[col : col + block].double())
            d = d if nearest is None else torch.cat([nearest, d], 1)
            nearest = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values
        radii.append(nearest[:, k])
        if shown is not None:
            shown.advance()
    return torch.cat(radii)


def inside_manifold(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int = BLOCK,
                    shown: Bar | None = None) -> torch.Tensor:
    """For each point, whether it lies within some centre's ball; `shown` advances once per block of points."""
    inside = []
    for start in range(0, len(points), block):
        rows = points[start : start + block].double()
        hit = torch.zeros(len(rows), dtype=torch.bool)
        for col in range(0, len(centres), block):
            d = torch.cdist(rows, centres[col : col + block].double())
            hit |= (d <= radii[col : col + block].unsqueeze(0)).any(1)
        inside.append(hit)
        if shown is not None:
            shown.advance()
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and fake points")
    total = 2 * (_blocks(len(real), BLOCK) + _blocks(len(fake), BLOCK))
    with bar(f"precision/recall: nearest neighbours among {len(real):,} + {len(fake):,} points", total) as shown:
        precision = inside_manifold(fake, real, knn_radii(real, k, shown=shown), shown=shown).double().mean().item()
        recall = inside_manifold(real, fake, knn_radii(fake, k, shown=shown), shown=shown).double().mean().item()
    return {"precision": precision, "recall": recall}


def knn_seconds(n_real: int, n_fake: int, dim: int) -> float:
    """Estimated time of `precision_recall` for these set sizes: every pair of points is compared once per
    radius and once per membership test, at the speed of one block timed here on random features."""
    pairs = (n_real + n_fake) ** 2
    if pairs <= 16 * BLOCK**2:
        return 0.0
    a, b = torch.randn(BLOCK, dim), torch.randn(BLOCK, dim)
    knn_radii(torch.cat([a, b]), 3)  # warm up
    _, seconds = timed(lambda: knn_radii(torch.cat([a, b]), 3))
    return pairs * seconds / (2 * BLOCK) ** 2
