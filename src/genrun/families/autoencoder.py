"""Autoencoder-family inference: prior samples, interpolation, reconstruction, IWAE likelihood."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from genrun import figures
from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow, check_path
from genrun.images import interleave_rows
from genrun.metrics.likelihood import bits_per_dim, elbo_terms, iwae_nll
from genrun.nets.autoencoder import Autoencoder
from genrun.pipeline import Pipeline, knob
from genrun.progress import track
from genrun.sampling.latents import INTERPOLATIONS, interpolate_at
from genrun.streaming import (
    BATCH,
    PREVIEW_LIMIT,
    SamplePlan,
    corner,
    leading,
    spread,
    whole_rows,
    write_samples,
)

MODES = ("prior", "interpolate", "reconstruct")


def fractions(first: int, stop: int, steps: int) -> torch.Tensor:
    """Steps first..stop-1 of a path of `steps` points as fractions of the way, computed for that piece only:
    a path of any length is drawn in pieces without ever holding all of its points."""
    return (torch.arange(first, stop, dtype=torch.float64) / (steps - 1)).float()


def check_interpolation(request: SampleRequest) -> None:
    if request.interpolation not in INTERPOLATIONS:
        raise GenrunError(f"interpolation={request.interpolation}: choose {' or '.join(INTERPOLATIONS)}")


def interpolation_layout(request: SampleRequest) -> tuple[int, int, str]:
    """(rows, steps, the key their count comes from): num_samples // steps rows of `steps` points, at least one."""
    steps = int(request.steps)
    rows = max(1, request.num_samples // steps)
    return rows, steps, f"steps={steps}" if steps > request.num_samples else f"num_samples={request.num_samples}"


def interpolation_preview(total: int, steps: int) -> tuple[torch.Tensor, int | None]:
    """Whole rows while they fit the picture; a row too long for it is shown at evenly spaced steps."""
    return whole_rows(total, steps) if steps <= PREVIEW_LIMIT else (spread(steps), None)


def path_batches(ends, rows: int, steps: int, kind: str, render) -> Iterator[torch.Tensor]:
    """Rendered interpolation paths in batches of about BATCH points, row after row.

    `ends(r0, r1)` gives the start and end codes of rows r0..r1-1 (drawn only when needed); `render(codes, r0,
    r1)` turns the points of those rows (row-major) into samples. A row longer than a batch goes in pieces.
    """
    rows_per_batch = max(1, BATCH // steps)
    for r0 in range(0, rows, rows_per_batch):
        r1 = min(rows, r0 + rows_per_batch)
        start, end = ends(r0, r1)
        for first in range(0, steps, BATCH):
            t = fractions(first, min(steps, first + BATCH), steps)
            yield render(interpolate_at(start, end, t, kind).flatten(0, 1), r0, r1)


def path_batch_count(rows: int, steps: int) -> int:
    return math.ceil(rows / max(1, BATCH // steps)) * math.ceil(steps / BATCH)


@torch.no_grad()
def sample(net: Autoencoder, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
    """Draw, reconstruct or interpolate batch by batch into samples.npy, with a bounded, labelled picture
    named after the mode (prior.png, reconstruct.png, interpolate.png)."""
    check_mode(request, MODES, "autoencoder")
    generator = request.generator()
    net = net.to(context.device)
    if request.mode == "prior":
        plan, draw = _prior_plan(net, request, context, generator)
    elif request.mode == "reconstruct":
        plan, draw = _reconstruct_plan(net, request, context, generator)
    else:
        plan, draw = _interpolation_plan(net, request, context, generator)
    return write_samples(plan, context, request.max_minutes, request.mode, draw)


def _shown_count(shown: int, total: int, unit: str = "samples") -> str:
    return f"{total:,} {unit}" if shown >= total else f"first {shown:,} of {total:,} {unit}"


def _prior_plan(net: Autoencoder, request: SampleRequest, context: SampleContext, generator: torch.Generator):
    n = request.num_samples

    def batches():
        for start in range(0, n, BATCH):
            z = net.sample_latents(min(BATCH, n - start), request.temperature, generator)
            yield net.mean_image(net.decode(z)).cpu()

    shown, nrow = (leading(n), None) if request.nrow is None else whole_rows(n, request.nrow)

    def draw(images: torch.Tensor):
        title = figures.headline(context.out_dir, "prior", f"{_shown_count(len(images), n)} decoded from the prior",
                                 temperature=request.temperature, seed=request.seed)
        return figures.sheet(images, figures.columns(len(images), nrow), *title)

    return SamplePlan(batches(), n, math.ceil(n / BATCH), f"num_samples={n}", shown, nrow), draw


def _reconstruct_plan(net: Autoencoder, request: SampleRequest, context: SampleContext,
                      generator: torch.Generator):
    """Test images, each row of `nrow` above its reconstructions; at most the whole test split (noted)."""
    x = context.load_split("test")[0]
    order = torch.randperm(len(x), generator=generator)[: request.num_samples]
    if len(order) < request.num_samples:
        context.notes.append(f"num_samples={request.num_samples}: the test split has {len(x)} images; "
                             f"all {len(x)} are reconstructed")
    nrow = max(1, min(request.nrow or 8, len(order)))
    per_batch = max(1, BATCH // nrow) * nrow  # whole rows, so each batch interleaves like the whole would

    def batches():
        for start in range(0, len(order), per_batch):
            xb = x[order[start : start + per_batch]].to(context.device)
            yield interleave_rows(xb, net.mean_image(net.decode(net.encode(xb)[0])), nrow).cpu()

    total = 2 * len(order)
    shown, cols = torch.arange(total), nrow
    if total > PREVIEW_LIMIT:  # pairs of rows (inputs above reconstructions) from the top-left corner
        cols = min(nrow, PREVIEW_LIMIT // 2)
        shown = corner(total, nrow, cols, max(2, PREVIEW_LIMIT // cols // 2 * 2))

    def draw(images: torch.Tensor):
        shown_inputs = _shown_count(len(images) // 2, len(order), "test images")
        title = figures.headline(context.out_dir, "reconstruct", f"{shown_inputs} and their reconstructions",
                                 seed=request.seed)
        cells = pair_rows(images, cols)
        rows = math.ceil(len(cells) / cols)
        return figures.sheet(cells, cols, *title, row_labels=["input", "reconstruction"] * (rows // 2),
                             split_rows=range(2, rows, 2))

    return SamplePlan(batches(), total, math.ceil(len(order) / per_batch), f"num_samples={request.num_samples}",
                      shown, cols), draw


def pair_rows(images: torch.Tensor, cols: int) -> list[torch.Tensor | None]:
    """Cells of a reconstruction picture: rows of `cols` inputs, each above their reconstructions; a last short
    pair (k inputs then k reconstructions in the stream) is padded with blanks so each half keeps its row."""
    full = len(images) // (2 * cols) * 2 * cols
    cells: list[torch.Tensor | None] = list(images[:full])
    k = (len(images) - full) // 2
    if k:
        blanks = [None] * (cols - k)
        cells += [*images[full : full + k], *blanks, *images[full + k : full + 2 * k], *blanks]
    return cells


def _interpolation_plan(net: Autoencoder, request: SampleRequest, context: SampleContext,
                        generator: torch.Generator):
    check_interpolation(request)
    rows, steps, what = interpolation_layout(request)
    x = None
    if request.between == "images":
        x = context.load_split("test")[0]
        if 2 * rows > len(x):
            raise GenrunError(f"{what}: between=images needs two test images for each of the {rows} rows, and the "
                              f"test split has {len(x)}")
        order = torch.randperm(len(x), generator=generator)[: 2 * rows]

        def ends(r0, r1):
            pair = torch.cat([order[r0:r1], order[rows + r0 : rows + r1]])
            codes = net.encode(x[pair].to(context.device))[0]
            return codes[: r1 - r0], codes[r1 - r0 :]
    else:
        def ends(r0, r1):
            codes = net.sample_latents(2 * (r1 - r0), request.temperature, generator)
            return codes[: r1 - r0], codes[r1 - r0 :]

    def render(codes, _r0, _r1):
        return net.mean_image(net.decode(codes)).cpu()

    total = rows * steps
    shown, nrow = interpolation_preview(total, steps)

    def draw(images: torch.Tensor):
        between = "two test images" if x is not None else "two prior latents"
        title = figures.headline(context.out_dir, "interpolate", f"{request.interpolation} paths between {between}",
                                 steps=steps, temperature=None if x is not None else request.temperature,
                                 seed=request.seed)
        real = None if x is None else (x[order[:rows]].float(), x[order[rows:]].float())
        return interpolation_sheet(images, shown, steps, nrow, title, real)

    return SamplePlan(path_batches(ends, rows, steps, request.interpolation, render), total,
                      path_batch_count(rows, steps), what, shown, nrow), draw


def interpolation_sheet(images: torch.Tensor, shown: torch.Tensor, steps: int, nrow: int | None,
                        title: tuple[str, str], real: tuple[torch.Tensor, torch.Tensor] | None = None,
                        row_labels: list[str] | None = None):
    """The decoded paths, columns labelled by their fraction of the way; with `real` (the start and end images
    of every row), each row framed by its real start and end images; `row_labels` name the rows."""
    if nrow is None:  # one long path shown at evenly spaced points, wrapped into a square: caption each tile
        captions = figures.fraction_labels(shown, steps)
        cells = list(images)
        if real is not None:
            cells, captions = [real[0][0], *cells, real[1][0]], ["start", *captions, "end"]
        return figures.sheet(cells, figures.columns(len(cells), None), *title, captions=captions)
    labels = figures.fraction_labels(shown[:nrow], steps)
    if real is None:
        return figures.sheet(images, nrow, *title, col_labels=labels, row_labels=row_labels)
    cells = []
    for start in range(0, len(images), nrow):
        row = int(shown[start]) // steps
        cells += [real[0][row], *images[start : start + nrow], real[1][row]]
    return figures.sheet(cells, nrow + 2, *title, col_labels=["start", *labels, "end"], split_cols=(1, nrow + 1),
                         row_labels=row_labels)


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
    report of prior samples at settings['temperature'], run first so that a request it refuses up front is
    refused before the likelihood's work."""
    net = net.to(context.device)
    metrics = {}
    if context.settings.get("image_metrics", False):
        from genrun.evaluation.image_quality import evaluate_images

        temperature = float(context.settings.get("temperature", 1.0))

        def generate(n: int, generator: torch.Generator) -> torch.Tensor:
            z = net.sample_latents(n, temperature, generator)
            return torch.cat([net.mean_image(net.decode(z[s : s + BATCH])).cpu() for s in range(0, n, BATCH)])

        metrics = evaluate_images(generate, context)
    x = context.load_split("test")[0].to(context.device)
    return likelihood_metrics(net, x, k=int(context.settings.get("iwae_k", 100)),
                              batch_size=int(context.settings.get("batch_size", 250))) | metrics


@dataclass(frozen=True)
class AutoencoderKnobs:
    steps: int = knob(10, "interpolate: points per row, both ends included")
    interpolation: str = knob("slerp", "interpolate: linear or slerp")
    between: str = knob("latents", "interpolate: between prior latents or between the codes of two test images")
    nrow: int | None = knob(None, "images per row of the picture (default: square-ish; reconstruct: 8)")
    iwae_k: int = knob(100, "evaluate: importance samples of the IWAE likelihood bound (0: ELBO only)")

    def check(self) -> None:
        check_path(self.steps, self.interpolation)
        if self.between not in ("latents", "images"):
            raise GenrunError(f"between={self.between}: choose latents or images")
        check_nrow(self.nrow)
        if self.iwae_k < 0:
            raise GenrunError(f"iwae_k={self.iwae_k}: must be 0 (no IWAE bound) or more")


class AutoencoderPipeline(Pipeline):
    """An autoencoder's decoder (and encoder): prior samples, reconstructions, interpolations, likelihood."""

    components = ("net",)
    modes = MODES
    Knobs = AutoencoderKnobs

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        return sample(self.net, request, context)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        return evaluate(self.net, context)

    @torch.no_grad()
    def prior_images(self, n: int, temperature: float, generator: torch.Generator) -> torch.Tensor:
        z = self.net.sample_latents(n, temperature, generator)
        return self.net.mean_image(self.net.decode(z.to(self.net.prior_mean.device)))

    @torch.no_grad()
    def reconstruction_pairs(self, x: torch.Tensor, nrow: int = 8) -> torch.Tensor:
        """Rows of `x` each directly above the same images' reconstructions."""
        return interleave_rows(x, self.net.mean_image(self.net.decode(self.net.encode(x)[0])), nrow)
