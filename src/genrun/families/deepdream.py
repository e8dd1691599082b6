"""DeepDream (Mordvintsev et al. 2015): gradient ascent on a frozen network's layer activations, starting from
a photo (or noise), so the image comes to show what those layers respond to.

Each step maximises the weighted mean squared activation of the chosen layers, normalised by the mean
absolute gradient (so the step size is in pixel units whatever the layer's scale), after a random jitter
(shift) of the image that is undone afterwards, optionally with the gradient blurred. Octaves: the image is
dreamt at `octaves` sizes, each `octave_scale` times the last, from the smallest up; the detail a smaller
octave added is upscaled and re-injected into the next (Google's notebook). No training: `genrun sample
model=deepdream` builds this pipeline from configs/model/deepdream.yaml.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class DreamKnobs:
    image: str | None = knob(None, "photo to dream on: a file or grace_hopper | china | flower (default grace_hopper)")
    start: str = knob("photo", "photo: start from the image; noise: from grey noise of its size")
    layers: dict | None = knob(None, "layer weights, e.g. {Mixed_5b: 1.0, Mixed_6a: 0.5} (default: the net's own)")
    octaves: int = knob(4, "image sizes dreamt at, smallest first (fewer where the net's minimum size is reached)")
    octave_scale: float = knob(1.4, "size ratio between successive octaves")
    iterations: int = knob(10, "gradient-ascent steps per octave")
    step_size: float = knob(0.02, "pixels move by this much per step where the gradient is average")
    jitter: int = knob(16, "random shift of the image before each step, in pixels (0: none)")
    smooth: float = knob(0.0, "Gaussian blur of the gradient, sigma in pixels (0: none)")
    size: int | None = knob(None, "long side to dream at (default: the image's own); written at the input's size")

    def check(self) -> None:
        if self.start not in ("photo", "noise"):
            raise GenrunError(f"start={self.start}: choose photo or noise")
        if self.octaves < 1:
            raise GenrunError(f"octaves={self.octaves}: must be at least 1")
        if self.octave_scale <= 1.0:
            raise GenrunError(f"octave_scale={self.octave_scale}: must be above 1 (each octave larger than the last)")
        if self.iterations < 1:
            raise GenrunError(f"iterations={self.iterations}: must be at least 1")
        if self.step_size <= 0:
            raise GenrunError(f"step_size={self.step_size}: must be positive")
        if self.jitter < 0 or self.smooth < 0:
            raise GenrunError("jitter and smooth: must be 0 (off) or positive")
        if self.size is not None and self.size < 8:
            raise GenrunError(f"size={self.size}: must be at least 8 pixels")
        if self.layers is not None:
            if not isinstance(self.layers, dict) or not self.layers:
                raise GenrunError(f"layers={self.layers}: give a mapping of layer names to weights, "
                                  "e.g. layers={Mixed_5b:1.0,Mixed_6a:0.5}")
            for name, weight in self.layers.items():
                if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                    raise GenrunError(f"layers.{name}={weight!r}: a layer's weight must be a number")


def octave_shapes(h: int, w: int, octaves: int, scale: float, min_size: int) -> list[tuple[int, int]]:
    """The (h, w) of each octave, smallest first, the last the full size; octaves the net cannot take dropped."""
    shapes = [(round(h / scale**k), round(w / scale**k)) for k in range(octaves)]
    return [s for s in reversed(shapes) if min(s) >= min_size]


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    kernel = 2 * math.ceil(2 * sigma) + 1
    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def objective(net, x: torch.Tensor, layers: dict[str, float]) -> torch.Tensor:
    """The weighted mean squared activation of `layers` (what DeepDream climbs)."""
    acts = net(x, layers)
    return sum(float(w) * acts[name].pow(2).mean() for name, w in layers.items())


def ascend(net, x: torch.Tensor, layers: dict[str, float], knobs,
           generator: torch.Generator) -> tuple[torch.Tensor, list[float]]:
    """`knobs.iterations` normalised gradient-ascent steps on `x` (1×3×H×W in [0, 1]); the objective before each."""
    values = []
    for _ in range(knobs.iterations):
        dy, dx = (torch.randint(-knobs.jitter, knobs.jitter + 1, (2,), generator=generator).tolist()
                  if knobs.jitter else (0, 0))
        shifted = torch.roll(x, (dy, dx), (2, 3)).detach().requires_grad_(True)
        value = objective(net, shifted, layers)
        (grad,) = torch.autograd.grad(value, shifted)
        grad = torch.roll(grad, (-dy, -dx), (2, 3))
        if knobs.smooth:
            grad = blur(grad, knobs.smooth)
        x = (x + knobs.step_size * grad / (grad.abs().mean() + 1e-12)).clamp(0, 1).detach()
        values.append(float(value.detach()))
    return x, values


class DeepDreamPipeline(Pipeline):
    """A frozen feature network (component `features`, genrun.nets.feature_nets) and gradient ascent."""

    components = ("features",)
    Knobs = DreamKnobs
    modes = ("dream",)
    quality_after_training = False

    @classmethod
    def from_config(cls, settings: dict) -> DeepDreamPipeline:
        """The pipeline from configs/model/deepdream.yaml: the network its `weights` and `fallback` say."""
        from genrun.nets.feature_nets import dream_features

        net = dream_features(str(settings.get("weights", "auto")), str(settings.get("fallback", "classifier")),
                             settings.get("data_dir"), settings.get("classifier_cache_dir"),
                             settings.get("classifier_epochs"))
        return cls({"features": net}, settings)

    def default_layers(self) -> dict[str, float]:
        """Google's choice for InceptionV3 (mixed 3-5 in Keras' numbering); the last two stages of another net."""
        net = self.features
        if net.short_name == "InceptionV3":
            return {"Mixed_5b": 1.0, "Mixed_5c": 1.5, "Mixed_5d": 2.0, "Mixed_6a": 2.5}
        return {name: 1.0 for name in net.layer_names[-2:]}

    def dream(self, image: torch.Tensor, knobs, generator: torch.Generator,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, list[torch.Tensor], dict]:
        """(the dream at the working size, the image after each octave, per-octave objective and timing)."""
        net = self.features.to(device).eval()
        layers = dict(knobs.layers) if knobs.layers else self.default_layers()
        net.check_layers(layers, "layers")
        base = image[None].to(device)
        shapes = octave_shapes(*base.shape[-2:], knobs.octaves, knobs.octave_scale, net.min_size)
        if not shapes:
            raise GenrunError(f"size: the image ({base.shape[-1]}x{base.shape[-2]}) is smaller than the "
                              f"{net.min_size} pixels {net.short_name} needs")
        detail, x, strip, record = None, base, [], []
        for shape in shapes:
            started = time.perf_counter()
            octave_base = F.interpolate(base, size=shape, mode="bilinear", align_corners=False, antialias=True)
            detail = torch.zeros_like(octave_base) if detail is None else F.interpolate(
                detail, size=shape, mode="bilinear", align_corners=False)
            x, values = ascend(net, (octave_base + detail).clamp(0, 1), layers, knobs, generator)
            detail = x - octave_base
            final = float(objective(net, x, layers).detach())
            strip.append(x[0].detach().cpu())
            record.append({"height": shape[0], "width": shape[1], "objective": [*values, final],
                           "seconds": round(time.perf_counter() - started, 3)})
        return x[0].detach().cpu(), strip, {"layers": layers, "octaves": record}

    def evaluate(self, context) -> dict[str, float]:
        raise GenrunError("model=deepdream has no held-out data to measure (it optimises one image); "
                          "run: genrun sample model=deepdream image=FILE")

    # --- genrun sample ----------------------------------------------------------------------------------------

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        check_mode(request, self.modes, "deepdream")
        knobs, generator = request.knobs, request.generator()
        net = self.features
        layers = dict(knobs.layers) if knobs.layers else self.default_layers()
        net.check_layers(layers, "layers")  # before any work
        photo, name = photos.load_photo(knobs.image)
        height, width = photo.shape[-2:]
        work = photos.fit_long_side(photo, knobs.size) if knobs.size else photo
        photos.check_pixels(*work.shape[-2:], int(self.settings.get("max_pixels", 4_000_000)),
                            f"image={name}" if knobs.size is None else f"size={knobs.size}", "model.max_pixels")
        if knobs.start == "noise":
            work = (0.5 + 0.1 * torch.randn(work.shape, generator=generator)).clamp(0, 1)
            name = f"noise ({name}'s size)"
        dreamt, strip, record = self.dream(work, knobs, generator, context.device)
        if dreamt.shape[-2:] != (height, width):
            dreamt = F.interpolate(dreamt[None], size=(height, width), mode="bicubic", align_corners=False)[0]
        dreamt = dreamt.clamp(0, 1)
        out = context.out_dir
        files = {"dream": figures.save(figures.to_pil(dreamt), out / "dream.png")}
        files["octaves"] = figures.save(self._strip(work, strip, record, knobs, request, name, out),
                                        out / "octaves.png")
        source = net.source
        context.notes.append(f"feature network: {source}")
        first, last = record["octaves"][0]["objective"][0], record["octaves"][-1]["objective"][-1]
        context.results.update({"feature_network": source, "image": name, "input_size": [width, height],
                                "objective_start": first, "objective_end": last, **record})
        return files

    def _strip(self, start: torch.Tensor, strip: list[torch.Tensor], record: dict, knobs, request, name: str,
               out_dir: Path):
        """The start image and the image after each octave, all shown at the full working size."""
        size = start.shape[-2:]
        tiles = [start] + [F.interpolate(t[None], size=size, mode="nearest")[0] for t in strip]
        long_side = max(size)
        if long_side > 256:  # keep the strip readable and small: the dream itself is dream.png
            tiles = [photos.fit_long_side(t, 256) for t in tiles]
        labels = ["start"] + [f"octave {k + 1}: {o['width']}x{o['height']}" for k, o in enumerate(record["octaves"])]
        captions = [""] + [f"objective\n{o['objective'][0]:.3g} -> {o['objective'][-1]:.3g}" for o in record["octaves"]]
        layers = ", ".join(f"{k}:{v:g}" for k, v in record["layers"].items())
        title, subtitle = figures.headline(out_dir, "dream", f"{name}, octaves smallest to largest",
                                           iterations=knobs.iterations, step_size=knobs.step_size,
                                           octave_scale=knobs.octave_scale, jitter=knobs.jitter,
                                           smooth=knobs.smooth or None, seed=request.seed)
        subtitle += f"\nfeatures: {self.features.source}\nlayers {layers} (objective: weighted mean squared activation)"
        return figures.sheet(tiles, len(tiles), title, subtitle, col_labels=labels, captions=captions, scale=1)
