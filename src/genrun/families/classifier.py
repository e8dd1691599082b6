"""Classifier-family inference without Lightning: predictions on test images, and test accuracy.

"Sampling" a classifier draws test images at random (at most the whole test split) and writes them with the
predicted classes: a JSON file with every prediction, and a grid of the first PREVIEW_LIMIT (predicted
class and probability under each image, red where it is wrong).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow
from genrun.nets.classifier import ConvClassifier
from genrun.pipeline import Pipeline, knob
from genrun.streaming import PREVIEW_LIMIT, shown_note

MODES = ("prior", "predict")
LABEL_STRIP, MIN_TILE = 14, 56


@torch.no_grad()
def predict(net: ConvClassifier, x: torch.Tensor, device, temperature: float = 1.0, batch_size: int = 500
            ) -> torch.Tensor:
    """Class probabilities, softmax(logits / temperature) (temperature 0: one-hot on the arg max)."""
    net = net.to(device).eval()
    logits = torch.cat([net(x[s : s + batch_size].to(device)).float().cpu() for s in range(0, len(x), batch_size)])
    if temperature == 0:
        return F.one_hot(logits.argmax(1), logits.shape[1]).float()
    return (logits / temperature).softmax(1)


def sample(net: ConvClassifier, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
    check_mode(request, MODES, "classifier")
    try:
        x, y = context.load_split("test")
    except KeyError:
        raise GenrunError("this classifier checkpoint names no dataset to draw test images from") from None
    order = torch.randperm(len(x), generator=request.generator())[: request.num_samples]
    if len(order) < request.num_samples:
        context.notes.append(f"num_samples={request.num_samples}: the test split has {len(x)} images; "
                             f"all {len(x)} are predicted")
    x, y = x[order].float().cpu(), y[order].cpu()
    probs = predict(net, x, context.device, request.temperature)
    confidence, predicted = probs.max(1)
    names = context.data_info.get("classes") or [str(k) for k in range(net.num_classes)]
    out = context.out_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"index": int(i), "label": int(t), "predicted": int(p), "probability": round(float(c), 4),
             "class": names[int(p)]} for i, t, p, c in zip(order, y, predicted, confidence, strict=True)]
    files = {"predictions": out / "predictions.json", "grid": out / "predictions.png"}
    accuracy = float((predicted == y).float().mean())
    files["predictions"].write_text(json.dumps({"accuracy_on_these": accuracy, "predictions": rows}, indent=1) + "\n")
    shown = min(len(x), PREVIEW_LIMIT)
    _labelled_grid(x[:shown], predicted[:shown], confidence[:shown], (predicted == y)[:shown], names, files["grid"],
                   request.nrow)
    note = shown_note(files["grid"], shown, len(x), files["predictions"], "predictions")
    if note:
        context.notes.append(note)
    return files


def _labelled_grid(x, predicted, confidence, correct, names, path: Path, nrow: int | None) -> Path:
    from PIL import Image, ImageDraw

    n, _, h, w = x.shape
    scale = max(1, math.ceil(MIN_TILE / max(h, w)))
    th, tw = h * scale, w * scale
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = Image.new("RGB", (nrow * (tw + 2) + 2, rows * (th + LABEL_STRIP + 2) + 2), "white")
    draw = ImageDraw.Draw(canvas)
    for i in range(n):
        r, c = divmod(i, nrow)
        left, top = 2 + c * (tw + 2), 2 + r * (th + LABEL_STRIP + 2)
        pixels = x[i].clamp(0, 1).mul(255).round().to(torch.uint8)
        pixels = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
        tile = Image.fromarray(pixels.permute(1, 2, 0).numpy()).resize((tw, th), Image.NEAREST)
        canvas.paste(tile, (left, top))
        text = f"{names[int(predicted[i])]}: {float(confidence[i]):.2f}"
        draw.text((left, top + th + 1), text[:12], fill=(0, 0, 0) if correct[i] else (200, 0, 0))
    canvas.save(path)
    return path


def evaluate(net: ConvClassifier, context: EvalContext) -> dict[str, float]:
    x, y = context.load_split("test")
    batch = int(context.settings.get("batch_size", 500))
    net = net.to(context.device).eval()
    loss, correct = 0.0, 0
    for start in range(0, len(x), batch):
        logits = net(x[start : start + batch].to(context.device).float())
        target = y[start : start + batch].to(context.device)
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    return {"test/acc": correct / len(x), "test/loss": loss / len(x), "test/n_images": float(len(x))}


@dataclass(frozen=True)
class ClassifierKnobs:
    nrow: int | None = knob(None, "images per row of the predictions picture (default: square-ish)")

    def check(self) -> None:
        check_nrow(self.nrow)


class ClassifierPipeline(Pipeline):
    """An image classifier: predictions on test images (sample), accuracy and loss (evaluate)."""

    components = ("net",)
    modes = MODES
    Knobs = ClassifierKnobs

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        return sample(self.net, request, context)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        return evaluate(self.net, context)
