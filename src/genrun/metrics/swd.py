"""Sliced Wasserstein distance: a cheap, feature-free distance between two sets of samples.

GANs have no validation likelihood; SWD (used by Karras et al. 2018 on image pyramids) gives each epoch a
number that falls as samples approach the data, with fixed projections so epochs and runs compare.
"""

from __future__ import annotations

import torch


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, num_projections: int = 128, seed: int = 0) -> torch.Tensor:
    """Mean over random unit directions of the 1-D Wasserstein-1 distance between the projected sets."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], num_projections, generator=g).to(a.device)
    directions = directions / directions.norm(dim=0, keepdim=True)
    pa, _ = (a @ directions).sort(0)
    pb, _ = (b @ directions).sort(0)
    return (pa - pb).abs().mean()
