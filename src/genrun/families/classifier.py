"""Classifier-family inference without Lightning: predictions on test images, test accuracy, and accuracy
under adversarial attack (`genrun evaluate model=classifier attack=fgsm`, genrun.evaluation.adversarial).

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
from genrun.evaluation import adversarial
from genrun.families.base import (
    EvalContext,
    SampleContext,
    SampleRequest,
    check_mode,
    check_nrow,
    knobs_from_settings,
)
from genrun.nets.classifier import ConvClassifier
from genrun.pipeline import Pipeline, knob
from genrun.runs import test_is_validation
from genrun.streaming import PREVIEW_LIMIT, picture_path, shown_note

# "predict" first: it is what a classifier does, so `mode=null` (and its run directory) says so; "prior" stays
# accepted, as a request built without a mode asks for it.
MODES = ("predict", "prior")
# Test images in the adversarial-examples picture: one per class, correctly classified before the attack.
EXAMPLES = 10


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


def evaluate(net: ConvClassifier, context: EvalContext, adversarial_eps: float = 0.0) -> dict[str, float]:
    """Test accuracy and loss; with `attack=`, accuracy under that attack at each eps (table, plot, picture)."""
    knobs = knobs_from_settings(ClassifierKnobs, context.settings)
    spec = knobs.attack_spec()
    if spec is not None and spec.target is not None and spec.target >= net.num_classes:
        raise GenrunError(f"target={spec.target}: this classifier has classes 0 to {net.num_classes - 1}")
    x, y = context.load_split("test")
    batch = int(context.settings.get("batch_size", 500))
    net = net.to(context.device).eval()
    loss, correct = 0.0, 0
    for start in range(0, len(x), batch):
        logits = net(x[start : start + batch].to(context.device).float())
        target = y[start : start + batch].to(context.device)
        loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(1) == target).sum().item()
    metrics = {"test/acc": correct / len(x), "test/loss": loss / len(x), "test/n_images": float(len(x))}
    if spec is not None:
        count = knobs.attack_images or len(x)
        metrics |= _attack(net, x[:count], y[:count], spec, context, batch, adversarial_eps)
    return metrics


def _attack(net: ConvClassifier, x, y, spec: adversarial.AttackSpec, context: EvalContext, batch: int,
            adversarial_eps: float) -> dict[str, float]:
    """Accuracy under `spec` at each eps: printed as a table, plotted, pictured, returned as metrics."""
    from genrun import figures
    from genrun.budget import Budget
    from genrun.evaluation import adversarial_figures as shown

    seed = int(context.settings.get("seed", 0))
    budget = Budget(f"attack={spec.attack} at {len(spec.eps)} eps on {len(x):,} test images",
                    context.settings.get("max_minutes"))
    report = adversarial.run_attack(net, x, y, spec, context.device, batch, seed, budget)
    split = "validation" if test_is_validation(context.data_info) else "test"
    trained = (f"trained adversarially at eps={adversarial_eps:g}" if adversarial_eps > 0
               else "trained on clean images")
    shown.print_table(report, trained, split)
    name = spec.name
    out = context.out_dir
    out.mkdir(parents=True, exist_ok=True)
    title, subtitle = figures.headline(out, None, spec.description, attack=spec.attack, target=spec.target)
    shown.accuracy_plot(report, out / f"attack_{name}_accuracy.png", f"{title}\nmodel {trained.replace('eps=', 'ε=')}",
                        subtitle, net.num_classes, split)
    names = figures.class_names(context.data_info, net.num_classes)
    chosen = adversarial.pick_examples(net, x, y, EXAMPLES, spec.target, context.device)
    if len(chosen):
        headline = figures.headline(out, None, f"{spec.description} (model {trained})")
        shown.examples_picture(net, x[chosen], y[chosen], spec, names, out / f"attack_{name}_examples.png",
                               headline, context.device, seed)
    return report.metrics()


@dataclass(frozen=True)
class ClassifierKnobs:
    nrow: int | None = knob(None, "images per row of the predictions picture (default: square-ish)")
    attack: str | None = knob(None, "evaluate: fgsm, bim or pgd: accuracy under that adversarial attack at each eps")
    eps: float | tuple[float, ...] | None = knob(
        None, "evaluate: the attack's L-infinity budgets in the data's [0, 1] units (default [0.1,0.2,0.25,0.3])")
    target: int | None = knob(None, "evaluate: push every image towards this class (default: untargeted)")
    attack_steps: int | None = knob(None, f"evaluate: steps of bim/pgd (default {adversarial.DEFAULT_STEPS})")
    step_size: float | None = knob(None, "evaluate: each bim/pgd step in [0, 1] units (default 2.5*eps/steps)")
    attack_images: int | None = knob(None, "evaluate: attack only the first N test images (default: all)")

    def __post_init__(self):
        if isinstance(self.eps, list):
            object.__setattr__(self, "eps", tuple(self.eps))
        elif self.eps is not None and not isinstance(self.eps, tuple):
            object.__setattr__(self, "eps", (self.eps,))

    def check(self) -> None:
        check_nrow(self.nrow)
        if self.attack is None:
            given = {k: v for k, v in (("eps", self.eps), ("target", self.target),
                                       ("attack_steps", self.attack_steps), ("step_size", self.step_size),
                                       ("attack_images", self.attack_images))
                     if v is not None}
            if given:
                key, value = next(iter(given.items()))
                value = f"[{','.join(f'{v:g}' for v in value)}]" if isinstance(value, tuple) else value
                raise GenrunError(f"{key}={value}: a setting of an attack; add attack=fgsm, bim or pgd")
            return
        adversarial.check_attack(self.attack)
        if self.eps is not None:
            adversarial.check_eps(self.eps)
        if self.target is not None and (isinstance(self.target, bool) or self.target < 0):
            raise GenrunError(f"target={self.target}: a class number, 0 or more")
        for key, value in (("attack_steps", self.attack_steps), ("step_size", self.step_size)):
            if value is not None and self.attack == "fgsm":
                raise GenrunError(f"{key}={value}: FGSM takes one step of eps; {key} is for attack=bim or pgd")
        if self.attack_steps is not None and self.attack_steps < 1:
            raise GenrunError(f"attack_steps={self.attack_steps}: must be at least 1")
        if self.attack_images is not None and self.attack_images < 1:
            raise GenrunError(f"attack_images={self.attack_images}: must be at least 1 (or null for all)")
        if self.step_size is not None and not 0 < self.step_size <= 1:
            raise GenrunError(f"step_size={self.step_size}: must be in (0, 1], the data's pixel range")

    def attack_spec(self) -> adversarial.AttackSpec | None:
        """What `attack=` asks for (None: no attack)."""
        if self.attack is None:
            return None
        self.check()
        return adversarial.AttackSpec(self.attack, self.eps or adversarial.DEFAULT_EPS, self.target,
                                      self.attack_steps or adversarial.DEFAULT_STEPS, self.step_size)


class ClassifierPipeline(Pipeline):
    """An image classifier: predictions on test images (sample), accuracy and loss, and accuracy under
    adversarial attack (evaluate). Training ends with the FGSM table at the default eps, so every classifier
    run says how robust it is (settings: `adversarial_eps`, the budget it was trained with, 0 for clean)."""

    components = ("net",)
    modes = MODES
    Knobs = ClassifierKnobs
    after_training = {"attack": "fgsm"}

    def sample(self, request: SampleRequest, context: SampleContext) -> dict[str, Path]:
        return sample(self.net, request, context)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        return evaluate(self.net, context, float(self.settings.get("adversarial_eps", 0.0)))
