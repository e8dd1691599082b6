"""GAN-family inference without Lightning: prior samples (temperature, truncation, class rows),
latent interpolation, latent vector arithmetic, and evaluation (exact toy metrics, or the shared
image-quality report)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from genrun.errors import GenrunError
from genrun.families.base import (
    EvalContext,
    SampleContext,
    SampleRequest,
    check_mode,
    instantiate_net,
    load_weights,
)
from genrun.images import save_grid
from genrun.nets.gan import Generator

log = logging.getLogger(__name__)
MODES = ("prior", "interpolate", "arithmetic")
# Radford et al. 2015, §6.3: eight more results from the arithmetic's latent plus U(-0.25, 0.25) noise.
ARITHMETIC_VARIANTS, ARITHMETIC_NOISE = 8, 0.25
TRUNCATION_ROUNDS = 100


def build_net(run_config: dict, state_dict: dict) -> Generator:
    """The generator, with the EMA weights when the run kept them."""
    prefix = "ema_generator." if any(k.startswith("ema_generator.") for k in state_dict) else "generator."
    return load_weights(instantiate_net(run_config["model"]["module"]["generator"]), state_dict, prefix)


def draw_latents(n: int, dim: int, temperature: float = 1.0, truncation: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, I) latents; entries beyond ±truncation re-drawn (Brock et al. 2019); then scaled by temperature.

    Drawn on the CPU from `generator`, so a seed gives the same latents on every device.
    """
    z = torch.randn(n, dim, generator=generator)
    if truncation is not None:
        if truncation <= 0:
            raise GenrunError(f"truncation={truncation}: must be positive (or null for none)")
        for _ in range(TRUNCATION_ROUNDS):
            outside = z.abs() > truncation
            if not outside.any():
                break
            z[outside] = torch.randn(int(outside.sum()), generator=generator)
        # For a tiny ψ a few entries may still lie outside: the truncated normal is then nearly uniform.
        outside = z.abs() > truncation
        z[outside] = (torch.rand(int(outside.sum()), generator=generator) * 2 - 1) * truncation
    return z * temperature


def _labels(net: Generator, label: int | None, n: int) -> torch.Tensor | None:
    if label is None:
        return None
    if not net.num_classes:
        raise GenrunError(f"label={label}: this model is not class-conditional (train model=cgan)")
    if not 0 <= label < net.num_classes:
        raise GenrunError(f"label={label}: this model has classes 0..{net.num_classes - 1}")
    return torch.full((n,), label, dtype=torch.long)


def _generate(net: Generator, z: torch.Tensor, labels: torch.Tensor | None, device, batch: int = 500) -> torch.Tensor:
    net = net.to(device).eval()
    out = []
    for start in range(0, len(z), batch):
        y = None if labels is None else labels[start : start + batch].to(device)
        out.append(net.to_data(net(z[start : start + batch].to(device), y)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def sample(net: Generator, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
    check_mode(request, MODES, "GAN")
    if not net.images and request.mode != "prior":
        raise GenrunError(f"mode={request.mode}: a model of 2-D points supports mode=prior only")
    if request.between != "latents" and request.mode == "interpolate":
        raise GenrunError(f"between={request.between}: a GAN has no encoder; GANs interpolate between latents")
    generator = request.generator()
    out = context.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if request.mode == "prior":
        images, nrow = _prior(net, request, generator, context.device)
    elif request.mode == "interpolate":
        images, nrow = _interpolate(net, request, generator, context.device)
    else:
        images, nrow, recipe = _arithmetic(net, request, generator, context.device)
        files["arithmetic"] = out / "arithmetic.json"
        files["arithmetic"].write_text(json.dumps(recipe, indent=2) + "\n")
    if net.images:
        files["grid"] = save_grid(images, out / "samples.png", nrow=nrow)
    else:
        from genrun.metrics.toy2d import scatter_plot

        data = context.load_split("train")[0]
        files["grid"] = out / "samples.png"
        scatter_plot(images, data[:5000], files["grid"], f"{len(images)} samples over the training data")
    files["tensor"] = out / "samples.pt"
    torch.save(images, files["tensor"])
    return files


def _prior(net, request, generator, device):
    if net.num_classes and request.label is None:
        # One row per class; each column keeps its latent, so rows differ only by the label.
        cols = request.nrow or max(1, request.num_samples // net.num_classes)
        z = draw_latents(cols, net.latent_dim, request.temperature, request.truncation, generator)
        labels = torch.arange(net.num_classes).repeat_interleave(cols)
        return _generate(net, z.repeat(net.num_classes, 1), labels, device), cols
    z = draw_latents(request.num_samples, net.latent_dim, request.temperature, request.truncation, generator)
    labels = _labels(net, request.label, len(z))
    return _generate(net, z, labels, device), request.nrow


def _interpolate(net, request, generator, device):
    from genrun.families.autoencoder import interpolate

    if request.interpolation not in ("linear", "slerp"):
        raise GenrunError(f"interpolation={request.interpolation}: choose linear or slerp")
    steps = int(request.steps)
    rows = max(1, request.num_samples // steps)
    ends = draw_latents(2 * rows, net.latent_dim, request.temperature, request.truncation, generator)
    path = interpolate(ends[:rows], ends[rows:], steps, request.interpolation).flatten(0, 1)
    labels = _labels(net, request.label, len(path))
    if net.num_classes and labels is None:
        labels = (torch.arange(rows) % net.num_classes).repeat_interleave(steps)
    return _generate(net, path, labels, device), steps


def _arithmetic(net, request, generator, device):
    """mean(z[a]) - mean(z[b]) + mean(z[c]) over latents indexed as in `mode=prior` with the same seed,
    num_samples, temperature and truncation; rows: each group and its mean's image, then the result and
    noisy variants of it."""
    if net.num_classes and request.label is None:
        raise GenrunError("mode=arithmetic on a class-conditional model needs label=k (one class for all latents)")
    groups = {name: list(request.arithmetic[i]) for i, name in enumerate("abc")}
    for name, indices in groups.items():
        if not indices or any(not 0 <= i < request.num_samples for i in indices):
            raise GenrunError(f"arithmetic.{name}={indices}: indices must be in 0..{request.num_samples - 1} "
                              f"(samples of mode=prior with num_samples={request.num_samples})")
    z = draw_latents(request.num_samples, net.latent_dim, request.temperature, request.truncation, generator)
    means = {name: z[indices].mean(0) for name, indices in groups.items()}
    result = means["a"] - means["b"] + means["c"]
    noise = (torch.rand(ARITHMETIC_VARIANTS, net.latent_dim, generator=generator) * 2 - 1) * ARITHMETIC_NOISE
    cols = max(max(len(g) for g in groups.values()) + 1, ARITHMETIC_VARIANTS + 1)
    rows, blank = [], None
    for name, indices in groups.items():
        rows.append([*z[indices], means[name]])
    rows.append([result, *(result + noise)])
    latents = torch.stack([v for row in rows for v in row])
    images = _generate(net, latents, _labels(net, request.label, len(latents)), device)
    tiles, k = [], 0
    for row in rows:
        blank = torch.ones_like(images[0])
        tiles += list(images[k : k + len(row)]) + [blank] * (cols - len(row))
        k += len(row)
    recipe = {"expression": "mean(a) - mean(b) + mean(c)", **groups, "seed": request.seed,
              "num_samples": request.num_samples, "layout": "rows a, b, c: the samples then the image of their "
              "mean latent; last row: the result, then the result plus U(-0.25, 0.25) noise"}
    return torch.stack(tiles), cols, recipe


def evaluate(net: Generator, context: EvalContext) -> dict[str, float]:
    settings = context.settings
    temperature = float(settings.get("temperature", 1.0))
    net = net.to(context.device).eval()
    if context.data_info.get("kind") and not net.images:
        return _evaluate_toy(net, context, int(settings.get("num_samples", 2500)), temperature)
    label_pool = context.load_split("train")[1] if net.num_classes else None

    def generate(n: int, generator: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [0, 1]; a conditional model draws labels as often as the training data has them."""
        z = draw_latents(n, net.latent_dim, temperature, None, generator)
        if net.num_classes and labels is None:
            labels = label_pool[torch.randint(len(label_pool), (n,), generator=generator)].cpu()
        return _generate(net, z, labels, context.device)

    metrics = _swd_metrics(generate, context, int(settings.get("num_samples", 1000)))
    try:
        from genrun.evaluation.image_quality import evaluate_images
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("genrun.evaluation"):
            raise
        log.warning("genrun.evaluation is not installed: reporting the sliced Wasserstein distance only")
        return metrics
    return {**evaluate_images(generate, context, conditional=bool(net.num_classes)), **metrics}


def _swd_metrics(generate, context: EvalContext, n: int) -> dict[str, float]:
    """A feature-free check that needs no classifier: SWD between test images and as many samples."""
    from genrun.metrics.swd import sliced_wasserstein

    real = context.load_split("test")[0]
    n = min(n, len(real))
    fake = generate(n, torch.Generator().manual_seed(int(context.settings.get("seed", 0))))
    return {"test/swd": float(sliced_wasserstein(real[:n].float().cpu(), fake)), "test/swd_n": float(n)}


def _evaluate_toy(net: Generator, context: EvalContext, n: int, temperature: float) -> dict[str, float]:
    from genrun.metrics.toy2d import scatter_plot, toy_metrics

    generator = torch.Generator().manual_seed(int(context.settings.get("seed", 0)))
    z = draw_latents(n, net.latent_dim, temperature, None, generator)
    labels = None
    if net.num_classes:
        labels = torch.randint(net.num_classes, (n,), generator=generator)
    points = _generate(net, z, labels, context.device)
    info = context.data_info
    metrics = toy_metrics(points, info["kind"], float(info["mode_std"]))
    context.out_dir.mkdir(parents=True, exist_ok=True)
    title = (f"{info['kind']}: {metrics['toy/modes_covered']:.0f}/{metrics['toy/num_modes']:.0f} modes, "
             f"{100 * metrics['toy/hq_fraction']:.1f}% high quality (n={n})")
    scatter_plot(points, context.load_split("test")[0], context.out_dir / "toy_scatter.png", title)
    return metrics
