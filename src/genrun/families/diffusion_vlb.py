"""The variational bound of a pixel-space diffusion model in bits/dim (Ho et al. 2020, eq. 5): an upper bound
on the negative log-likelihood of 8-bit images, the figure DDPM papers report beside FID.

    L = KL(q(x_T|x_0) ‖ N(0, I))  +  Σ_{t>1} KL(q(x_{t−1}|x_t, x_0) ‖ p_θ(x_{t−1}|x_t))  −  log p_θ(x_0|x_1)

Every term of the sum is estimated with one draw of x_t per image (so T network calls per image); the
reverse steps use the posterior's own variance β̃_t, and the last step is a Gaussian of variance β_1
discretised to the 256 grey levels (bin edges at the outer levels extended to ±∞). Conditional models are
measured unconditionally (the dropped-label model), so figures compare across models.
"""

from __future__ import annotations

import math

import torch

from genrun.progress import track


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretised_gaussian_log_likelihood(x0: torch.Tensor, mean: torch.Tensor, variance: float) -> torch.Tensor:
    """log P(x0) per element, x0 on the 8-bit grid in [-1, 1], under N(mean, variance) binned at ±1/255."""
    std = math.sqrt(variance)
    upper = _standard_normal_cdf((x0 - mean + 1 / 255) / std)
    lower = _standard_normal_cdf((x0 - mean - 1 / 255) / std)
    probability = torch.where(x0 > 0.999, 1 - lower, torch.where(x0 < -0.999, upper, upper - lower))
    return probability.clamp_min(1e-12).log()


@torch.no_grad()
def variational_bound(pipeline, images: torch.Tensor, batch_size: int = 100, seed: int = 0) -> dict[str, float]:
    """Bits/dim (and nats per image) of the bound on `images` (in [0, 1]) under `pipeline`'s U-Net."""
    schedule, unet = pipeline.schedule, pipeline.unet
    device = next(unet.parameters()).device
    generator = torch.Generator().manual_seed(int(seed))
    alpha_bar = schedule.alphas_cumprod.to(torch.float64)
    steps = schedule.steps
    total_nats = 0.0
    n = len(images)
    batches = range(0, n, batch_size)
    for start in track(batches, f"variational bound on {n:,} images × {steps} steps", total=len(batches)):
        x0 = (images[start : start + batch_size].double().mul(255).round().div(255) * 2 - 1).cpu()
        per_image = torch.zeros(len(x0), dtype=torch.float64)
        a_last = alpha_bar[-1]
        prior = 0.5 * (a_last * x0**2 + (1 - a_last) - 1 - torch.log(1 - a_last))
        per_image += prior.flatten(1).sum(1)
        for t in range(steps):
            noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
            x_t = schedule.add_noise(x0, noise, t)
            out = unet(x_t.float().to(device), torch.full((len(x0),), t, device=device, dtype=torch.long))
            x0_hat = schedule.split(out.double().cpu(), x_t, t)[0]
            if t == 0:
                log_p = discretised_gaussian_log_likelihood(x0, x0_hat, float(schedule.betas[0]))
                per_image -= log_p.flatten(1).sum(1)
                continue
            a_t, a_s = alpha_bar[t], alpha_bar[t - 1]
            beta = 1 - a_t / a_s
            coefficient = a_s.sqrt() * beta / (1 - a_t)  # of x_0 in the posterior mean
            variance = beta * (1 - a_s) / (1 - a_t)
            per_image += (coefficient**2 * (x0 - x0_hat) ** 2 / (2 * variance)).flatten(1).sum(1)
        total_nats += float(per_image.sum())
    dims = images[0].numel()
    nats = total_nats / max(1, n)
    return {"test/vlb_bits_per_dim": nats / (dims * math.log(2)), "test/vlb_nats": nats, "test/vlb_images": float(n)}
