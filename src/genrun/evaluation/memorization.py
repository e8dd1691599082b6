"""Memorization: are samples closer to the training images than unseen test images are?

Distances are Euclidean in pixel space, as in Goodfellow et al. 2014's nearest-neighbour figures. A model
that copies its training data gives samples at distance ~0; test images set the yardstick.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genrun.images import interleave_rows, save_grid

# A sample is a near-copy when it is closer to a training image than all but 1% of test images are.
COPY_QUANTILE = 0.01
# Flag memorization when near-copies are ten times more common than among test images.
COPY_FLAG_FRACTION = 0.1


def nearest(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query's nearest reference image."""
    q, r = queries.flatten(1).double(), reference.flatten(1).double()
    dists, index = [], []
    for start in range(0, len(q), chunk):
        d, i = torch.cdist(q[start : start + chunk], r).min(1)
        dists.append(d)
        index.append(i)
    return torch.cat(dists), torch.cat(index)


def memorization(samples: torch.Tensor, train: torch.Tensor, test: torch.Tensor
                 ) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
    """Metrics, and each sample's nearest-training-image distance and index."""
    sample_d, sample_i = nearest(samples, train)
    test_d, _ = nearest(test, train)
    threshold = torch.quantile(test_d, COPY_QUANTILE)
    copies = (sample_d < threshold).double().mean().item()
    metrics = {
        "eval/nn_dist_sample_median": sample_d.median().item(),
        "eval/nn_dist_test_median": test_d.median().item(),
        "eval/memorization_ratio": (sample_d.median() / test_d.median().clamp_min(1e-12)).item(),
        "eval/near_copy_fraction": copies,
        "eval/memorization_flag": float(copies > COPY_FLAG_FRACTION),
    }
    return metrics, sample_d, sample_i


def nearest_neighbour_grid(samples: torch.Tensor, train: torch.Tensor, dists: torch.Tensor, index: torch.Tensor,
                           path: Path, per_row: int = 8) -> Path:
    """Rows of samples, each above their nearest training images: first the `per_row` samples closest to
    the training set (the likeliest copies), then `per_row` samples as drawn."""
    closest = dists.argsort()[:per_row]
    drawn = torch.arange(min(per_row, len(samples)))
    chosen = torch.cat([closest, drawn])
    return save_grid(interleave_rows(samples[chosen], train[index[chosen]], per_row), path, nrow=per_row)
