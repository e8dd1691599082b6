"""Fréchet distance (Heusel et al. 2017) and kernel inception distance (Bińkowski et al. 2018) through
torchmetrics, on any feature network: genrun's domain classifier, or feature matrices given as they are.

torchmetrics sums the statistics in float64 and returns FID in the dtype of the features, so the feature
networks here return float64. With a feature network of its own it needs no torch-fidelity.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

# KID's unbiased estimate is averaged over random subsets (torch-fidelity's defaults); fewer samples than the
# subset size shrink the subset to all of them, and then one subset says everything.
KID_SUBSET_SIZE = 1000
KID_SUBSETS = 100


class GivenFeatures(nn.Module):
    """The feature network of features already computed: passes them through, in float64."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim  # torchmetrics reads it instead of pushing a dummy image through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def kid_plan(n_real: int, n_fake: int) -> tuple[int, int]:
    """(subset size, subsets) of KID for these counts: repeating a subset that holds every sample adds nothing."""
    size = min(KID_SUBSET_SIZE, n_real, n_fake)
    return size, 1 if size == n_real == n_fake else KID_SUBSETS


class FeatureDistances:
    """FID and (with `kid`) KID between two image sets as one feature network sees them, fed batch by batch.

    FID keeps running sums; KID keeps every feature vector (its kernel compares them pairwise).
    """

    def __init__(self, feature: nn.Module, seed: int = 0, kid: bool = True):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        self.seed = seed
        self.fid = FrechetInceptionDistance(feature=feature)
        self.kid = None
        if kid:
            with warnings.catch_warnings():  # its memory notice: genrun counts that memory before it starts
                warnings.simplefilter("ignore")
                self.kid = KernelInceptionDistance(feature=feature, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE)
        self.counts = {True: 0, False: 0}

    def to(self, device) -> FeatureDistances:
        for metric in (self.fid, self.kid):
            if metric is not None:
                metric.to(device)
        return self

    def update(self, images: torch.Tensor, real: bool) -> None:
        self.fid.update(images, real=real)
        if self.kid is not None:
            self.kid.update(images, real=real)
        self.counts[real] += len(images)

    def compute(self) -> dict[str, float]:
        """{'fid'} and, with KID, {'kid', 'kid_std', 'kid_subset_size', 'kid_subsets'}; KID's subsets are drawn
        from `seed`, leaving the caller's random streams as they were."""
        result = {"fid": float(self.fid.compute())}
        if self.kid is None:
            return result
        self.kid.subset_size, self.kid.subsets = kid_plan(self.counts[True], self.counts[False])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            kid, kid_std = self.kid.compute()
        return result | {"kid": float(kid), "kid_std": float(kid_std), "kid_subset_size": float(self.kid.subset_size),
                         "kid_subsets": float(self.kid.subsets)}


def feature_distances(a: torch.Tensor, b: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """FID and KID between two N × D feature matrices (`a` as the real set)."""
    distances = FeatureDistances(GivenFeatures(a.shape[1]), seed)
    distances.update(a, real=True)
    distances.update(b, real=False)
    return distances.compute()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for N × D feature matrices."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=GivenFeatures(a.shape[1]))
    fid.update(a, real=True)
    fid.update(b, real=False)
    return float(fid.compute())
