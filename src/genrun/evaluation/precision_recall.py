"""Improved precision and recall (Kynkäänniemi et al. 2019): k-nearest-neighbour manifolds in feature space.

Each set's manifold is the union of balls around its points, with radius the distance to the point's k-th
nearest neighbour in the same set. Precision: the share of samples inside the real manifold (quality);
recall: the share of real points inside the samples' manifold (diversity).
"""

from __future__ import annotations

import torch


def knn_radii(x: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest other row."""
    radii = []
    for start in range(0, len(x), chunk):
        d = torch.cdist(x[start : start + chunk], x)
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the nearest is the point itself, at distance 0
    return torch.cat(radii)


def inside_manifold(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024
                    ) -> torch.Tensor:
    """For each point, whether it lies within some centre's ball."""
    inside = []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start : start + chunk], centres)
        inside.append((d <= radii.unsqueeze(0)).any(1))
    return torch.cat(inside)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> dict[str, float]:
    real, fake = real.double(), fake.double()
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} real and fake points")
    precision = inside_manifold(fake, real, knn_radii(real, k)).double().mean().item()
    recall = inside_manifold(real, fake, knn_radii(fake, k)).double().mean().item()
    return {"precision": precision, "recall": recall}
