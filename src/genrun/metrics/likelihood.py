"""Evidence lower bound and the importance-weighted (IWAE) log-likelihood estimate, in nats per image."""

from __future__ import annotations

import math

import torch

from genrun.nets.autoencoder import Autoencoder

LOG_2 = math.log(2.0)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def elbo_terms(net: Autoencoder, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-batch means of the reconstruction NLL, the KL and the (β-weighted) loss.

    For a plain autoencoder the KL is zero and the loss is the reconstruction NLL alone. Every term is a
    batch total divided by the batch size: the same means as per-image values averaged, in fewer tensor ops
    (each one costs a small model's training step a few microseconds forward and back).
    """
    n = len(x)
    mean, logvar = net.encode(x)
    if logvar is None:
        z, kl = mean, torch.zeros((), device=x.device)
    else:
        std = (0.5 * logvar).exp()
        z = torch.addcmul(mean, torch.randn_like(mean), std)
        kl = 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - logvar).sum() / n
    decoded = net.decode(z)
    recon = net.negative_log_likelihood_sum(x, decoded) / n
    neg_elbo = recon + kl
    loss = neg_elbo if beta == 1.0 else recon + beta * kl
    return {"loss": loss, "recon": recon, "kl": kl, "neg_elbo": neg_elbo, "decoded": decoded, "codes": mean}


@torch.no_grad()
def iwae_nll(net: Autoencoder, x: torch.Tensor, k: int = 100, chunk: int = 25) -> torch.Tensor:
    """−log p(x) estimated with k importance samples from q(z|x) (Burda et al. 2015), per image.

    The bound tightens as k grows; k=1 is the negative ELBO (in expectation).
    """
    mean, logvar = net.encode(x)
    if logvar is None:
        raise ValueError("the IWAE bound needs a variational encoder")
    std = (0.5 * logvar).exp()
    log_weights = []
    for start in range(0, k, chunk):
        n = min(chunk, k - start)
        eps = torch.randn(n, *mean.shape, device=x.device)
        z = mean + std * eps                                   # n × B × D
        decoded = net.decode(z.flatten(0, 1))
        x_rep = x.unsqueeze(0).expand(n, *x.shape).flatten(0, 1)
        log_px_z = net.log_likelihood(x_rep, decoded).view(n, len(x))
        log_pz = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_qz = (-0.5 * eps.pow(2) - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_weights.append(log_px_z + log_pz - log_qz)
    weights = torch.cat(log_weights, 0)
    return -(torch.logsumexp(weights, 0) - math.log(k))


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    return nats_per_image / (dims * LOG_2)
