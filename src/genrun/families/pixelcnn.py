"""Autoregressive images (gated PixelCNN): exact likelihood, raster-order samples, completions of test images.

A grey level is one of `levels` values: 256 for 8-bit images, 2 for binarized ones (`model.binarize`, each
pixel drawn as Bernoulli(intensity): dynamic binarization while training, one fixed draw of the test set for
evaluation, so figures are comparable across runs). The likelihood is exact: −log p(x) is the sum of the
per-position cross-entropies, reported in nats per image and bits per dimension (per grey value).
Sampling goes through genrun.sampling.raster (the cached sampler by default); `temperature` divides the
logits, and 0 takes the most likely value at every position (deterministic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genrun import figures
from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow, labels_for
from genrun.metrics.likelihood import bits_per_dim
from genrun.nets.pixelcnn import GatedPixelCNN
from genrun.pipeline import Pipeline, knob
from genrun.progress import track
from genrun.sampling.raster import METHODS, sample_batches
from genrun.streaming import SamplePlan, leading, whole_rows, write_samples

MODES = ("prior", "complete")
# Images drawn side by side. Fixed, not tuned to the device: random numbers are drawn position by position
# for a whole batch, so the batch size is part of what a seed means.
RASTER_BATCH = 64
# Seed of the one binarization of held-out images a binarized model is evaluated on.
TEST_BINARIZATION_SEED = 0
# Grey of the hidden part of a "given" image in the completion picture: visibly not an image value.
HIDDEN_GREY = 0.5


def to_levels(images: torch.Tensor, levels: int, binarize: bool, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """Images in [0, 1] to integers in [0, levels): Bernoulli draws when binarizing (from `generator`, on the
    images' device when None), else the nearest level."""
    images = images.float().clamp(0, 1)
    if binarize:
        if generator is not None and generator.device != images.device:
            return torch.bernoulli(images.cpu(), generator=generator).long().to(images.device)
        return torch.bernoulli(images, generator=generator).long()
    return (images * (levels - 1)).round().long()


def to_images(grid: torch.Tensor, levels: int) -> torch.Tensor:
    """Integers in [0, levels) to images in [0, 1]."""
    return grid.float() / (levels - 1)


def nll_per_image(net: GatedPixelCNN, grid: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """−log p(grid) in nats, one value per image: the sum of the per-position cross-entropies."""
    logits = net(grid, labels)
    return F.cross_entropy(logits.float(), grid, reduction="none").flatten(1).sum(1)


def check_images(net: GatedPixelCNN, images: torch.Tensor, image_size: int | None, where: str) -> None:
    """Refuse images whose channels (or size, when the model has one) are not the model's, naming the key."""
    channels, size = images.shape[1], images.shape[-1]
    if channels != net.channels:
        kind = {1: "grey", 3: "RGB"}.get(channels, f"{channels}-channel")
        model = {1: "grey", 3: "RGB"}.get(net.channels, f"{net.channels}-channel")
        raise GenrunError(f"dataset.channels={channels}: {where} holds {kind} images and this PixelCNN models "
                          f"{model} ones (model.channels={net.channels})")
    if image_size is not None and size != image_size:
        raise GenrunError(f"dataset.image_size={size}: {where} holds {size}px images and this PixelCNN was "
                          f"trained on {image_size}px")


@dataclass(frozen=True)
class PixelCNNKnobs:
    label: int | None = knob(None, "class of every sample of a class-conditional model (default: a row per class)")
    nrow: int | None = knob(None, "images per row of the picture (complete: test images per row, default 8)")
    sampler: str = knob("cached", "cached (each row's and column's work reused) or naive (the whole net per pixel)")
    given_rows: int | None = knob(None, "complete: rows of each test image given (default: the top half)")

    def check(self) -> None:
        if self.sampler not in METHODS:
            raise GenrunError(f"sampler={self.sampler}: choose {' or '.join(METHODS)}")
        check_nrow(self.nrow)
        if self.given_rows is not None and self.given_rows < 1:
            raise GenrunError(f"given_rows={self.given_rows}: must be at least 1 (or null for the top half)")


class PixelCNNPipeline(Pipeline):
    """A gated PixelCNN over grey levels (or binary pixels): exact NLL, prior samples, completions."""

    components = ("net",)
    modes = MODES
    Knobs = PixelCNNKnobs
    quality_after_training = False  # a thousand images drawn pixel by pixel: genrun evaluate, not every run

    @property
    def levels(self) -> int:
        return self.net.levels

    @property
    def binarize(self) -> bool:
        return bool(self.settings.get("binarize", False))

    @property
    def image_size(self) -> int:
        return int(self.settings["image_size"])

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def labels_for(self, label: int | None, n: int) -> torch.Tensor | None:
        """Every sample's class when `label` is given (None: unconditional draws)."""
        return labels_for(label, self.net.num_classes, n)

    def grids(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
              labels: torch.Tensor | None = None, sampler: str = "cached", known: torch.Tensor | None = None,
              start: torch.Tensor | None = None, size: int | None = None):
        """Integer grids drawn RASTER_BATCH at a time (an iterator of CPU tensors)."""
        size = size or self.image_size
        return sample_batches(self.net, (n, self.net.channels, size, size), temperature, generator, labels, known,
                              start, RASTER_BATCH, sampler, "PixelCNN: drawing pixels")

    @torch.no_grad()
    def images(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None, sampler: str = "cached") -> torch.Tensor:
        """n images in [0, 1] on the CPU."""
        return torch.cat([to_images(g, self.levels) for g in self.grids(n, temperature, generator, labels, sampler)])

    # --- genrun sample ----------------------------------------------------------------------------------------

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        check_mode(request, MODES, "pixelcnn")
        self.to(context.device).eval()
        generator = request.generator()
        if request.mode == "prior":
            plan, draw = self._prior_plan(request, context, generator)
        else:
            plan, draw = self._complete_plan(request, context, generator)
        return write_samples(plan, context, request.max_minutes, request.mode, draw)

    def _settings(self, request: SampleRequest) -> dict:
        return {"temperature": request.temperature, "sampler": request.sampler,
                "label": request.label, "seed": request.seed}

    def _prior_plan(self, request: SampleRequest, context: SampleContext, generator: torch.Generator):
        n, knobs, classes = request.num_samples, request.knobs, self.net.num_classes
        labels = self.labels_for(knobs.label, n)
        per_class = bool(classes) and knobs.label is None
        if per_class:  # a row per class
            cols = knobs.nrow or max(1, n // classes)
            labels = torch.arange(classes).repeat_interleave(cols)
            n = len(labels)
        batches = (to_images(g, self.levels) for g in self.grids(n, request.temperature, generator, labels,
                                                                  knobs.sampler))
        if per_class:
            shown, nrow = whole_rows(n, cols)
        else:
            shown, nrow = (leading(n), None) if knobs.nrow is None else whole_rows(n, knobs.nrow)
        plan = SamplePlan(batches, n, math.ceil(n / RASTER_BATCH), f"num_samples={request.num_samples}", shown, nrow)

        def draw(images: torch.Tensor):
            ncol = figures.columns(len(images), nrow)
            if per_class:
                names = figures.class_names(context.data_info, classes)
                title = figures.headline(context.out_dir, "prior", "one row per class", **self._settings(request))
                rows = math.ceil(len(images) / ncol)
                return figures.sheet(images, ncol, *title, row_labels=[f"class {names[r]}" for r in range(rows)])
            count = f"{n:,} samples" if len(images) >= n else f"first {len(images):,} of {n:,} samples"
            return figures.sheet(images, ncol, *figures.headline(context.out_dir, "prior", f"{count} drawn pixel by "
                                                                 "pixel", **self._settings(request)))

        return plan, draw

    def test_grids(self, images: torch.Tensor) -> torch.Tensor:
        """Held-out images as the model sees them (binarized with a fixed seed for a binarized model)."""
        generator = torch.Generator().manual_seed(TEST_BINARIZATION_SEED) if self.binarize else None
        return to_levels(images.cpu(), self.levels, self.binarize, generator)

    def _complete_plan(self, request: SampleRequest, context: SampleContext, generator: torch.Generator):
        """Test images' top rows given, the rest drawn: `nrow` images, num_samples // nrow completions of each."""
        knobs = request.knobs
        x, y = context.load_split("test")
        check_images(self.net, x, None, "the test split")
        height = x.shape[2]
        given = knobs.given_rows if knobs.given_rows is not None else height // 2
        if given >= height:
            raise GenrunError(f"given_rows={given}: the test images have {height} rows; give fewer to leave some "
                              "to draw")
        cols = max(1, min(knobs.nrow or 8, len(x), request.num_samples))
        per_image = max(1, request.num_samples // cols)
        order = torch.randperm(len(x), generator=generator)[:cols]
        originals = x[order].float().cpu()
        start = self.test_grids(originals)
        labels = self.labels_for(knobs.label, cols)
        if labels is None and self.net.num_classes:
            labels = y[order].long().cpu()  # each image completed under its own class
        known = torch.zeros(1, 1, height, x.shape[3], dtype=torch.bool)
        known[:, :, :given] = True
        total = cols * per_image
        if total < request.num_samples:
            context.notes.append(f"num_samples={request.num_samples}: {per_image} completions of each of {cols} test "
                                 f"images, {total} in all")
        repeat = lambda t: None if t is None else t.repeat(per_image, *[1] * (t.dim() - 1))  # noqa: E731
        grids = self.grids(total, request.temperature, generator, repeat(labels), knobs.sampler, known,
                           repeat(start), size=height)
        batches = (to_images(g, self.levels) for g in grids)
        shown, nrow = whole_rows(total, cols)
        plan = SamplePlan(batches, total, math.ceil(total / RASTER_BATCH), f"num_samples={request.num_samples}",
                          shown, nrow)
        hidden = to_images(start, self.levels)
        hidden[:, :, given:] = HIDDEN_GREY

        def draw(images: torch.Tensor):
            ncol = nrow
            shown_originals = (to_images(start, self.levels) if self.binarize else originals)[:ncol]
            cells = torch.cat([shown_originals, hidden[:ncol], images])
            rows = math.ceil(len(images) / ncol)
            what = (f"{cols} test images, the top {given} of {height} rows given (grey: hidden), "
                    f"the rest drawn pixel by pixel")
            title = figures.headline(context.out_dir, "complete", what, given_rows=given, **self._settings(request))
            original = "original (binarized)" if self.binarize else "original"
            row_labels = [original, f"given top {given} rows", *[f"sample {r + 1}" for r in range(rows)]]
            return figures.sheet(cells, ncol, *title, row_labels=row_labels, split_rows=(2,))

        return plan, draw

    # --- genrun evaluate --------------------------------------------------------------------------------------

    @torch.no_grad()
    def likelihood(self, split: tuple[torch.Tensor, torch.Tensor], batch_size: int = 250) -> dict[str, float]:
        """Exact test NLL: nats per image and bits per dimension (binarized with a fixed seed if binarizing)."""
        x, y = split
        check_images(self.net, x, self.image_size, "the test split")
        device, total = self._device(), 0.0
        starts = range(0, len(x), batch_size)
        for first in track(starts, f"exact likelihood of {len(x):,} test images", total=len(starts)):
            grid = self.test_grids(x[first : first + batch_size]).to(device)
            labels = y[first : first + batch_size].long().to(device) if self.net.num_classes else None
            total += float(nll_per_image(self.net, grid, labels).sum())
        nats = total / max(1, len(x))
        return {"test/nll": nats, "test/bits_per_dim": bits_per_dim(nats, math.prod(x.shape[1:])),
                "test/n_images": float(len(x))}

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        """The exact test likelihood; with settings['image_metrics'] (genrun evaluate's default) also the shared
        sample-quality report of samples at settings['temperature'], refused up front if too slow."""
        from genrun.families.base import knobs_from_settings

        self.to(context.device).eval()
        knobs = knobs_from_settings(PixelCNNKnobs, context.settings)
        self.labels_for(knobs.label, 1)  # a label the model cannot take is refused before any work
        test = context.load_split("test")
        check_images(self.net, test[0], self.image_size, "the test split")
        metrics = {}
        if context.settings.get("image_metrics", False):
            from genrun.evaluation.image_quality import evaluate_images

            temperature = float(context.settings.get("temperature", 1.0))

            def generate(n: int, generator: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
                if labels is None:
                    labels = self.labels_for(knobs.label, n)
                return self.images(n, temperature, generator, labels, knobs.sampler)

            metrics = evaluate_images(generate, context, conditional=bool(self.net.num_classes))
        return self.likelihood(test, int(context.settings.get("batch_size", 250))) | metrics
