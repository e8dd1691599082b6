"""The Fréchet distance between two sets of features, each summarised by a Gaussian (Heusel et al. 2017)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = features.double().cpu().numpy()
    return x.mean(0), np.cov(x, rowvar=False)


class GaussianStats:
    """Mean and covariance of features seen batch by batch, so the features need not be held.

    Sums are taken around the first batch's mean: sums of squares of raw features far from zero would lose
    the covariance to rounding.
    """

    def __init__(self):
        self.count, self.shift, self.total, self.outer = 0, None, None, None

    def update(self, features: torch.Tensor) -> None:
        x = features.double().cpu()
        if self.shift is None:
            self.shift = x.mean(0)
            self.total, self.outer = torch.zeros_like(self.shift), torch.zeros(len(self.shift), len(self.shift),
                                                                                dtype=torch.float64)
        centred = x - self.shift
        self.total += centred.sum(0)
        self.outer += centred.T @ centred
        self.count += len(x)

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / self.count
        cov = (self.outer - self.count * torch.outer(mean, mean)) / (self.count - 1)
        return (self.shift + mean).numpy(), cov.numpy()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for N × D feature matrices."""
    return frechet_from_stats(*gaussian_stats(a), *gaussian_stats(b))


def frechet_from_stats(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """The Fréchet distance between two Gaussians given by their means and covariances."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # A singular product (e.g. samples that are all alike) is legitimate here; its square root is fine.
        warnings.simplefilter("ignore")
        covmean = scipy.linalg.sqrtm(sigma_a @ sigma_b)
        if not np.isfinite(covmean).all():  # numerically troubled: regularise, as is customary
            eps = 1e-6 * np.eye(len(mu_a))
            covmean = scipy.linalg.sqrtm((sigma_a + eps) @ (sigma_b + eps))
    covmean = covmean.real  # tiny imaginary parts are numerical noise
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(covmean))
