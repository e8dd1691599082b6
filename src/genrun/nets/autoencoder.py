"""Autoencoder networks: deterministic or variational, MLP or convolutional, Bernoulli or Gaussian pixels."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from genrun.nets.base import Net
from genrun.nets.checks import require_positive
from genrun.nets.conv import ConvDecoder, ConvEncoder
from genrun.nets.mlp import mlp

LIKELIHOODS = ("bernoulli", "gaussian")


class Autoencoder(Net):
    """encode(x) → (mean, log-variance or None); decode(z) → pixel parameters (logits or means).

    `prior_mean`/`prior_std` are the latent distribution to sample from: N(0, I) for a VAE; for a plain
    autoencoder, a diagonal Gaussian fitted to the training codes (it has no prior of its own).
    """

    def __init__(self, channels: int, image_size: int, latent_dim: int = 20, arch: str = "mlp",
                 hidden_dims: list[int] = (400,), conv_width: int = 32, variational: bool = True,
                 likelihood: str = "bernoulli", activation: str = "relu"):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r}: choose one of {', '.join(LIKELIHOODS)}")
        if arch not in ("mlp", "conv"):
            raise ValueError(f"arch {arch!r}: choose mlp or conv")
        require_positive(latent_dim=latent_dim, hidden_dims=list(hidden_dims), conv_width=conv_width)
        self.image_shape = (int(channels), int(image_size), int(image_size))
        self.latent_dim, self.variational, self.likelihood = int(latent_dim), bool(variational), likelihood
        n_pixels = math.prod(self.image_shape)
        code = 2 * self.latent_dim if self.variational else self.latent_dim
        hidden = [int(h) for h in hidden_dims]
        if arch == "mlp":
            self.encoder = nn.Sequential(nn.Flatten(), mlp([n_pixels, *hidden, code], activation))
            self.decoder = nn.Sequential(mlp([self.latent_dim, *hidden[::-1], n_pixels], activation),
                                         nn.Unflatten(1, self.image_shape))
        else:
            self.encoder = ConvEncoder(channels, image_size, code, width=conv_width)
            self.decoder = ConvDecoder(self.latent_dim, channels, image_size, width=conv_width)
        if likelihood == "gaussian":
            # One learned noise scale for all pixels keeps the likelihood a proper density (in nats).
            self.log_scale = nn.Parameter(torch.tensor(-1.0))
        self.register_buffer("prior_mean", torch.zeros(self.latent_dim))
        self.register_buffer("prior_std", torch.ones(self.latent_dim))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.encoder(x)
        if not self.variational:
            return h, None
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def log_likelihood(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image, summed over pixels, in nats."""
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(decoded, x, reduction="none").flatten(1).sum(1)
        scale = self.log_scale.exp()
        log_density = -0.5 * ((x - decoded) / scale) ** 2 - self.log_scale - 0.5 * math.log(2 * math.pi)
        return log_density.flatten(1).sum(1)

    def negative_log_likelihood_sum(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """−log p(x | z) summed over the batch and its pixels: `log_likelihood`'s total, without the per-image
        tensor a training step does not need."""
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(decoded, x, reduction="sum")
        return -self.log_likelihood(x, decoded).sum()

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        """What to show: the decoder's expected pixel values in [0, 1]."""
        return torch.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded.clamp(0.0, 1.0)

    def sample_latents(self, n: int, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        # Noise is drawn where the generator lives (CPU by default), so a seed gives the same samples
        # on every device.
        device = generator.device if generator is not None else self.prior_mean.device
        noise = torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.prior_mean.device)
        return self.prior_mean + temperature * self.prior_std * noise
