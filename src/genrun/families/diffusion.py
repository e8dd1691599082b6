"""Denoising diffusion (Ho et al. 2020): the U-Net that predicts, and the pipeline that walks noise back to
images with a scheduler from genrun.sampling.schedulers (DDPM or DDIM; one checkpoint samples with either).

Classifier-free guidance (Ho & Salimans 2022) uses diffusers' convention: `guidance=s` mixes the two
predictions as out = out_uncond + s · (out_cond − out_uncond), so s = 1 is the plain conditional model,
s = 0 the unconditional one, and Ho & Salimans' w is s − 1. Images are in [-1, 1] inside the chain and
[0, 1] outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genrun import figures
from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow, labels_for
from genrun.nets.base import Net
from genrun.nets.checks import require_positive
from genrun.pipeline import Pipeline, knob
from genrun.sampling.latents import slerp
from genrun.sampling.schedulers import SAMPLERS, SPACINGS, NoiseSchedule
from genrun.streaming import BATCH, SamplePlan, leading, whole_rows, write_samples

MODES = ("prior", "interpolate", "denoise")
# Pictures of the chain (mode=denoise): this many columns, from pure noise to the image.
DENOISE_COLUMNS = 10
# On a CPU the U-Net runs a sampling batch this many images at a time: a whole batch's activations overflow
# the caches and are fresh allocations at every step, which made sampling about twice as slow
# (bench/results/ddpm_sampling.md). On a GPU the whole batch goes at once.
CPU_SLICE = 64


def denoise_columns(steps: int) -> set[int]:
    """The step indices mode=denoise pictures: DENOISE_COLUMNS evenly spaced over the chain, both ends included."""
    columns = min(DENOISE_COLUMNS, steps)
    return {round(i * (steps - 1) / max(1, columns - 1)) for i in range(columns)}


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Vaswani et al. 2017, as DDPM uses it), B×dim."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], 1)


class ResidualBlock(nn.Module):
    """GroupNorm, SiLU, 3x3 conv, plus the time (and class) embedding, twice; a 1x1 skip when widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x))) + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of a (low-resolution) feature map, residual."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.qkv, self.out = nn.Conv2d(channels, 3 * channels, 1), nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attended = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(attended.transpose(-1, -2).reshape(b, c, h, w))


class UNet(Net):
    """The DDPM U-Net: residual blocks with group norm at each resolution, 2x down- and upsampling,
    self-attention at the resolutions listed in `attention_levels` (0 is the input size) and in the middle,
    a sinusoidal time embedding, and an optional class embedding (index `num_classes` is "no label")."""

    def __init__(self, channels: int, image_size: int, base_width: int = 32, channel_mults: list[int] = (1, 2, 2),
                 blocks_per_level: int = 1, attention_levels: list[int] = (2,), dropout: float = 0.1,
                 num_classes: int = 0):
        super().__init__()
        if channels is None or image_size is None:
            raise GenrunError("model=ddpm needs images (dataset.channels and dataset.image_size); this dataset has "
                              "none: use mnist, fashion_mnist or image_folder")
        require_positive(base_width=base_width, channel_mults=list(channel_mults), blocks_per_level=blocks_per_level)
        levels = len(channel_mults)
        if int(image_size) % 2 ** (levels - 1):
            raise GenrunError(f"dataset.image_size={image_size}: the U-Net halves it {levels - 1} times "
                              f"(model.channel_mults has {levels} levels); use a size divisible by {2 ** (levels - 1)}")
        self.channels, self.image_size, self.num_classes = int(channels), int(image_size), int(num_classes or 0)
        self.base_width = int(base_width)
        emb_dim = 4 * self.base_width
        self.time_mlp = nn.Sequential(nn.Linear(self.base_width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embedding = nn.Embedding(self.num_classes + 1, emb_dim) if self.num_classes else None
        widths = [self.base_width * int(m) for m in channel_mults]
        self.conv_in = nn.Conv2d(self.channels, widths[0], 3, padding=1)
        self.down, skips, c = nn.ModuleList(), [widths[0]], widths[0]
        for level, width in enumerate(widths):
            for _ in range(int(blocks_per_level)):
                self.down.append(self._stage(c, width, emb_dim, dropout, level in attention_levels))
                c = width
                skips.append(c)
            if level < levels - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([ResidualBlock(c, c, emb_dim, dropout), SelfAttention(c),
                                  ResidualBlock(c, c, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(int(blocks_per_level) + 1):
                self.up.append(self._stage(c + skips.pop(), width, emb_dim, dropout, level in attention_levels))
                c = width
            if level > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(c, c, 3, padding=1)))
        self.norm_out, self.conv_out = nn.GroupNorm(min(8, c), c), nn.Conv2d(c, self.channels, 3, padding=1)

    @staticmethod
    def _stage(c_in: int, c_out: int, emb_dim: int, dropout: float, attention: bool) -> nn.ModuleList:
        parts = [ResidualBlock(c_in, c_out, emb_dim, dropout)]
        return nn.ModuleList([*parts, SelfAttention(c_out)] if attention else parts)

    @staticmethod
    def _run(stage: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if not isinstance(stage, nn.ModuleList):  # a down- or upsampling layer
            return stage(h)
        for layer in stage:
            h = layer(h, emb) if isinstance(layer, ResidualBlock) else layer(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t.expand(len(x)) if t.dim() == 0 else t, self.base_width))
        if self.label_embedding is not None:
            if labels is None:  # unconditional: the "no label" index
                labels = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
            emb = emb + self.label_embedding(labels)
        h = self.conv_in(x)
        skips = [h]
        for stage in self.down:
            h = self._run(stage, h, emb)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for stage in self.up:
            h = self._run(stage, torch.cat([h, skips.pop()], 1) if isinstance(stage, nn.ModuleList) else h, emb)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass(frozen=True)
class DiffusionKnobs:
    sampler: str = knob("ddim", "ddim (eta 0: deterministic) or ddpm (ancestral)")
    steps: int = knob(50, "denoising steps, at most the trained timesteps")
    eta: float = knob(0.0, "DDIM: 0 deterministic ... 1 DDPM-like")
    spacing: str = knob("trailing", "which trained timesteps a short chain visits: trailing, leading, linspace")
    guidance: float = knob(1.0, "classifier-free guidance scale s (0 unconditional, 1 conditional, >1 guided)")
    label: int | None = knob(None, "class of every sample of a class-conditional model (default: a row per class)")
    nrow: int | None = knob(None, "images per row of the picture (default: square-ish)")
    vlb_images: int = knob(0, "evaluate: test images for the variational bound in bits/dim (T net calls each)")

    def check(self) -> None:
        if self.vlb_images < 0:
            raise GenrunError(f"vlb_images={self.vlb_images}: must be 0 (no bound) or more")
        if self.sampler not in SAMPLERS:
            raise GenrunError(f"sampler={self.sampler}: choose {' or '.join(SAMPLERS)}")
        if self.spacing not in SPACINGS:
            raise GenrunError(f"spacing={self.spacing}: choose one of {', '.join(SPACINGS)}")
        if not 0.0 <= self.eta <= 1.0:
            raise GenrunError(f"eta={self.eta}: must be between 0 (deterministic DDIM) and 1 (DDPM-like)")
        if self.steps < 1:
            raise GenrunError(f"steps={self.steps}: must be at least 1")
        check_nrow(self.nrow)


class DiffusionPipeline(Pipeline):
    """A U-Net and a noise schedule: samples, interpolations between initial noises, the chain itself."""

    components = ("unet",)
    modes = MODES
    Knobs = DiffusionKnobs
    quality_after_training = False  # a thousand samples of a chain each: genrun evaluate, not every run

    def __init__(self, components, settings=None, data_info=None):
        super().__init__(components, settings, data_info)
        self.schedule = NoiseSchedule(int(self.settings.get("timesteps", 1000)),
                                      str(self.settings.get("schedule", "linear")),
                                      str(self.settings.get("prediction", "eps")))

    def _labels(self, label: int | None, n: int, guidance: float) -> torch.Tensor | None:
        classes = self.unet.num_classes
        if label is None:
            if guidance != 1.0 and not classes:
                raise GenrunError(f"guidance={guidance:g}: this model is not class-conditional (model.num_classes=0)")
            return None
        return labels_for(label, classes, n)

    def scheduler(self, knobs):
        if knobs.steps > self.schedule.steps:
            raise GenrunError(f"steps={knobs.steps}: the model was trained with {self.schedule.steps} timesteps")
        kwargs = {"eta": knobs.eta} if knobs.sampler == "ddim" else {}
        scheduler = SAMPLERS[knobs.sampler](self.schedule, **kwargs)
        scheduler.set_timesteps(knobs.steps, knobs.spacing)
        return scheduler

    @torch.no_grad()
    def predict(self, x: torch.Tensor, t: int, labels: torch.Tensor | None, guidance: float) -> torch.Tensor:
        """The U-Net's output at (x, t), guided when there are labels and the scale is not 1."""
        device = x.device
        steps = torch.full((len(x),), int(t), dtype=torch.long, device=device)
        if labels is None:
            return self._run_unet(x, steps)
        labels = labels.to(device)
        conditional = self._run_unet(x, steps, labels)
        if guidance == 1.0:
            return conditional
        unconditional = self._run_unet(x, steps)
        return unconditional + guidance * (conditional - unconditional)

    def _run_unet(self, x: torch.Tensor, steps: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The U-Net on a batch, in slices of CPU_SLICE images on a CPU (the same numbers, less memory traffic)."""
        if x.device.type != "cpu" or len(x) <= CPU_SLICE:
            return self.unet(x, steps, labels)
        label_slices = [None] * math.ceil(len(x) / CPU_SLICE) if labels is None else labels.split(CPU_SLICE)
        slices = zip(x.split(CPU_SLICE), steps.split(CPU_SLICE), label_slices, strict=True)
        return torch.cat([self.unet(*args) for args in slices])

    @torch.no_grad()
    def denoise(self, noise: torch.Tensor, knobs, labels: torch.Tensor | None = None,
                generator: torch.Generator | None = None, keep: set[int] | None = None):
        """Images in [0, 1] from initial noise (on the U-Net's device); with `keep`, also the predicted clean
        images at those step indices, for the picture of the chain."""
        scheduler = self.scheduler(knobs)
        x, kept = noise, []
        for index, t in enumerate(scheduler.timesteps.tolist()):
            out = self.predict(x, t, labels, knobs.guidance)
            if keep is not None and index in keep:
                kept.append(self.to_images(self.schedule.split(out, x, t)[0]).cpu())
            x = scheduler.step(out, t, x, generator)
        images = self.to_images(x)
        return (images, kept) if keep is not None else images

    def to_images(self, x: torch.Tensor) -> torch.Tensor:
        """The chain's space ([-1, 1] pixels here; latents in latent diffusion) to images in [0, 1]."""
        return x.clamp(-1, 1).add(1).div(2)

    def to_chain(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] to the space the chain runs in."""
        return images * 2 - 1

    def _noise(self, n: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        shape = (n, self.unet.channels, self.unet.image_size, self.unet.image_size)
        return torch.randn(shape, generator=generator) * temperature

    def _device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def images(self, n: int, knobs, temperature: float = 1.0, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [0, 1] (the CPU), drawn in batches; the noise comes from `generator` on the CPU."""
        generator = generator or torch.Generator().manual_seed(0)
        out = []
        for start in range(0, n, BATCH):
            count = min(BATCH, n - start)
            y = None if labels is None else labels[start : start + count]
            noise = self._noise(count, temperature, generator).to(self._device())
            out.append(self.denoise(noise, knobs, y, generator if self._device().type == "cpu" else None).cpu())
        return torch.cat(out)

    # --- genrun sample ----------------------------------------------------------------------------------------

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        check_mode(request, MODES, "diffusion")
        self.to(context.device).eval()
        knobs, generator = request.knobs, request.generator()
        self.scheduler(knobs)  # refuse bad steps before any work
        if request.mode == "prior":
            plan = self._prior_plan(request, knobs, generator)
        elif request.mode == "interpolate":
            plan = self._interpolate_plan(request, knobs, generator)
        else:
            plan = self._denoise_plan(request, knobs, generator)
        return write_samples(plan, context, request.max_minutes, request.mode, self._picture(request, context, plan))

    def _picture(self, request: SampleRequest, context: SampleContext, plan: SamplePlan):
        """The function that draws a mode's picture: the sampler's settings in the title; class rows, the
        interpolation's fractions or the chain's timesteps as labels."""
        knobs = request.knobs
        settings = {"sampler": knobs.sampler, "steps": knobs.steps,
                    "eta": knobs.eta if knobs.sampler == "ddim" else None,
                    "spacing": knobs.spacing, "guidance": knobs.guidance if self.unet.num_classes else None,
                    "label": knobs.label, "temperature": request.temperature, "seed": request.seed}
        classes = self.unet.num_classes

        def draw(images: torch.Tensor):
            if request.mode == "denoise":
                timesteps = self.scheduler(knobs).timesteps.tolist()
                labels = [f"t={timesteps[i]}" for i in sorted(denoise_columns(knobs.steps))]
                title = figures.headline(context.out_dir, "denoise", "chains from noise (left) to image; "
                                         "columns: predicted clean image at step t", **settings)
                return figures.sheet(images, len(labels), *title, col_labels=labels)
            if request.mode == "interpolate":
                title = figures.headline(context.out_dir, "interpolate", "DDIM (eta=0) images along a slerp "
                                         "between two initial noises", **settings)
                steps = plan.nrow
                return figures.sheet(images, steps, *title,
                                     col_labels=figures.fraction_labels(torch.arange(steps), steps))
            ncol = figures.columns(len(images), plan.nrow)
            if classes and knobs.label is None:
                names = figures.class_names(context.data_info, classes)
                title = figures.headline(context.out_dir, "prior", "one row per class, the same noise in each "
                                         "column", **settings)
                rows = math.ceil(len(images) / ncol)
                return figures.sheet(images, ncol, *title, row_labels=[f"class {names[r]}" for r in range(rows)])
            n = plan.total
            count = f"{n:,} samples" if len(images) >= n else f"first {len(images):,} of {n:,} samples"
            return figures.sheet(images, ncol, *figures.headline(context.out_dir, "prior", count, **settings))

        return draw

    def _prior_plan(self, request: SampleRequest, knobs, generator) -> SamplePlan:
        n = request.num_samples
        classes = self.unet.num_classes
        if classes and knobs.label is None:  # a row per class, the same noise in every row
            cols = knobs.nrow or max(1, n // classes)
            noise = self._noise(cols, request.temperature, generator)
            labels = torch.arange(classes).repeat_interleave(cols)
            images = self.denoise(noise.repeat(classes, 1, 1, 1).to(self._device()), knobs, labels, generator)
            return SamplePlan(iter([images.cpu()]), len(images), 1, f"nrow={cols}", torch.arange(len(images)), cols)
        labels = self._labels(knobs.label, n, knobs.guidance)

        def batches():
            for start in range(0, n, BATCH):
                count = min(BATCH, n - start)
                y = None if labels is None else labels[start : start + count]
                noise = self._noise(count, request.temperature, generator).to(self._device())
                yield self.denoise(noise, knobs, y, generator).cpu()

        shown, nrow = (leading(n), None) if knobs.nrow is None else whole_rows(n, knobs.nrow)
        return SamplePlan(batches(), n, math.ceil(n / BATCH), f"num_samples={n}", shown, nrow)

    def _interpolate_plan(self, request: SampleRequest, knobs, generator) -> SamplePlan:
        """Rows of DDIM (eta 0) images along a slerp between two initial noises: deterministic, so the
        path shows the model's map from noise to images, not fresh randomness."""
        if knobs.sampler != "ddim" or knobs.eta != 0:
            raise GenrunError("mode=interpolate needs sampler=ddim eta=0 (deterministic), so the path is smooth")
        steps = knobs.nrow or 8
        rows = max(1, min(request.num_samples // steps, 16))
        ends = self._noise(2 * rows, request.temperature, generator).flatten(1)
        t = torch.linspace(0, 1, steps).view(1, steps, 1)
        path = slerp(ends[:rows, None].expand(-1, steps, -1), ends[rows:, None].expand(-1, steps, -1),
                     t.expand(rows, steps, 1)).reshape(rows * steps, *self._noise(1, 1.0, generator).shape[1:])
        labels = self._labels(knobs.label, len(path), knobs.guidance)
        images = self.denoise(path.to(self._device()), knobs, labels, generator).cpu()
        return SamplePlan(iter([images]), len(images), 1, f"num_samples={request.num_samples}",
                          torch.arange(len(images)), steps)

    def _denoise_plan(self, request: SampleRequest, knobs, generator) -> SamplePlan:
        """Each row one chain: the predicted clean image at DENOISE_COLUMNS evenly spaced steps, noise to image."""
        rows = max(1, min(request.num_samples, 8))
        keep = denoise_columns(knobs.steps)
        labels = self._labels(knobs.label, rows, knobs.guidance)
        noise = self._noise(rows, request.temperature, generator).to(self._device())
        _images, kept = self.denoise(noise, knobs, labels, generator, keep=keep)
        strip = torch.stack(kept, 1).flatten(0, 1)  # row-major: each chain left to right
        return SamplePlan(iter([strip]), len(strip), 1, f"num_samples={request.num_samples}",
                          torch.arange(len(strip)), len(kept))

    # --- genrun evaluate --------------------------------------------------------------------------------------

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        """The denoising loss on the test split (fixed timesteps and noise); with settings['image_metrics']
        (genrun evaluate's default, off at the end of training) also the shared sample-quality report."""
        from genrun.families.base import knobs_from_settings

        self.to(context.device).eval()
        metrics = self.test_loss(context.load_split("test"), int(context.settings.get("batch_size", 250)))
        knobs = knobs_from_settings(type(self).Knobs, context.settings)
        if knobs.vlb_images:
            metrics |= self.likelihood(context.load_split("test")[0][: knobs.vlb_images])
        if not context.settings.get("image_metrics", False):
            return metrics
        from genrun.evaluation.image_quality import evaluate_images

        temperature = float(context.settings.get("temperature", 1.0))

        def generate(n: int, generator: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
            if labels is None and knobs.label is not None:
                labels = self._labels(knobs.label, n, knobs.guidance)
            return self.images(n, knobs, temperature, generator, labels)

        return metrics | evaluate_images(generate, context, conditional=bool(self.unet.num_classes))

    def likelihood(self, images: torch.Tensor) -> dict[str, float]:
        """The variational bound on the NLL of `images` in bits/dim (genrun.families.diffusion_vlb)."""
        from genrun.families.diffusion_vlb import variational_bound

        return variational_bound(self, images)

    @torch.no_grad()
    def test_loss(self, split: tuple[torch.Tensor, torch.Tensor], batch_size: int) -> dict[str, float]:
        """Mean squared error of the net's prediction target (eps, x0 or v) over the images of `split`, each at a
        timestep and noise drawn from a fixed seed: comparable across checkpoints and runs."""
        x, y = split
        generator = torch.Generator().manual_seed(0)
        device, total = self._device(), 0.0
        for start in range(0, len(x), batch_size):
            x0 = self.to_chain(x[start : start + batch_size].float().to(device)).cpu()
            t = torch.randint(self.schedule.steps, (len(x0),), generator=generator)
            noise = torch.randn(x0.shape, generator=generator)
            labels = y[start : start + batch_size].long().to(device) if self.unet.num_classes else None
            out = self.unet(self.schedule.add_noise(x0, noise, t).to(device), t.to(device), labels)
            target = self.schedule.target(x0, noise, t).to(device)
            total += float(F.mse_loss(out.float(), target.float(), reduction="sum")) / x0[0].numel()
        return {"test/denoising_mse": total / max(1, len(x)), "test/n_images": float(len(x))}
