"""A learnt prior over a frozen VQ-VAE's code grids, and two-stage sampling: codes from the prior in raster
order, then images from the VQ-VAE's decoder.

Two priors (`settings['prior']`): `transformer`, the GPT net over the flattened grid (image-GPT style: a start
token, which carries the class of a class-conditional prior, then the codes row by row, decoded with the
key/value cache), and `pixelcnn`, the gated PixelCNN over the K-way code grid, sampled by the shared
raster-order sampler. Either way the prior's output is K logits per position; temperature 0 takes the arg
max at every position (deterministic).
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
from genrun.pipeline import Pipeline, knob
from genrun.sampling.filters import next_token
from genrun.streaming import BATCH, SamplePlan, leading, whole_rows, write_samples

PRIORS = ("transformer", "pixelcnn")
LN2 = math.log(2.0)


def start_tokens(codebook_size: int, labels: torch.Tensor | None, n: int, device) -> torch.Tensor:
    """The transformer's first token: K for an unconditional prior, K + label for a class-conditional one."""
    if labels is None:
        return torch.full((n, 1), codebook_size, dtype=torch.long, device=device)
    return (codebook_size + labels.long().to(device)).view(n, 1)


def transformer_vocabulary(codebook_size: int, num_classes: int) -> int:
    """The K codes and the start tokens (one, or one per class)."""
    return int(codebook_size) + max(1, int(num_classes))


def code_logits(prior: nn.Module, kind: str, codes: torch.Tensor, labels: torch.Tensor | None,
                codebook_size: int) -> torch.Tensor:
    """The prior's logits for every position of code grids N×H×W given the positions before it: N×K×H×W."""
    n, h, w = codes.shape
    if kind == "transformer":
        flat = codes.reshape(n, h * w)
        inputs = torch.cat([start_tokens(codebook_size, labels, n, codes.device), flat[:, :-1]], 1)
        return prior(inputs)[..., :codebook_size].transpose(1, 2).reshape(n, codebook_size, h, w)
    return prior(codes[:, None], labels)[:, :, 0]


def nats_per_code(prior: nn.Module, kind: str, codes: torch.Tensor, labels: torch.Tensor | None,
                  codebook_size: int) -> torch.Tensor:
    """Mean negative log-likelihood of the codes under the prior, in nats per code."""
    return F.cross_entropy(code_logits(prior, kind, codes, labels, codebook_size).float(), codes)


@torch.no_grad()
def sample_codes(prior: nn.Module, kind: str, shape: tuple[int, int, int], codebook_size: int,
                 temperature: float, generator: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Code grids N×H×W drawn position after position in raster order. Tokens are drawn on the CPU from
    `generator` (a CPU generator), so a seed gives the same codes on every device."""
    n, h, w = shape
    device = next(prior.parameters()).device
    if kind == "transformer":
        from genrun.sampling.decoders import GPTCachedDecoder

        decoder = GPTCachedDecoder(prior, n)  # the window is the whole grid: the cache is never refilled
        out = torch.empty(n, h * w, dtype=torch.long)
        logits = decoder.prefill(start_tokens(codebook_size, labels, n, device))
        for i in range(h * w):
            out[:, i] = next_token(logits[:, :codebook_size].float().cpu(), temperature, generator=generator)
            if i + 1 < h * w:
                logits = decoder.step(out[:, i].to(device))
        return out.view(n, h, w)
    from genrun.sampling.raster import sample

    grids = sample(prior, (n, 1, h, w), temperature, generator, labels, batch_size=max(1, n),
                   description="drawing codes")
    return grids[:, 0]


@dataclass(frozen=True)
class VQPriorKnobs:
    label: int | None = knob(None, "class of every sample of a class-conditional prior (default: classes in turn)")
    nrow: int | None = knob(None, "images per row of the picture (default: square-ish; one column per class "
                                  "for a class-conditional prior)")

    def check(self) -> None:
        check_nrow(self.nrow)


class VQPriorPipeline(Pipeline):
    """A prior over code grids (`prior`) and the frozen VQ-VAE whose codes it models (`vqvae`)."""

    components = ("prior", "vqvae")
    modes = ("prior",)
    Knobs = VQPriorKnobs

    def __init__(self, components, settings=None, data_info=None):
        super().__init__(components, settings, data_info)
        self.kind = str(self.settings.get("prior", "transformer"))
        if self.kind not in PRIORS:
            raise GenrunError(f"prior {self.kind!r}: this genrun knows {' and '.join(PRIORS)}")
        self.num_classes = int(self.settings.get("num_classes", 0))
        modelled = self.prior_codebook_size()
        if modelled != self.vqvae.codebook_size:
            raise GenrunError(f"model.codebook_size: the prior models {modelled} codes, the VQ-VAE has "
                              f"{self.vqvae.codebook_size}")

    @property
    def codebook_size(self) -> int:
        return self.vqvae.codebook_size

    def prior_codebook_size(self) -> int:
        if self.kind == "transformer":
            return self.prior.vocab_size - max(1, self.num_classes)
        return int(self.prior.init_config["levels"])

    def labels(self, label: int | None, n: int) -> torch.Tensor | None:
        """Every sample's class: None (unconditional), `label`, or the classes in turn."""
        if label is not None:
            return labels_for(label, self.num_classes, n)
        return torch.arange(n) % self.num_classes if self.num_classes else None

    @torch.no_grad()
    def codes(self, n: int, temperature: float, generator: torch.Generator,
              labels: torch.Tensor | None = None) -> torch.Tensor:
        return sample_codes(self.prior, self.kind, (n, *self.vqvae.grid), self.codebook_size, temperature,
                            generator, labels)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        device = next(self.vqvae.parameters()).device
        return self.vqvae.mean_image(self.vqvae.decode_codes(codes.to(device)))

    @torch.no_grad()
    def images(self, n: int, temperature: float, generator: torch.Generator,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Two stages: codes from the prior, images from the VQ-VAE's decoder (in [0, 1])."""
        return self.decode(self.codes(n, temperature, generator, labels))

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        check_mode(request, self.modes, "vq_prior")
        n = request.num_samples
        labels = self.labels(request.label, n)
        generator = request.generator()
        self.to(context.device).eval()

        def batches():
            for start in range(0, n, BATCH):
                y = None if labels is None else labels[start : start + BATCH]
                yield self.images(min(BATCH, n - start), request.temperature, generator, y).cpu()

        by_class = self.num_classes and request.label is None
        nrow = request.nrow or (self.num_classes if by_class else None)
        shown, cols = (leading(n), None) if nrow is None else whole_rows(n, nrow)

        def draw(images: torch.Tensor):
            count = f"{n:,} samples" if len(images) >= n else f"first {len(images):,} of {n:,} samples"
            what = f"{count}: codes from the {self.kind} prior, decoded by the VQ-VAE"
            title = figures.headline(context.out_dir, "prior", what, temperature=request.temperature,
                                     label=request.label, seed=request.seed)
            ncol = figures.columns(len(images), cols)
            col_labels = None
            if by_class and ncol == self.num_classes:
                col_labels = [f"class {name}" for name in figures.class_names(context.data_info, self.num_classes)]
            return figures.sheet(images, ncol, *title, col_labels=col_labels)

        plan = SamplePlan(batches(), n, math.ceil(n / BATCH), f"num_samples={n}", shown, cols)
        return write_samples(plan, context, request.max_minutes, "prior", draw)

    @torch.no_grad()
    def test_nll(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> dict[str, float]:
        """The prior's NLL of the test images' codes, in nats and bits per code."""
        device = next(self.prior.parameters()).device
        total, count = 0.0, 0
        for start in range(0, len(x), batch_size):
            codes = self.vqvae.codes(x[start : start + batch_size].float().to(device))
            labels = y[start : start + batch_size].long().to(device) if self.num_classes else None
            total += float(nats_per_code(self.prior, self.kind, codes, labels, self.codebook_size)) * codes.numel()
            count += codes.numel()
        nats = total / max(1, count)
        return {"test/nats_per_code": nats, "test/bits_per_code": nats / LN2,
                "test/codes_per_image": float(math.prod(self.vqvae.grid)), "test/n_images": float(len(x))}

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        """The prior's test NLL in bits per code; with settings['image_metrics'] (genrun evaluate's default)
        also the shared sample-quality report of two-stage samples at settings['temperature']."""
        from genrun.families.base import knobs_from_settings

        self.to(context.device).eval()
        x, y = context.load_split("test")
        metrics = self.test_nll(x, y, int(context.settings.get("batch_size", 250)))
        if not context.settings.get("image_metrics", False):
            return metrics
        from genrun.evaluation.image_quality import evaluate_images

        knobs = knobs_from_settings(VQPriorKnobs, context.settings)
        temperature = float(context.settings.get("temperature", 1.0))

        def generate(n: int, generator: torch.Generator, labels: torch.Tensor | None = None) -> torch.Tensor:
            if labels is None and knobs.label is not None:
                labels = self.labels(knobs.label, n)
            return self.images(n, temperature, generator, labels).cpu()

        return metrics | evaluate_images(generate, context, conditional=bool(self.num_classes))
