"""Neural style transfer (Gatys et al. 2016): an image optimised so that a frozen VGG19 sees the content
photo's features (conv4_2; conv2_2 with the offline random filters) and the style image's feature
correlations (Gram matrices over conv1_1 ... conv5_1), with a total-variation term for smoothness. The
perceptual loss here is also what the fast feed-forward stylizer (genrun.models.fast_style, Johnson et al.
2016) trains with.

Several style images blend: their Gram matrices are averaged with the given weights (the minimiser of the
weighted sum of their style losses). Colour preservation (Gatys et al. 2017, luminance-only transfer): the
optimisation runs on luminance images, the style's luminance matched to the content's mean and spread,
and the result takes the content's colour (YIQ chrominance). No training: `genrun sample
model=style_transfer content=FILE style=FILE` builds this pipeline from configs/model/style_transfer.yaml.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genrun import figures
from genrun.data import photos
from genrun.errors import GenrunError
from genrun.families.base import SampleContext, SampleRequest, check_mode
from genrun.pipeline import Pipeline, knob

STYLE_LAYERS = {"conv1_1": 1.0, "conv2_1": 1.0, "conv3_1": 1.0, "conv4_1": 1.0, "conv5_1": 1.0}
# RGB -> YIQ (NTSC): Y is luminance, I and Q carry the colour.
YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def gram(features: torch.Tensor) -> torch.Tensor:
    """B×C×C feature correlations of B×C×H×W features, divided by C·H·W (so layers of any size compare)."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def relative_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖x − target‖² / ‖target‖²: Gatys et al.'s squared errors, each divided by its target's size, so the
    same loss weights serve every layer and every feature net (ImageNet VGG19 or random filters)."""
    return (x - target).pow(2).sum() / (target.pow(2).sum() * len(x) / len(target) + 1e-12)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def to_yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", YIQ.to(x), x)


def from_yiq(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", torch.linalg.inv(YIQ).to(x), x)


def luminance_only(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """`x`'s luminance as a grey RGB image; with `like`, its mean and spread matched to `like`'s luminance."""
    y = to_yiq(x)[..., :1, :, :]
    if like is not None:
        target = to_yiq(like)[..., :1, :, :]
        y = (y - y.mean()) / (y.std() + 1e-8) * target.std() + target.mean()
    return y.clamp(0, 1).expand(*x.shape[:-3], 3, *x.shape[-2:])


def recolour(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """`result`'s luminance with `content`'s colour."""
    yiq = to_yiq(content)
    yiq[..., :1, :, :] = to_yiq(result)[..., :1, :, :]
    return from_yiq(yiq).clamp(0, 1)


class PerceptualLoss(torch.nn.Module):
    """Gatys et al.'s objective over a frozen feature net: content_weight · content error at `content_layer` +
    style_weight · Σ_l w_l · error between Gram matrices + tv_weight · total variation (errors relative to
    their targets: `relative_error`). The style targets (Gram
    matrices, blended over style images) are computed once by `set_style`."""

    def __init__(self, net, style_layers: dict[str, float] | None = None, content_layer: str | None = None,
                 content_weight: float = 1.0, style_weight: float = 1.0, tv_weight: float = 0.0):
        super().__init__()
        self.net = net
        self.style_layers = dict(style_layers or STYLE_LAYERS)
        self.content_layer = content_layer or net.content_layer  # None: the net's own (conv4_2 for ImageNet VGG19)
        net.check_layers(self.style_layers, "style_layers")
        net.check_layers([self.content_layer], "content_layer")
        self.weights = (float(content_weight), float(style_weight), float(tv_weight))
        self.targets: dict[str, torch.Tensor] = {}

    @property
    def layers(self) -> list[str]:
        return [*self.style_layers, self.content_layer]

    @torch.no_grad()
    def set_style(self, styles: list[torch.Tensor], blend: list[float]) -> None:
        """Gram targets: Σ_k blend_k · G(style_k) / Σ blend (each style 1×3×H×W)."""
        total = float(sum(blend))
        targets = {name: 0.0 for name in self.style_layers}
        for image, weight in zip(styles, blend, strict=True):
            feats = self.net(image, self.style_layers)
            for name in self.style_layers:
                targets[name] = targets[name] + gram(feats[name]) * (weight / total)
        self.targets = targets

    def forward(self, x: torch.Tensor, content_features: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The terms and their weighted total for images `x`; `content_features`: the content layer's target
        (None: no content term, texture synthesis)."""
        feats = self.net(x, self.layers)
        zero = x.new_zeros(())
        content = (relative_error(feats[self.content_layer], content_features)
                   if content_features is not None else zero)
        style = sum(w * relative_error(gram(feats[name]), self.targets[name].expand(len(x), -1, -1))
                    for name, w in self.style_layers.items())
        tv = total_variation(x) if self.weights[2] else zero
        cw, sw, tw = self.weights
        return {"loss": cw * content + sw * style + tw * tv, "content": content, "style": style, "tv": tv}

    @torch.no_grad()
    def content_target(self, content: torch.Tensor) -> torch.Tensor:
        return self.net(content, [self.content_layer])[self.content_layer]


@dataclass(frozen=True)
class StyleKnobs:
    content: str | None = knob(None, "content photo: a file or grace_hopper | china | flower (default grace_hopper)")
    style: str | list | None = knob(None, "style image(s): a file, or a list [a.jpg,b.jpg] to blend (default flower)")
    style_weights: list | None = knob(None, "blend weights of several styles, e.g. [0.7,0.3] (default equal)")
    size: int = knob(256, "long side of the result in pixels (the style image is scaled to the same long side)")
    steps: int = knob(300, "optimiser steps (L-BFGS: function evaluations)")
    optimizer: str = knob("lbfgs", "lbfgs (Gatys et al.) or adam")
    lr: float = knob(0.02, "adam's learning rate (pixels in [0, 1]); L-BFGS uses a line search")
    init: str = knob("content", "the starting image: content, style or noise")
    content_weight: float = knob(1.0, "weight of the content loss (error of the content layer's features)")
    style_weight: float = knob(1.0, "weight of the style loss (Gram-matrix errors summed over style layers)")
    tv_weight: float = knob(0.01, "weight of the total-variation loss")
    style_layers: dict | None = knob(None, "style layer weights (default {conv1_1: 1, ..., conv5_1: 1})")
    content_layer: str | None = knob(None, "the layer the content loss compares (default conv4_2; "
                                     "conv2_2 with the offline random filters)")
    preserve_color: bool = knob(False, "luminance-only transfer: the result keeps the content's colours")

    def check(self) -> None:
        if self.optimizer not in ("lbfgs", "adam"):
            raise GenrunError(f"optimizer={self.optimizer}: choose lbfgs or adam")
        if self.init not in ("content", "style", "noise"):
            raise GenrunError(f"init={self.init}: choose content, style or noise")
        if self.size < 16:
            raise GenrunError(f"size={self.size}: must be at least 16 pixels")
        if self.steps < 1:
            raise GenrunError(f"steps={self.steps}: must be at least 1")
        if self.lr <= 0:
            raise GenrunError(f"lr={self.lr}: must be positive")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                raise GenrunError(f"{name}={getattr(self, name)}: must be 0 or more")
        styles = self.styles()
        if self.style_weights is not None:
            weights = list(self.style_weights)
            if len(weights) != len(styles):
                raise GenrunError(f"style_weights={weights}: {len(weights)} weights for {len(styles)} style image(s)")
            numbers = all(not isinstance(w, bool) and isinstance(w, (int, float)) and w >= 0 for w in weights)
            if not numbers or not sum(weights):
                raise GenrunError(f"style_weights={weights}: non-negative numbers, not all 0")
        if self.style_layers is not None and (not isinstance(self.style_layers, dict) or not self.style_layers):
            raise GenrunError(f"style_layers={self.style_layers}: a mapping of layer names to weights, "
                              "e.g. style_layers={conv1_1:1,conv2_1:0.5}")

    def styles(self) -> list[str | None]:
        if self.style is None:
            return [None]
        items = list(self.style) if isinstance(self.style, (list, tuple)) else [self.style]
        if not items:
            raise GenrunError("style=[]: give at least one style image")
        return [str(s) for s in items]

    def blend(self) -> list[float]:
        styles = self.styles()
        return [float(w) for w in self.style_weights] if self.style_weights is not None else [1.0] * len(styles)


def optimise(loss_fn: PerceptualLoss, start: torch.Tensor, content_features: torch.Tensor | None, knobs,
             on_step=None) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Minimise the perceptual loss over the pixels of `start` with L-BFGS or Adam for `knobs.steps` loss
    evaluations; returns the image (clamped to [0, 1]) and each evaluation's loss terms."""
    x = start.clone().requires_grad_(True)
    curve: list[dict[str, float]] = []

    def closure():
        optimizer.zero_grad()
        terms = loss_fn(x, content_features)
        terms["loss"].backward()
        curve.append({k: float(v.detach()) for k, v in terms.items()})
        if on_step is not None:
            on_step(curve[-1])
        return terms["loss"]

    if knobs.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=knobs.steps, max_eval=knobs.steps,
                                      tolerance_grad=0.0, tolerance_change=0.0, history_size=50,
                                      line_search_fn="strong_wolfe")
        while len(curve) < knobs.steps:
            before = len(curve)
            optimizer.step(closure)
            optimizer.param_groups[0]["max_eval"] = knobs.steps - len(curve)
            optimizer.param_groups[0]["max_iter"] = knobs.steps - len(curve)
            if len(curve) == before or not all(torch.isfinite(torch.tensor(c["loss"])) for c in curve[-1:]):
                break
    else:
        optimizer = torch.optim.Adam([x], lr=knobs.lr)
        for _ in range(knobs.steps):
            optimizer.step(closure)
    return x.detach().clamp(0, 1), curve


class StyleTransferPipeline(Pipeline):
    """A frozen VGG19 (component `features`, genrun.nets.feature_nets) and an optimiser over the image."""

    components = ("features",)
    Knobs = StyleKnobs
    modes = ("stylize",)
    quality_after_training = False

    @classmethod
    def from_config(cls, settings: dict) -> StyleTransferPipeline:
        from genrun.nets.feature_nets import vgg19_features

        net = vgg19_features(str(settings.get("weights", "auto")), str(settings.get("pooling", "avg")),
                             float(settings.get("width", 1.0)), int(settings.get("seed", 0)))
        return cls({"features": net}, settings)

    def stylize(self, content: torch.Tensor, styles: list[torch.Tensor], knobs, generator: torch.Generator,
                device: torch.device | str = "cpu", on_step=None) -> tuple[torch.Tensor, list[dict[str, float]]]:
        """The stylised image (3×H×W in [0, 1], the content's size) and the loss curve."""
        net = self.features.to(device).eval()
        loss_fn = PerceptualLoss(net, knobs.style_layers, knobs.content_layer, knobs.content_weight,
                                 knobs.style_weight, knobs.tv_weight)
        c = content[None].to(device)
        s = [im[None].to(device) for im in styles]
        if knobs.preserve_color:
            s = [luminance_only(im, like=c) for im in s]
            c_opt = luminance_only(c)
        else:
            c_opt = c
        loss_fn.set_style(s, knobs.blend())
        target = loss_fn.content_target(c_opt) if knobs.content_weight else None
        if knobs.init == "content":
            start = c_opt
        elif knobs.init == "style":
            start = F.interpolate(s[0], size=c.shape[-2:], mode="bilinear", align_corners=False)
        else:
            start = torch.rand(c.shape, generator=generator).to(device)
        result, curve = optimise(loss_fn, start, target, knobs, on_step)
        if knobs.preserve_color:
            result = recolour(result, c)
        return result[0].cpu(), curve

    def evaluate(self, context) -> dict[str, float]:
        raise GenrunError("model=style_transfer has no held-out data to measure (it optimises one image); "
                          "run: genrun sample model=style_transfer content=FILE style=FILE")

    # --- genrun sample ----------------------------------------------------------------------------------------

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        from genrun.progress import bar

        check_mode(request, self.modes, "style_transfer")
        knobs = request.knobs
        self.features.check_layers(knobs.style_layers or STYLE_LAYERS, "style_layers")
        content_layer = knobs.content_layer or self.features.content_layer
        self.features.check_layers([content_layer], "content_layer")
        content, content_name = photos.load_photo(knobs.content, "content", "grace_hopper", knobs.size)
        photos.check_pixels(*content.shape[-2:], int(self.settings.get("max_pixels", 1_000_000)),
                            f"size={knobs.size}", "model.max_pixels")
        loaded = [photos.load_photo(spec, "style", "flower", knobs.size) for spec in knobs.styles()]
        styles, style_names = [s for s, _ in loaded], [n for _, n in loaded]
        writer = _event_writer(context.out_dir)
        started = time.perf_counter()
        with bar(f"style transfer ({knobs.optimizer}, {knobs.size} px)", knobs.steps) as shown:
            def on_step(terms):
                step = shown.done
                if writer is not None:
                    for key, value in terms.items():
                        writer.add_scalar(f"style_transfer/{key}", value, step)
                shown.advance()

            result, curve = self.stylize(content, styles, knobs, request.generator(), context.device, on_step)
        seconds = time.perf_counter() - started
        if writer is not None:
            writer.close()
        out = context.out_dir
        files = {"stylized": figures.save(figures.to_pil(result), out / "stylized.png")}
        files["picture"] = figures.save(self._picture(content, styles, result, content_name, style_names,
                                                      knobs, curve, request, out), out / "style_transfer.png")
        context.notes.append(f"feature network: {self.features.source}")
        if writer is not None:
            context.notes.append(f"loss curves: TensorBoard events in {out / 'tensorboard'}")
        context.results.update({"feature_network": self.features.source, "content": content_name,
                                "content_layer": content_layer,
                                "styles": style_names, "blend": knobs.blend(), "size": list(result.shape[-2:]),
                                "seconds": round(seconds, 2), "evaluations": len(curve),
                                "loss_start": curve[0], "loss_end": curve[-1],
                                "curve": {k: [round(c[k], 6) for c in curve] for k in curve[0]}})
        return files

    def _picture(self, content, styles, result, content_name, style_names, knobs, curve, request, out_dir):
        """Content, style image(s) and the result side by side, each shown at most 256 px on its long side."""
        tiles = [photos.fit_long_side(t, min(256, max(t.shape[-2:]))) for t in (content, *styles, result)]
        labels = ["content", *[f"style {k + 1}" if len(styles) > 1 else "style" for k in range(len(styles))],
                  "result"]
        blend = knobs.blend()
        names = [n.replace(" (", "\n(") for n in (content_name, *style_names)]  # narrow tiles: two lines
        captions = [names[0], *[f"{n}\nweight {w / sum(blend):.2g}" if len(styles) > 1 else n
                                for n, w in zip(names[1:], blend, strict=True)],
                    f"loss\n{curve[0]['loss']:.3g} -> {curve[-1]['loss']:.3g}"]
        title, subtitle = figures.headline(out_dir, "stylize", "neural style transfer (Gatys et al. 2016)",
                                           content_layer=knobs.content_layer or self.features.content_layer,
                                           optimizer=knobs.optimizer, steps=knobs.steps, size=knobs.size,
                                           init=knobs.init, content_weight=knobs.content_weight,
                                           style_weight=knobs.style_weight, tv_weight=knobs.tv_weight,
                                           preserve_color=knobs.preserve_color or None, seed=request.seed)
        subtitle += f"\nfeatures: {self.features.source}"
        return _sheet(tiles, title, subtitle, labels, captions)


def _sheet(tiles, title, subtitle, labels, captions):
    """figures.sheet of tiles of different shapes: each centred on a white canvas of the largest height and width."""
    h = max(t.shape[-2] for t in tiles)
    w = max(t.shape[-1] for t in tiles)
    padded = []
    for t in tiles:
        canvas = torch.ones(3, h, w)
        top, left = (h - t.shape[-2]) // 2, (w - t.shape[-1]) // 2
        canvas[:, top:top + t.shape[-2], left:left + t.shape[-1]] = t
        padded.append(canvas)
    return figures.sheet(padded, len(padded), title, subtitle, col_labels=labels, captions=captions, scale=1)


def _event_writer(out_dir: Path):
    """A TensorBoard event writer in the run directory (None if tensorboard is not installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"))


# --- fast style (Johnson et al. 2016): a trained feed-forward stylizer -----------------------------------------

@dataclass(frozen=True)
class FastStyleKnobs:
    image: str | None = knob(None, "photo to stylise: a file or grace_hopper | china | flower (default grace_hopper)")
    size: int | None = knob(None, "long side to stylise at (default: the image's own); written at that size")

    def check(self) -> None:
        if self.size is not None and self.size < 4:
            raise GenrunError(f"size={self.size}: must be at least 4 pixels")


class FastStylePipeline(Pipeline):
    """A trained image transformation net (component `transformer`, genrun.nets.transformer_net): one forward
    pass per image, any size."""

    components = ("transformer",)
    Knobs = FastStyleKnobs
    modes = ("stylize",)
    quality_after_training = False

    @torch.no_grad()
    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Stylised images in [0, 1] (B×3×H×W, on the transformer's device)."""
        return self.transformer(images).clamp(0, 1)

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        check_mode(request, self.modes, "fast_style")
        knobs = request.knobs
        photo, name = photos.load_photo(knobs.image, "image", "grace_hopper", knobs.size)
        photos.check_pixels(*photo.shape[-2:], 16_000_000, f"image={name}", "fast-style")
        self.to(context.device).eval()
        x = photo[None].to(context.device)
        self.apply(x)  # warm-up: the first call pays for allocation, not for stylising
        sync = torch.cuda.synchronize if context.device.type == "cuda" else (lambda: None)
        sync()
        started = time.perf_counter()
        result = self.apply(x)
        sync()
        ms = (time.perf_counter() - started) * 1000
        result = result[0].cpu()
        out = context.out_dir
        files = {"stylized": figures.save(figures.to_pil(result), out / "stylized.png")}
        style = self.settings.get("style", "?")
        title, subtitle = figures.headline(out, "stylize", f"fast style (Johnson et al. 2016): {name} in the "
                                           f"style of {style}", seed=request.seed)
        subtitle += (f"\none forward pass: {ms:.1f} ms at {photo.shape[-1]}x{photo.shape[-2]} on {context.device.type}"
                     f" · trained with features of {self.settings.get('feature_network', '?')}")
        tiles = [photos.fit_long_side(t, min(384, max(t.shape[-2:]))) for t in (photo, result)]
        files["picture"] = figures.save(figures.sheet(tiles, 2, title, subtitle, col_labels=["input", "stylised"],
                                                      scale=1), out / "fast_style.png")
        context.notes.append(f"stylised in {ms:.1f} ms (one forward pass, {context.device.type})")
        context.results.update({"image": name, "size": [photo.shape[-1], photo.shape[-2]], "milliseconds": ms,
                                "style": style, "feature_network": self.settings.get("feature_network")})
        return files

    @torch.no_grad()
    def evaluate(self, context) -> dict[str, float]:
        """Milliseconds per test image (one batched forward pass): what a feed-forward stylizer is for."""
        x = context.load_split("test")[0][:16].float().to(context.device)
        self.to(context.device).eval()
        self.apply(x[:1])
        started = time.perf_counter()
        self.apply(x)
        seconds = time.perf_counter() - started
        return {"test/ms_per_image": 1000 * seconds / max(1, len(x)), "test/n_images": float(len(x))}
