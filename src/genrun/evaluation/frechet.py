"""The Fréchet distance between two sets of features, each summarised by a Gaussian (Heusel et al. 2017)."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = features.double().cpu().numpy()
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for N × D feature matrices."""
    mu_a, sigma_a = gaussian_stats(a)
    mu_b, sigma_b = gaussian_stats(b)
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
