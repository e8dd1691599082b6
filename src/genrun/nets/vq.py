"""VQ-VAE (van den Oord et al. 2017): a conv encoder to a grid of vectors, each replaced by its nearest
codebook entry, and a conv decoder from the quantized grid.

The quantizer passes gradients straight through (the decoder's gradient at the quantized vector is used as
the encoder's), pulls encoder outputs towards their codes with the commitment loss (beta, 0.25 in the
paper), and learns the codebook either by exponential moving averages of the vectors assigned to each code
(the paper's appendix; the default) or by the codebook loss. A code that no vector has chosen for a while
(its moving-average count below `restart_threshold`) is restarted at an encoder output of the current batch
(Dhariwal et al. 2020, Jukebox), drawn k-means++-style away from the codes already there, so the whole
codebook stays in use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genrun.nets.autoencoder import LIKELIHOODS
from genrun.nets.base import Net
from genrun.nets.checks import require_positive

UPDATES = ("ema", "loss")


@dataclass
class Quantized:
    """What the quantizer returns for a grid of encoder outputs z (N×D×H×W)."""

    st: torch.Tensor  # the quantized grid, with the straight-through gradient to z
    codes: torch.Tensor  # N×H×W code indices
    commitment: torch.Tensor  # mean ||z − sg[e]||² (times beta in the loss)
    codebook_loss: torch.Tensor  # mean ||sg[z] − e||² (zero when the codebook learns by moving averages)
    counts: torch.Tensor  # K: how many vectors chose each code


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


class VectorQuantizer(nn.Module):
    """K codes of dimension D: nearest-code assignment, straight-through gradients, EMA or loss-learnt codebook,
    dead-code restarts. Updates (moving averages, restarts) happen only in training mode."""

    def __init__(self, codebook_size: int, code_dim: int, update: str = "ema", decay: float = 0.99,
                 eps: float = 1e-5, restart_threshold: float = 1.0):
        super().__init__()
        if update not in UPDATES:
            raise ValueError(f"codebook_update {update!r}: choose ema or loss")
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.size, self.dim, self.update = int(codebook_size), int(code_dim), update
        self.decay, self.eps, self.restart_threshold = float(decay), float(eps), float(restart_threshold)
        init = torch.empty(self.size, self.dim).uniform_(-1.0 / self.size, 1.0 / self.size)
        if update == "ema":
            self.register_buffer("codebook", init)
            # One pseudo-vector at each initial code: an unused code stays where it is instead of dividing by 0.
            self.register_buffer("cluster_size", torch.ones(self.size))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # Moving average of each code's count per batch, in both modes: what finds dead codes. It starts at
        # the threshold, so a code is restarted only after batches that did not choose it.
        self.register_buffer("usage", torch.full((self.size,), self.restart_threshold))

    def assign(self, flat: torch.Tensor) -> torch.Tensor:
        """The nearest code of each row of `flat` (M×D), by squared Euclidean distance."""
        book = self.codebook.detach()
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None]
        return distances.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code indices (N×H×W) → their vectors as a grid (N×D×H×W)."""
        return F.embedding(codes, self.codebook).permute(0, 3, 1, 2).contiguous()

    def forward(self, z: torch.Tensor) -> Quantized:
        n, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        codes = self.assign(flat.detach())
        counts = torch.bincount(codes, minlength=self.size).to(flat.dtype)
        quantized = self.lookup(codes.view(n, h, w))  # the codebook the codes were chosen from
        if self.training:
            self._learn(flat.detach(), codes, counts)
        commitment = F.mse_loss(z, quantized.detach())
        codebook_loss = F.mse_loss(quantized, z.detach()) if self.update == "loss" else z.new_zeros(())
        st = z + (quantized - z).detach()
        return Quantized(st, codes.view(n, h, w), commitment, codebook_loss, counts)

    @torch.no_grad()
    def _learn(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros(self.size, self.dim, dtype=flat.dtype, device=flat.device).index_add_(0, codes, flat)
        if _distributed():  # every rank moves the codebook by the same, global statistics
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.usage.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.update == "ema":
            self.ema_update(counts, sums)
        if self.restart_threshold > 0:
            self.restart_dead(flat)

    @torch.no_grad()
    def ema_update(self, counts: torch.Tensor, sums: torch.Tensor) -> None:
        """N_k ← γN_k + (1−γ)n_k, m_k ← γm_k + (1−γ)Σz, e_k ← m_k / N_k (N_k Laplace-smoothed)."""
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor) -> torch.Tensor:
        """Move every code whose usage fell below the threshold to an encoder output of this batch (see
        restart_picks); returns the restarted indices."""
        dead = (self.usage < self.restart_threshold).nonzero().squeeze(1)
        if len(dead) == 0:
            return dead
        fresh = flat[self.restart_picks(flat, len(dead))].clone()
        if _distributed():  # the same restarts on every rank
            torch.distributed.broadcast(fresh, 0)
        self.codebook.data[dead] = fresh
        self.usage[dead] = self.restart_threshold
        if self.update == "ema":
            self.cluster_size[dead] = 1.0
            self.embed_sum[dead] = fresh
        return dead


    def restart_picks(self, flat: torch.Tensor, count: int) -> torch.Tensor:
        """Rows of `flat` for `count` restarts, drawn in proportion to their squared distance from the nearest
        code (k-means++ seeding): a restart lands where the codebook is thin. Drawn uniformly it would mostly
        land on the batch's commonest vector (a digit's blank background), which a code already holds: a tie
        the restarted code never wins."""
        book = self.codebook.detach()
        nearest = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None]).min(1).values
        weights = nearest.clamp_min(0)
        if int((weights > 0).sum()) < count:  # too few uncovered vectors: any vector will do
            weights = torch.ones_like(weights)
        return torch.multinomial(weights, count, replacement=count > len(flat))


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of the code histogram: K when every code is used equally, 1 when one code takes all."""
    p = counts.float() / counts.sum().clamp_min(1)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


def fraction_used(counts: torch.Tensor) -> float:
    return float((counts > 0).float().mean())


class ResidualStack(nn.Sequential):
    """The paper's residual blocks: ReLU, 3x3 conv, ReLU, 1x1 conv, added to the input; a ReLU after."""

    def __init__(self, width: int, blocks: int):
        super().__init__(*[_Residual(width) for _ in range(blocks)], nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VQVAE(Net):
    """Images → a grid of codes (image_size / 2^downsamples on a side) → images.

    `forward(x)` gives the decoder's output and the quantizer's losses and counts; `codes(x)` and
    `decode_codes(codes)` are the two halves the prior over codes uses. `encode(x)` / `decode(z)` /
    `latent_dim` are the vector-latent interface of genrun's autoencoders (the flattened pre-quantization
    grid; decoding quantizes first), so a VQ-VAE run can serve latent diffusion.
    """

    def __init__(self, channels: int, image_size: int, codebook_size: int = 64, code_dim: int = 32,
                 width: int = 32, downsamples: int = 2, res_blocks: int = 2, codebook_update: str = "ema",
                 decay: float = 0.99, restart_threshold: float = 1.0, likelihood: str = "bernoulli"):
        super().__init__()
        require_positive(codebook_size=codebook_size, code_dim=code_dim, width=width, downsamples=downsamples)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood {likelihood!r}: choose one of {', '.join(LIKELIHOODS)}")
        if int(image_size) % 2 ** int(downsamples):
            raise ValueError(f"image_size {image_size} cannot be halved downsamples={downsamples} times")
        self.image_shape = (int(channels), int(image_size), int(image_size))
        side = int(image_size) // 2 ** int(downsamples)
        self.grid = (side, side)
        self.likelihood = likelihood
        layers: list[nn.Module] = []
        c_in = int(channels)
        for _ in range(int(downsamples)):
            layers += [nn.Conv2d(c_in, width, 4, 2, 1), nn.ReLU()]
            c_in = width
        self.encoder = nn.Sequential(*layers, nn.Conv2d(width, width, 3, padding=1),
                                     ResidualStack(width, int(res_blocks)), nn.Conv2d(width, code_dim, 1))
        self.quantizer = VectorQuantizer(codebook_size, code_dim, codebook_update, decay,
                                         restart_threshold=restart_threshold)
        up: list[nn.Module] = []
        for i in range(int(downsamples)):
            last = i == int(downsamples) - 1
            up += [nn.ConvTranspose2d(width, int(channels) if last else width, 4, 2, 1)]
            up += [] if last else [nn.ReLU()]
        self.decoder = nn.Sequential(nn.Conv2d(code_dim, width, 3, padding=1), ResidualStack(width, int(res_blocks)),
                                     *up)

    @property
    def codebook_size(self) -> int:
        return self.quantizer.size

    @property
    def latent_dim(self) -> int:
        return self.quantizer.dim * math.prod(self.grid)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        q = self.quantizer(self.encoder(x))
        return self.decoder(q.st), q

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """Code indices N×H×W of images (never updates the codebook)."""
        return self.codes_of_grid(self.encoder(x))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer.lookup(codes))

    def recon_loss(self, x: torch.Tensor, decoded: torch.Tensor) -> torch.Tensor:
        """Per image, mean over pixels: binary cross-entropy (bernoulli) or squared error (gaussian)."""
        if self.likelihood == "bernoulli":
            return F.binary_cross_entropy_with_logits(decoded, x, reduction="none").flatten(1).mean(1)
        return (decoded - x).pow(2).flatten(1).mean(1)

    def mean_image(self, decoded: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(decoded) if self.likelihood == "bernoulli" else decoded.clamp(0.0, 1.0)

    # --- the vector-latent interface of genrun's autoencoders (latent diffusion) ---------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.encoder(x).flatten(1), None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        grid = z.view(len(z), self.quantizer.dim, *self.grid)
        return self.decoder(self.quantizer.lookup(self.codes_of_grid(grid)))

    def codes_of_grid(self, z: torch.Tensor) -> torch.Tensor:
        """The nearest code of every vector of a grid N×D×H×W."""
        n, d, h, w = z.shape
        return self.quantizer.assign(z.permute(0, 2, 3, 1).reshape(-1, d)).view(n, h, w)
