"""Memorization: are samples closer to the training images than unseen test images are?

Distances are Euclidean in pixel space, as in Goodfellow et al. 2014's nearest-neighbour figures. A model
that copies its training data gives samples at distance ~0; test images set the yardstick.

Samples are measured batch by batch (`NearestTraining`): only one distance per sample is kept, and the few
samples the picture shows.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genrun import figures
from genrun.progress import track

# A sample is a near-copy when it is closer to a training image than all but 1% of test images are.
COPY_QUANTILE = 0.01
# Flag memorization when near-copies are ten times more common than among test images.
COPY_FLAG_FRACTION = 0.1
# Samples in each part of the picture: the closest to the training set, then the first drawn.
PER_ROW = 8
# (sample, nearest training image) pairs side by side in one row of the picture.
PAIRS_PER_ROW = 4


def nearest(queries: torch.Tensor, reference: torch.Tensor, chunk: int = 512, description: str | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query's nearest reference image; with a `description`, on a progress bar."""
    q, r = queries.flatten(1).double(), reference.flatten(1).double()
    dists, index = [], []
    starts = range(0, len(q), chunk)
    for start in starts if description is None else track(starts, description):
        d, i = torch.cdist(q[start : start + chunk], r).min(1)
        dists.append(d)
        index.append(i)
    return torch.cat(dists), torch.cat(index)


class NearestTraining:
    """Each sample's distance to its nearest training image, fed batch by batch."""

    def __init__(self, train: torch.Tensor, per_row: int = PER_ROW):
        self.train, self.per_row = train, per_row
        self.reference = train.flatten(1).double()  # once, not once per batch
        self.dists: list[torch.Tensor] = []
        self.first: list[tuple[torch.Tensor, torch.Tensor]] = []  # (image, nearest index) of the first samples
        self.closest: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (distance, image, index)

    def update(self, samples: torch.Tensor) -> None:
        d, i = nearest(samples, self.reference)
        self.dists.append(d)
        wanted = self.per_row - sum(len(image) for image, _ in self.first)
        if wanted > 0:
            self.first.append((samples[:wanted].clone(), i[:wanted]))
        if self.closest is not None:
            d, samples, i = (torch.cat([a, b]) for a, b in zip(self.closest, (d, samples, i), strict=True))
        order = d.argsort()[: self.per_row]
        self.closest = (d[order], samples[order].clone(), i[order])

    def metrics(self, test: torch.Tensor) -> dict[str, float]:
        """Sample distances against those of `test` images (unseen in training) to the same training set."""
        sample_d = torch.cat(self.dists)
        test_d, _ = nearest(test, self.reference, description=f"nearest training images of {len(test):,} test images")
        threshold = torch.quantile(test_d, COPY_QUANTILE)
        copies = (sample_d < threshold).double().mean().item()
        return {
            "eval/nn_dist_sample_median": sample_d.median().item(),
            "eval/nn_dist_test_median": test_d.median().item(),
            "eval/memorization_ratio": (sample_d.median() / test_d.median().clamp_min(1e-12)).item(),
            "eval/near_copy_fraction": copies,
            "eval/memorization_flag": float(copies > COPY_FLAG_FRACTION),
        }

    def grid(self, path: Path) -> Path:
        """Each sample beside its nearest training image, the L2 distance between them written under the pair:
        first the samples closest to the training set (the likeliest copies), then samples as drawn."""
        first = torch.cat([image for image, _ in self.first])
        first_index = torch.cat([index for _, index in self.first])
        first_d = torch.cat(self.dists)[: len(first)]
        parts = [("closest", *self.closest), ("as drawn", first_d, first, first_index)]
        cells, captions, labels = [], [], []
        for name, distance, samples, index in parts:
            for start in range(0, len(samples), PAIRS_PER_ROW):
                row = range(start, min(start + PAIRS_PER_ROW, len(samples)))
                for i in row:
                    cells += [samples[i], self.train[int(index[i])]]
                    captions += ["", f"L2 {float(distance[i]):.2f}"]
                cells += [None, None] * (PAIRS_PER_ROW - len(row))
                captions += ["", ""] * (PAIRS_PER_ROW - len(row))
                labels.append(name if start == 0 else "")
        title = figures.headline(Path(path).parent, None, "samples (left) beside their nearest training images "
                                 "(right), L2 distance in pixel space")
        split_rows = [labels.index("as drawn")] if "as drawn" in labels else []
        return figures.save(figures.sheet(cells, 2 * PAIRS_PER_ROW, *title, row_labels=labels, captions=captions,
                                          col_labels=["sample", "nearest"] * PAIRS_PER_ROW,
                                          split_cols=range(2, 2 * PAIRS_PER_ROW, 2), split_rows=split_rows), path)
