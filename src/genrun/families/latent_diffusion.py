"""Latent diffusion (Rombach et al. 2022, Stable Diffusion's recipe at digit scale): the DDPM chain, its
samplers and guidance, run in the latent space of a trained autoencoder that stays frozen.

The autoencoder is another run's checkpoint, recorded as a frozen reference (path and content digest), so a
latent-diffusion checkpoint samples only with the very autoencoder it was trained on. Its latents are
scaled to unit spread before diffusion (`latent_scale`, measured from training data and recorded: Stable
Diffusion's 0.18215 is this number for its VAE), and decoded back to images at the end of the chain.
genrun's autoencoders have vector latents, so the denoiser is a residual MLP with the U-Net's sinusoidal
time embedding and class embedding, rather than a U-Net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genrun.errors import GenrunError
from genrun.families.diffusion import DiffusionPipeline, timestep_embedding
from genrun.nets.base import Net
from genrun.nets.checks import require_positive


class ResidualMLPBlock(nn.Module):
    """LayerNorm, SiLU, linear plus the time (and class) embedding, SiLU, linear; residual."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm, self.inner, self.emb = nn.LayerNorm(width), nn.Linear(width, width), nn.Linear(width, width)
        self.outer, self.dropout = nn.Linear(width, width), nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        inner = self.inner(F.silu(self.norm(h))) + self.emb(emb)
        return h + self.outer(self.dropout(F.silu(inner)))


class LatentDenoiser(Net):
    """Predicts the noise (or x0, or v) of a noised latent vector at timestep t, optionally for a class
    (index `num_classes` is "no label", for classifier-free guidance). The same interface as the U-Net."""

    def __init__(self, latent_dim: int, width: int = 256, depth: int = 4, num_classes: int = 0,
                 dropout: float = 0.0):
        super().__init__()
        require_positive(latent_dim=latent_dim, width=width, depth=depth)
        self.latent_dim, self.width, self.num_classes = int(latent_dim), int(width), int(num_classes)
        self.time = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.classes = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.inp = nn.Linear(latent_dim, width)
        self.blocks = nn.ModuleList(ResidualMLPBlock(width, dropout) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, latent_dim))
        nn.init.zeros_(self.out[-1].weight)  # starts by predicting zero: the loss begins at the noise's variance
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.width))
        if self.classes is not None:
            if labels is None:
                labels = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.classes(labels)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)


class LatentDiffusionPipeline(DiffusionPipeline):
    """A denoiser over scaled latents and the frozen autoencoder that decodes them (its `net`)."""

    components = ("denoiser", "autoencoder")

    @property
    def unet(self) -> LatentDenoiser:  # the network DiffusionPipeline's chain calls
        return self.parts["denoiser"]

    @property
    def scale(self) -> float:
        return float(self.settings.get("latent_scale", 1.0))

    def _noise(self, n: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        return torch.randn((n, self.unet.latent_dim), generator=generator) * temperature

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        net = self.autoencoder
        return net.mean_image(net.decode(x / self.scale)).clamp(0, 1)

    def to_chain(self, images: torch.Tensor) -> torch.Tensor:
        return encode_latents(self.autoencoder, images) * self.scale

    def likelihood(self, images: torch.Tensor) -> dict[str, float]:
        raise GenrunError("vlb_images: a latent model's bound is on its latents, not on images; the image "
                          "likelihood needs the autoencoder's too (use genrun evaluate on the autoencoder run)")


@torch.no_grad()
def encode_latents(autoencoder: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The encoder's mean latent of each image (deterministic: the chain learns the latents' distribution,
    and the VAE's own posterior noise would only blur it)."""
    mean, _log_var = autoencoder.encode(images)
    return mean
