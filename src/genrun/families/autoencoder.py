"""Autoencoder-family inference: prior samples, interpolation, reconstruction, IWAE likelihood."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genrun.families.base import (
    EvalContext,
    SampleContext,
    SampleRequest,
    check_mode,
    instantiate_net,
    load_weights,
)
from genrun.images import interleave_rows, save_grid
from genrun.metrics.likelihood import bits_per_dim, elbo_terms, iwae_nll
from genrun.nets.autoencoder import Autoencoder
from genrun.progress import track

MODES = ("prior", "interpolate", "reconstruct")


def build_net(run_config: dict, state_dict: dict) -> Autoencoder:
    return load_weights(instantiate_net(run_config["model"]["module"]["net"]), state_dict, "net.")


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016 for latent spaces), row by row."""
    a_n, b_n = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((a_n * b_n).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


def interpolate(a: torch.Tensor, b: torch.Tensor, steps: int, kind: str) -> torch.Tensor:
    """rows × steps × D points from each row of `a` to the same row of `b`, ends included."""
    t = torch.linspace(0, 1, steps, device=a.device).view(1, steps, 1)
    a, b = a.unsqueeze(1), b.unsqueeze(1)
    if kind == "linear":
        return a + t * (b - a)
    if kind == "slerp":
        return slerp(a.expand(-1, steps, -1), b.expand(-1, steps, -1), t.expand(a.shape[0], steps, 1))
    raise ValueError(kind)


def _random_rows(x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return x[torch.randperm(len(x), generator=generator)[:n]]


@torch.no_grad()
def sample(net: Autoencoder, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
    check_mode(request, MODES, "autoencoder")
    generator = request.generator()
    device = context.device
    net = net.to(device)
    out = context.out_dir
    if request.mode == "prior":
        z = net.sample_latents(request.num_samples, request.temperature, generator)
        images = net.mean_image(net.decode(z)).cpu()
        nrow = request.nrow
    elif request.mode == "reconstruct":
        x = _random_rows(context.load_split("test")[0], request.num_samples, generator).to(device)
        mean, _ = net.encode(x)
        nrow = request.nrow or 8
        images = interleave_rows(x, net.mean_image(net.decode(mean)), nrow).cpu()
    else:
        if request.interpolation not in ("linear", "slerp"):
            from genrun.errors import GenrunError

            raise GenrunError(f"interpolation={request.interpolation}: choose linear or slerp")
        steps = int(request.steps)
        rows = max(1, request.num_samples // steps)
        if request.between == "images":
            x = _random_rows(context.load_split("test")[0], 2 * rows, generator).to(device)
            codes = net.encode(x)[0]
            start, end = codes[:rows], codes[rows:]
        else:
            ends = net.sample_latents(2 * rows, request.temperature, generator)
            start, end = ends[:rows], ends[rows:]
        path = interpolate(start, end, steps, request.interpolation).flatten(0, 1)
        images = net.mean_image(net.decode(path)).cpu()
        nrow = steps
    grid = save_grid(images, out / "samples.png", nrow=nrow)
    tensor = out / "samples.pt"
    torch.save(images, tensor)
    return {"grid": grid, "tensor": tensor}


@torch.no_grad()
def likelihood_metrics(net: Autoencoder, x: torch.Tensor, k: int, batch_size: int = 250,
                       generator_seed: int = 0) -> dict[str, float]:
    """Negative ELBO (and its parts) and, for a VAE, the IWAE NLL, averaged over `x`; nats per image."""
    torch.manual_seed(generator_seed)
    totals = {"neg_elbo": 0.0, "recon": 0.0, "kl": 0.0, "nll_iwae": 0.0}
    starts = range(0, len(x), batch_size)
    for start in track(starts, f"likelihood on {len(x)} images", total=len(starts)):
        batch = x[start : start + batch_size]
        terms = elbo_terms(net, batch)
        for name in ("neg_elbo", "recon", "kl"):
            totals[name] += terms[name].item() * len(batch)
        if net.variational and k > 0:
            totals["nll_iwae"] += iwae_nll(net, batch, k=k).sum().item()
    metrics = {f"test/{name}": value / len(x) for name, value in totals.items()}
    dims = math.prod(x.shape[1:])
    if net.variational and k > 0:
        metrics["test/bits_per_dim"] = bits_per_dim(metrics["test/nll_iwae"], dims)
        metrics["test/iwae_k"] = k
    else:
        metrics.pop("test/nll_iwae")
    metrics["test/n_images"] = len(x)
    return metrics


def evaluate(net: Autoencoder, context: EvalContext) -> dict[str, float]:
    """Test likelihood; with settings['image_metrics'] (genrun evaluate's default) also the sample-quality
    report of prior samples at settings['temperature']."""
    x = context.load_split("test")[0].to(context.device)
    net = net.to(context.device)
    metrics = likelihood_metrics(net, x, k=int(context.settings.get("iwae_k", 100)),
                                 batch_size=int(context.settings.get("batch_size", 250)))
    if context.settings.get("image_metrics", False):
        from genrun.evaluation.image_quality import evaluate_images

        temperature = float(context.settings.get("temperature", 1.0))

        def generate(n: int, generator: torch.Generator) -> torch.Tensor:
            z = net.sample_latents(n, temperature, generator)
            return torch.cat([net.mean_image(net.decode(z[s : s + 500])).cpu() for s in range(0, n, 500)])

        metrics |= evaluate_images(generate, context)
    return metrics
