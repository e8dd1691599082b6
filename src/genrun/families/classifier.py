"""Classifier-family inference without Lightning: predictions on test images, and test accuracy.

"Sampling" a classifier draws test images at random (at most the whole test split) and writes them with the
predicted classes: a JSON file with every prediction, and a picture (predict.png) of the first PREVIEW_LIMIT
(predicted class and probability under each image; red, with the true class, where it is wrong).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genrun.errors import GenrunError
from genrun.families.base import EvalContext, SampleContext, SampleRequest, check_mode, check_nrow
from genrun.nets.classifier import ConvClassifier
from genrun.pipeline import Pipeline, knob
from genrun.streaming import PREVIEW_LIMIT, picture_path, shown_note

# "predict" first: it is what a classifier does, so `mode=null` (and its run directory) says so; "prior" stays
# accepted, as a request built without a mode asks for it.
MODES = ("predict", "prior")


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
    files = {"predictions": out / "predictions.json", "grid": picture_path(out, "predict")}
    accuracy = float((predicted == y).float().mean())
    files["predictions"].write_text(json.dumps({"accuracy_on_these": accuracy, "predictions": rows}, indent=1) + "\n")
    shown = min(len(x), PREVIEW_LIMIT)
    _labelled_grid(x[:shown], predicted[:shown], confidence[:shown], (predicted == y)[:shown], y[:shown], names,
                   files["grid"], request.nrow, out, request.temperature)
    note = shown_note(files["grid"], shown, len(x), files["predictions"], "predictions")
    if note:
        context.notes.append(note)
    return files


def _labelled_grid(x, predicted, confidence, correct, truth, names, path: Path, nrow: int | None, out_dir: Path,
                   temperature: float) -> Path:
    """Each test image upscaled, with its predicted class and probability under it and, where the prediction is
    wrong, the true class (in red)."""
    from genrun import figures

    captions = [figures.Caption(f"pred {names[int(p)]} {float(c):.2f}" + ("" if ok else f"\ntrue {names[int(t)]}"),
                                wrong=not bool(ok))
                for p, c, ok, t in zip(predicted, confidence, correct, truth, strict=True)]
    captions = [figures.Caption(c.text if c.wrong else c.text + "\n", c.wrong) for c in captions]  # rows line up
    wrong = int((~correct.bool()).sum())
    title = figures.headline(out_dir, "predict", f"{len(x):,} test images, predicted class and probability "
                             f"({wrong} wrong, in red with the true class)", temperature=temperature)
    return figures.save(figures.sheet(x, figures.columns(len(x), nrow), *title, captions=captions), path)


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
