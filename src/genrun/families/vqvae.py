"""VQ-VAE inference: reconstructions of test images and their error, codebook use, and the image metrics of
reconstructions. A VQ-VAE has no prior of its own: new images come from `model=vq_prior` trained on its codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genrun.families import autoencoder
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow
from genrun.nets.vq import VQVAE, fraction_used, perplexity
from genrun.pipeline import Pipeline, knob
from genrun.progress import track
from genrun.streaming import BATCH

MODES = ("reconstruct",)


@dataclass(frozen=True)
class VQVAEKnobs:
    nrow: int | None = knob(None, "test images per row of the picture, each row above its reconstructions (8)")

    def check(self) -> None:
        check_nrow(self.nrow)


@torch.no_grad()
def reconstruction_metrics(net: VQVAE, x: torch.Tensor, batch_size: int = 250) -> dict[str, float]:
    """Reconstruction error of `x` (the training loss per pixel, and squared error of the shown image) and how
    much of the codebook its codes use."""
    recon = squared = 0.0
    counts = torch.zeros(net.codebook_size)
    starts = range(0, len(x), batch_size)
    for start in track(starts, f"reconstructing {len(x)} images", total=len(starts)):
        batch = x[start : start + batch_size].float()
        decoded, q = net(batch)
        recon += float(net.recon_loss(batch, decoded).sum())
        squared += float((net.mean_image(decoded) - batch).pow(2).flatten(1).mean(1).sum())
        counts += q.counts.cpu()
    n = max(1, len(x))
    return {"test/recon": recon / n, "test/recon_mse": squared / n, "test/perplexity": perplexity(counts),
            "test/codes_used": fraction_used(counts), "test/n_images": float(len(x))}


class VQVAEPipeline(Pipeline):
    """A trained VQ-VAE (its `net`): reconstructions and their quality."""

    components = ("net",)
    modes = MODES
    Knobs = VQVAEKnobs

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        check_mode(request, MODES, "vqvae")
        return autoencoder.sample(self.net, request, context)  # the autoencoders' mode=reconstruct, as it is

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        """Reconstruction error and codebook use on the test split; with settings['image_metrics'] also the
        sample-quality report of reconstructions of test images (rFID: the decoder's quality, not a prior's)."""
        net = self.net.to(context.device).eval()
        x = context.load_split("test")[0]
        metrics = {}
        if context.settings.get("image_metrics", False):
            from genrun.evaluation.image_quality import evaluate_images

            def generate(n: int, generator: torch.Generator) -> torch.Tensor:
                picks = torch.randint(len(x), (n,), generator=generator)
                return torch.cat([self.reconstruct(x[picks[s : s + BATCH]].to(context.device)).cpu()
                                  for s in range(0, n, BATCH)])

            metrics = evaluate_images(generate, context)
        batch_size = int(context.settings.get("batch_size", 250))
        return reconstruction_metrics(net, x.to(context.device), batch_size) | metrics

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.mean_image(self.net.decode_codes(self.net.codes(x.float())))

    @torch.no_grad()
    def reconstruction_pairs(self, x: torch.Tensor, nrow: int = 8) -> torch.Tensor:
        from genrun.images import interleave_rows

        return interleave_rows(x, self.reconstruct(x), nrow)
