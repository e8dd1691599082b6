"""GAN-family inference without Lightning: prior samples (temperature, truncation, class rows),
latent interpolation, latent vector arithmetic, and evaluation (exact toy metrics, or the shared
image-quality report)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import torch

from genrun import figures
from genrun.budget import Budget
from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow, check_path
from genrun.nets.gan import Generator
from genrun.pipeline import Pipeline, knob
from genrun.progress import track
from genrun.sampling.latents import draw_latents
from genrun.streaming import (
    BATCH,
    PREVIEW_LIMIT,
    SUFFIX,
    SamplePlan,
    corner,
    draw_ahead,
    leading,
    picture_path,
    run_plan,
    shown_note,
    whole_rows,
    write_samples,
)

log = logging.getLogger(__name__)
MODES = ("prior", "interpolate", "arithmetic")
# Radford et al. 2015, §6.3: eight more results from the arithmetic's latent plus U(-0.25, 0.25) noise.
ARITHMETIC_VARIANTS, ARITHMETIC_NOISE = 8, 0.25
# Points shown in a 2-D model's scatter plot (all of them are in samples.npy).
SCATTER_LIMIT = 10_000


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
    """Draw batch by batch into samples.npy; a bounded, labelled picture named after the mode (prior.png,
    interpolate.png, arithmetic.png; for points, a scatter plot over the data)."""
    check_mode(request, MODES, "GAN")
    if not net.images and request.mode != "prior":
        raise GenrunError(f"mode={request.mode}: a model of 2-D points supports mode=prior only")
    if request.between != "latents" and request.mode == "interpolate":
        raise GenrunError(f"between={request.between}: a GAN has no encoder; GANs interpolate between latents")
    generator = request.generator()
    out = context.out_dir
    out.mkdir(parents=True, exist_ok=True)
    net = net.to(context.device).eval()
    files: dict[str, Path] = {}
    if request.mode == "prior":
        plan, draw = _prior(net, request, generator, context)
    elif request.mode == "interpolate":
        plan, draw = _interpolate(net, request, generator, context)
    else:
        plan, draw, recipe = _arithmetic(net, request, generator, context)
        files["arithmetic"] = out / "arithmetic.json"
        files["arithmetic"].write_text(json.dumps(recipe, indent=2) + "\n")
    if net.images:
        return files | write_samples(plan, context, request.max_minutes, request.mode, draw)
    return files | _write_points(plan, request, context)


def _knobs(request: SampleRequest, **more) -> dict:
    """The settings that shape a GAN's samples, for picture subtitles."""
    return {"temperature": request.temperature, "truncation": request.truncation, **more, "seed": request.seed}


def _write_points(plan: SamplePlan, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
    """2-D samples: all in samples.npy, the first SCATTER_LIMIT of them under the training data in prior.png."""
    from genrun.metrics.toy2d import scatter_plot

    files = {"grid": picture_path(context.out_dir, request.mode), "tensor": context.out_dir / f"samples{SUFFIX}"}
    points = run_plan(plan, files["tensor"], request.max_minutes)
    data = context.load_split("train")[0]
    shown = f"{len(points)} samples" if len(points) == plan.total else f"first {len(points)} of {plan.total} samples"
    title, subtitle = figures.headline(context.out_dir, request.mode, f"{shown} and the training data",
                                       **_knobs(request))
    scatter_plot(points, data[:5000], files["grid"], f"{title}\n{subtitle}")
    note = shown_note(files["grid"], len(points), plan.total, files["tensor"])
    if note:
        context.notes.append(note)
    return files


def latent_batches(n: int, dim: int, temperature: float, truncation: float | None,
                   generator: torch.Generator) -> Iterator[torch.Tensor]:
    """The latents of mode=prior, BATCH at a time: the one stream that arithmetic's indices refer to."""
    for start in range(0, n, BATCH):
        yield draw_latents(min(BATCH, n - start), dim, temperature, truncation, generator)


def _render(net: Generator, z: torch.Tensor, labels: torch.Tensor | None, device) -> torch.Tensor:
    y = None if labels is None else labels.to(device)
    return net.to_data(net(z.to(device), y)).float().cpu()


def _prior(net, request, generator, context):
    device = context.device
    if net.num_classes and request.label is None:
        return _class_rows(net, request, context)
    n = request.num_samples
    unit, limit = ("images", PREVIEW_LIMIT) if net.images else ("points", SCATTER_LIMIT)

    def batches():
        for z in latent_batches(n, net.latent_dim, request.temperature, request.truncation, generator):
            yield _render(net, z, _labels(net, request.label, len(z)), device)

    shown, nrow = (leading(n, limit), None) if request.nrow is None else whole_rows(n, request.nrow, limit)

    def draw(images: torch.Tensor):
        count = f"{n:,} samples" if len(images) >= n else f"first {len(images):,} of {n:,} samples"
        names = figures.class_names(context.data_info, net.num_classes)
        label = "" if request.label is None else f" of class {names[request.label]}"
        title = figures.headline(context.out_dir, "prior", count + label, **_knobs(request))
        return figures.sheet(images, figures.columns(len(images), nrow), *title)

    return SamplePlan(batches(), n, math.ceil(n / BATCH), f"num_samples={n}", shown, nrow, unit), draw


def _class_rows(net, request, context):
    """One row per class; each column keeps its latent, so rows differ only by the label. The latents are
    drawn again for every row from the same seed instead of being held."""
    cols = request.nrow or max(1, request.num_samples // net.num_classes)
    what = f"nrow={request.nrow}" if request.nrow else f"num_samples={request.num_samples}"
    device = context.device

    def batches():
        for label in range(net.num_classes):
            stream = latent_batches(cols, net.latent_dim, request.temperature, request.truncation, request.generator())
            for z in stream:
                yield _render(net, z, torch.full((len(z),), label, dtype=torch.long), device)

    total = cols * net.num_classes
    shown_cols = min(cols, max(1, PREVIEW_LIMIT // net.num_classes))
    shown = corner(total, cols, shown_cols, max(1, PREVIEW_LIMIT // shown_cols))
    names = figures.class_names(context.data_info, net.num_classes)

    def draw(images: torch.Tensor):
        rows = math.ceil(len(images) / shown_cols)
        title = figures.headline(context.out_dir, "prior", "one row per class, each column one latent",
                                 **_knobs(request))
        return figures.sheet(images, shown_cols, *title, row_labels=[f"class {names[r]}" for r in range(rows)])

    return SamplePlan(batches(), total, net.num_classes * math.ceil(cols / BATCH), what, shown, shown_cols), draw


def _interpolate(net, request, generator, context):
    from genrun.families.autoencoder import (
        check_interpolation,
        interpolation_layout,
        interpolation_preview,
        interpolation_sheet,
        path_batch_count,
        path_batches,
    )

    device = context.device
    check_interpolation(request)
    rows, steps, what = interpolation_layout(request)
    fixed = _labels(net, request.label, 1)

    def ends(r0, r1):
        z = draw_latents(2 * (r1 - r0), net.latent_dim, request.temperature, request.truncation, generator)
        return z[: r1 - r0], z[r1 - r0 :]

    def render(codes, r0, r1):
        labels = None if fixed is None else fixed.expand(len(codes))
        if net.num_classes and labels is None:  # one class per row, in turn
            labels = (torch.arange(r0, r1) % net.num_classes).repeat_interleave(len(codes) // (r1 - r0))
        return _render(net, codes, labels, device)

    total = rows * steps
    shown, nrow = interpolation_preview(total, steps)

    def draw(images: torch.Tensor):
        title = figures.headline(context.out_dir, "interpolate", f"{request.interpolation} paths between two latents",
                                 **_knobs(request, steps=steps, label=request.label))
        labels = None
        if net.num_classes and request.label is None and nrow:  # one class per row, in turn
            names = figures.class_names(context.data_info, net.num_classes)
            labels = [f"class {names[int(i) // steps % net.num_classes]}" for i in shown[::nrow]]
        return interpolation_sheet(images, shown, steps, nrow, title, row_labels=labels)

    return SamplePlan(path_batches(ends, rows, steps, request.interpolation, render), total,
                      path_batch_count(rows, steps), what, shown, nrow), draw


def _chosen_latents(net, request, generator, indices: list[int]) -> dict[int, torch.Tensor]:
    """The latents of mode=prior at `indices`, drawn batch by batch only as far as the largest index."""
    wanted, found, start = set(indices), {}, 0
    for z in latent_batches(request.num_samples, net.latent_dim, request.temperature, request.truncation,
                            generator):
        found |= {i: z[i - start] for i in wanted if start <= i < start + len(z)}
        start += len(z)
        if start > max(wanted):
            break
    return found


def _arithmetic(net, request, generator, context):
    """mean(z[a]) - mean(z[b]) + mean(z[c]) over latents indexed as in `mode=prior` with the same seed,
    num_samples, temperature and truncation; rows: each group and its mean's image, then the result and
    noisy variants of it."""
    if net.num_classes and request.label is None:
        raise GenrunError("mode=arithmetic on a class-conditional model needs label=k (one class for all latents)")
    groups = {name: list(request.arithmetic[name]) for name in "abc"}
    for name, indices in groups.items():
        if not indices or any(not 0 <= i < request.num_samples for i in indices):
            raise GenrunError(f"arithmetic.{name}={indices}: indices must be in 0..{request.num_samples - 1} "
                              f"(samples of mode=prior with num_samples={request.num_samples})")
    z = _chosen_latents(net, request, generator, [i for g in groups.values() for i in g])
    means = {name: torch.stack([z[i] for i in indices]).mean(0) for name, indices in groups.items()}
    result = means["a"] - means["b"] + means["c"]
    noise = (torch.rand(ARITHMETIC_VARIANTS, net.latent_dim, generator=generator) * 2 - 1) * ARITHMETIC_NOISE
    cols = max(max(len(g) for g in groups.values()) + 1, ARITHMETIC_VARIANTS + 1)
    rows = [[*(z[i] for i in indices), means[name]] for name, indices in groups.items()]
    rows.append([result, *(result + noise)])
    latents = torch.stack([v for row in rows for v in row])
    images = _generate(net, latents, _labels(net, request.label, len(latents)), context.device)
    tiles, k = [], 0
    for row in rows:
        blank = torch.ones_like(images[0])
        tiles += list(images[k : k + len(row)]) + [blank] * (cols - len(row))
        k += len(row)
    recipe = {"expression": "mean(a) - mean(b) + mean(c)", **groups, "seed": request.seed,
              "num_samples": request.num_samples, "layout": "rows a, b, c: the samples then the image of their "
              "mean latent; last row: the result, then the result plus U(-0.25, 0.25) noise"}
    tiles = torch.stack(tiles)
    plan = SamplePlan(iter([tiles]), len(tiles), 1, f"num_samples={request.num_samples}", torch.arange(len(tiles)),
                      cols)

    def draw(_tiles: torch.Tensor):
        title = figures.headline(context.out_dir, "arithmetic", "mean(a) - mean(b) + mean(c) of mode=prior latents",
                                 **_knobs(request, num_samples=request.num_samples, label=request.label))
        return arithmetic_sheet(images, groups, title)

    return plan, draw, recipe


def arithmetic_sheet(images: torch.Tensor, groups: dict[str, list[int]], title: tuple[str, str]):
    """A regular table: rows a, b, c (each sample captioned with its index in mode=prior), then mean(a),
    mean(b), mean(c) (the image of each group's mean latent), then the result and its noisy variants.
    `images` in the order `_arithmetic` renders them: each group's samples then its mean, then the result
    and the variants."""
    sizes = [len(groups[name]) for name in "abc"]
    cols = max(*sizes, ARITHMETIC_VARIANTS + 1)
    members, means, k = [], [], 0
    for size in sizes:
        members.append(list(images[k : k + size]))
        means.append(images[k + size])
        k += size + 1
    rows = [*members, *([mean] for mean in means), list(images[k:])]
    captions = [[f"#{i}" for i in groups[name]] for name in "abc"] + [[""]] * 3
    captions.append(["result", *(f"+noise {v + 1}" for v in range(len(rows[-1]) - 1))])
    cells, texts = [], []
    for row, caption in zip(rows, captions, strict=True):
        cells += row + [None] * (cols - len(row))
        texts += caption + [""] * (cols - len(caption))
    labels = ["a", "b", "c", "mean(a)", "mean(b)", "mean(c)", "result"]
    return figures.sheet(cells, cols, *title, row_labels=labels, captions=texts, split_rows=(3, 6))


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

    try:
        from genrun.evaluation.image_quality import evaluate_images
    except ModuleNotFoundError as err:
        if not (err.name or "").startswith("genrun.evaluation"):
            raise
        log.warning("genrun.evaluation is not installed: reporting the sliced Wasserstein distance only")
        return _swd_metrics(generate, context, int(settings.get("num_samples", 1000)))
    # First: a request the report refuses up front is refused before any other work.
    metrics = evaluate_images(generate, context, conditional=bool(net.num_classes))
    return metrics | _swd_metrics(generate, context, int(settings.get("num_samples", 1000)))


def _swd_metrics(generate, context: EvalContext, n: int) -> dict[str, float]:
    """A feature-free check that needs no classifier: SWD between test images and as many samples."""
    from genrun.metrics.swd import sliced_wasserstein

    real = context.load_split("test")[0]
    n = min(n, len(real))
    fake = generate(n, torch.Generator().manual_seed(int(context.settings.get("seed", 0))))
    return {"test/swd": float(sliced_wasserstein(real[:n].float().cpu(), fake)), "test/swd_n": float(n)}


def _evaluate_toy(net: Generator, context: EvalContext, n: int, temperature: float) -> dict[str, float]:
    """Exact toy metrics over n points, drawn in batches into one preallocated tensor; refused up front when
    the points and their distances to the modes would not fit in memory or in the time limit."""
    from genrun.metrics.toy2d import scatter_plot, toy_metrics

    info = context.data_info
    budget = Budget(f"num_samples={n}", context.settings.get("max_minutes"), "points")
    budget.check_memory(n * _toy_bytes_per_point(info["kind"]), "points and their distances to the modes")
    generator = torch.Generator().manual_seed(int(context.settings.get("seed", 0)))

    def batches():
        for start in range(0, n, BATCH):
            z = draw_latents(min(BATCH, n - start), net.latent_dim, temperature, None, generator)
            labels = torch.randint(net.num_classes, (len(z),), generator=generator) if net.num_classes else None
            yield _render(net, z, labels, context.device)

    stream = batches()
    held, rate = draw_ahead(stream, n)
    if rate is not None:
        budget.check_rate(n - sum(len(b) for b in held), rate)
    points, start = torch.empty(n, held[0].shape[1]), 0
    for batch in chain(held, track(stream, f"{n:,} points", total=math.ceil(n / BATCH) - len(held))):
        points[start : start + len(batch)] = batch
        start += len(batch)
    metrics = toy_metrics(points, info["kind"], float(info["mode_std"]))
    context.out_dir.mkdir(parents=True, exist_ok=True)
    shown = points[:SCATTER_LIMIT]
    title = (f"{info['kind']}: {metrics['toy/modes_covered']:.0f}/{metrics['toy/num_modes']:.0f} modes, "
             f"{100 * metrics['toy/hq_fraction']:.1f}% high quality (n={n}"
             f"{'' if len(shown) == n else f', first {len(shown)} shown'})")
    title, subtitle = figures.headline(context.out_dir, None, title, temperature=temperature,
                                       seed=int(context.settings.get("seed", 0)))
    scatter_plot(shown, context.load_split("test")[0], context.out_dir / "toy_scatter.png", f"{title}\n{subtitle}")
    return metrics


def _toy_bytes_per_point(kind: str) -> int:
    """Memory toy_metrics needs per point: the point, its distances to every mode (or curve point), the rest."""
    from genrun.data.toy2d import mode_centres, reference_curve

    centres = mode_centres(kind)
    references = len(centres) if centres is not None else len(reference_curve(kind))
    return 4 * references + 64


ARITHMETIC_DEFAULT = {"a": (0, 1, 2), "b": (3, 4, 5), "c": (6, 7, 8)}


@dataclass(frozen=True)
class GANKnobs:
    truncation: float | None = knob(None, "re-draw latent entries beyond +-truncation (Brock et al. 2019)")
    label: int | None = knob(None, "class of every sample of a class-conditional model (default: a row per class)")
    steps: int = knob(10, "interpolate: points per row, both ends included")
    interpolation: str = knob("slerp", "interpolate: linear or slerp")
    between: str = knob("latents", "interpolate: a GAN has no encoder, so only latents")
    nrow: int | None = knob(None, "images per row of the picture (default: square-ish)")
    arithmetic: dict = field(default_factory=lambda: dict(ARITHMETIC_DEFAULT), metadata={
        "help": "arithmetic: indices a, b, c into mode=prior's samples; shows mean(a) - mean(b) + mean(c)"})

    def check(self) -> None:
        if self.truncation is not None and self.truncation <= 0:
            raise GenrunError(f"truncation={self.truncation}: must be positive (or null for none)")
        check_path(self.steps, self.interpolation)
        check_nrow(self.nrow)
        groups = {**ARITHMETIC_DEFAULT, **(self.arithmetic or {})}
        unknown = sorted(set(groups) - set(ARITHMETIC_DEFAULT))
        if unknown:
            raise GenrunError(f"arithmetic.{unknown[0]}: the groups are a, b and c")
        for name, indices in groups.items():
            try:
                groups[name] = tuple(int(i) for i in indices)
            except (TypeError, ValueError):
                raise GenrunError(f"arithmetic.{name}={indices}: expected a list of sample indices like [0,1,2]"
                                  ) from None
            if not groups[name]:
                raise GenrunError(f"arithmetic.{name}: needs at least one sample index")
        object.__setattr__(self, "arithmetic", groups)


class GANPipeline(Pipeline):
    """A generator: prior samples (temperature, truncation, class rows), interpolation, latent arithmetic."""

    components = ("generator",)
    modes = MODES
    Knobs = GANKnobs

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        return sample(self.generator, request, context)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        return evaluate(self.generator, context)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Items in the dataset's range for latents `z` (on the generator's device), in eval mode."""
        net = self.generator
        was_training = net.training
        net.eval()
        try:
            device = next(net.parameters()).device
            y = None if labels is None or not net.num_classes else labels.to(device)
            return net.to_data(net(z.to(device), y))
        finally:
            net.train(was_training)

    def fixed_latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same n latents (and labels cycling through the classes) every time: progress is comparable."""
        z = torch.randn(n, self.generator.latent_dim, generator=torch.Generator().manual_seed(0))
        labels = torch.arange(n) % self.generator.num_classes if self.generator.num_classes else None
        return z, labels

    def progress_images(self, n: int) -> tuple[torch.Tensor, int | None]:
        """The fixed latents' images and their row length (one column per class for a conditional model)."""
        z, labels = self.fixed_latents(n)
        classes = self.generator.num_classes
        return self.generate(z, labels).float().cpu(), classes if classes and classes <= 16 else None

    def progress_figure(self, n: int):
        """A 2-D model's fixed latents as a scatter plot (a matplotlib figure)."""
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        points = self.generate(*self.fixed_latents(n)).float().cpu()
        fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
        ax.scatter(points[:, 0], points[:, 1], s=3)
        ax.set_aspect("equal")
        lim = max(1.0, math.ceil(float(points.abs().max())))
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), title=f"{n} samples from fixed latents")
        return fig
