"""Adversarial examples (Goodfellow et al. 2015): FGSM and its iterated forms, BIM and PGD.

Every attack works on images in the data's [0, 1] range with an L-infinity budget `eps` in the same units
(eps = 0.1 moves each pixel by at most a tenth of its range) and returns images clamped to [0, 1]. Untargeted
attacks climb the classifier's loss on the true label; targeted ones descend the loss on the target class.

- FGSM: one step, x + eps * sign(grad_x loss) (targeted: x - eps * sign(grad_x loss(target))).
- BIM (Kurakin et al. 2017): `steps` such steps of `step_size`, each projected back onto the eps ball around
  x and onto [0, 1]; starts at x.
- PGD (Madry et al. 2018): BIM from a uniformly random point of the eps ball.

The default step size, 2.5 * eps / steps, lets the iterate cross the ball and still settle on its surface
(Madry et al.'s rule). Plain torch: no Lightning, any nn.Module from images to class logits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genrun.errors import GenrunError

ATTACKS = ("fgsm", "bim", "pgd")
DEFAULT_EPS = (0.1, 0.2, 0.25, 0.3)
DEFAULT_STEPS = 10


def check_eps(eps: Iterable[float], key: str = "eps") -> tuple[float, ...]:
    """The budgets as floats, each in [0, 1] (the data's range); refused by name otherwise."""
    values = tuple(eps)
    if not values:
        raise GenrunError(f"{key}=[]: give at least one budget, e.g. {key}=[0.1,0.25]")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GenrunError(f"{key}={value!r}: expected a number in [0, 1] (the data's pixel range)")
        if not 0.0 <= float(value) <= 1.0:
            raise GenrunError(f"{key}={value:g}: must be in [0, 1], the data's pixel range (0.25 moves each "
                              f"pixel by a quarter of its range)")
    return tuple(float(v) for v in values)


def check_attack(name: str) -> str:
    if name not in ATTACKS:
        raise GenrunError(f"attack={name}: choose {', '.join(ATTACKS)}")
    return name


def input_gradient(net: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """d(summed cross-entropy of `labels`)/dx: each image's own gradient (the net is in eval mode)."""
    with torch.enable_grad():  # evaluation runs under no_grad; the attack needs the input's gradient
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(net(x).float(), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _direction(y: torch.Tensor, target: int | None) -> tuple[torch.Tensor, float]:
    """The labels whose loss the attack follows, and the sign it follows it with (up for the truth, down for a
    target)."""
    if target is None:
        return y, 1.0
    return torch.full_like(y, int(target)), -1.0


def fgsm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, target: int | None = None) -> torch.Tensor:
    """The fast gradient sign method: one step of eps along the sign of the loss gradient, clamped to [0, 1]."""
    labels, sign = _direction(y, target)
    grad = input_gradient(net, x, labels)
    return (x + sign * eps * grad.sign()).clamp(0.0, 1.0).detach()


def iterative(net: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = DEFAULT_STEPS,
              step_size: float | None = None, target: int | None = None, random_start: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """BIM (random_start False) or PGD (True): `steps` signed steps, each projected onto the eps ball around x
    and onto [0, 1]. `generator` (CPU) draws PGD's start."""
    if steps < 1:
        raise GenrunError(f"attack_steps={steps}: must be at least 1")
    alpha = 2.5 * eps / steps if step_size is None else float(step_size)
    labels, sign = _direction(y, target)
    low, high = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    adv = x.detach().clone()
    if random_start and eps > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype)
        adv = torch.max(torch.min(adv + (2 * noise - 1) * eps, high), low)
    for _ in range(steps):
        grad = input_gradient(net, adv, labels)
        adv = torch.max(torch.min(adv + sign * alpha * grad.sign(), high), low).detach()
    return adv


def perturb(net: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, eps: float, target: int | None = None,
            steps: int = DEFAULT_STEPS, step_size: float | None = None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """`attack` (fgsm, bim or pgd) at budget eps on a batch."""
    check_attack(attack)
    if attack == "fgsm":
        return fgsm(net, x, y, eps, target)
    return iterative(net, x, y, eps, steps, step_size, target, random_start=attack == "pgd", generator=generator)


@dataclass(frozen=True)
class AttackSpec:
    """What to run: the attack, its budgets, an optional target class, and the iterated attacks' steps."""

    attack: str
    eps: tuple[float, ...] = DEFAULT_EPS
    target: int | None = None
    steps: int = DEFAULT_STEPS
    step_size: float | None = None

    def __post_init__(self):
        check_attack(self.attack)
        object.__setattr__(self, "eps", check_eps(self.eps))

    @property
    def name(self) -> str:
        """In metric and file names: the attack, and the target class of a targeted one."""
        return self.attack + ("" if self.target is None else f"_target{self.target}")

    @property
    def description(self) -> str:
        how = "untargeted" if self.target is None else f"targeted at class {self.target}"
        if self.attack == "fgsm":
            return f"FGSM, {how}"
        size = "2.5*eps/steps" if self.step_size is None else f"{self.step_size:g}"
        start = ", random start" if self.attack == "pgd" else ""
        return f"{self.attack.upper()}, {how}, {self.steps} steps of {size}{start}"


@dataclass
class EpsResult:
    """The test split under one budget: accuracy on the true labels; for a targeted attack, how often the
    target class is predicted for images of other classes; the mean confidence of the wrong predictions."""

    eps: float
    correct: int = 0
    n: int = 0
    target_hits: int = 0
    n_other: int = 0  # images whose true class is not the target
    wrong_confidence_sum: float = 0.0
    wrong: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.n)

    @property
    def target_rate(self) -> float:
        return self.target_hits / max(1, self.n_other)

    @property
    def wrong_confidence(self) -> float:
        return self.wrong_confidence_sum / self.wrong if self.wrong else float("nan")


@dataclass
class AttackReport:
    spec: AttackSpec
    clean_accuracy: float
    n: int
    rows: list[EpsResult] = field(default_factory=list)

    def metrics(self, prefix: str = "test") -> dict[str, float]:
        """Flat figures for metrics.json: `test/fgsm/acc_eps0.25`, `test/pgd_target3/target_rate_eps0.1`."""
        name = self.spec.name
        out = {f"{prefix}/{name}/acc_eps0": self.clean_accuracy}  # on the attacked images: the table's first row
        for row in self.rows:
            key = f"{prefix}/{name}/%s_eps{row.eps:g}"
            out[key % "acc"] = row.accuracy
            if row.wrong:
                out[key % "wrong_conf"] = row.wrong_confidence
            if self.spec.target is not None:
                out[key % "target_rate"] = row.target_rate
        out[f"{prefix}/{name}/n_images"] = float(self.n)
        return out


def _record(row: EpsResult, logits: torch.Tensor, y: torch.Tensor, target: int | None) -> None:
    probs = logits.float().softmax(1)
    confidence, predicted = probs.max(1)
    right = predicted == y
    row.correct += int(right.sum())
    row.n += len(y)
    row.wrong += int((~right).sum())
    row.wrong_confidence_sum += float(confidence[~right].sum())
    if target is not None:
        other = y != target
        row.n_other += int(other.sum())
        row.target_hits += int((predicted[other] == target).sum())


def run_attack(net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, device: torch.device | str,
               batch_size: int = 250, seed: int = 0, budget=None) -> AttackReport:
    """Accuracy of `net` on (x, y) clean and under `spec` at each eps, batch by batch. `budget`
    (genrun.budget.Budget) refuses, after the first batch, a run estimated to outlast its time limit."""
    from genrun.budget import timed
    from genrun.progress import bar

    net = net.to(device).eval()
    generator = torch.Generator().manual_seed(int(seed))
    rows = [EpsResult(eps) for eps in spec.eps]
    clean = EpsResult(0.0)
    starts = range(0, len(x), batch_size)
    with bar(f"attack={spec.attack} at {len(spec.eps)} eps on {len(x):,} test images", len(starts)) as shown:
        for index, start in enumerate(starts):
            xb = x[start : start + batch_size].to(device).float()
            yb = y[start : start + batch_size].to(device)

            def batch(xb=xb, yb=yb):
                with torch.no_grad():
                    _record(clean, net(xb), yb, spec.target)
                for row in rows:
                    adv = perturb(net, xb, yb, spec.attack, row.eps, spec.target, spec.steps, spec.step_size,
                                  generator)
                    with torch.no_grad():
                        _record(row, net(adv), yb, spec.target)

            _, seconds = timed(batch)
            if index == 0 and budget is not None and len(starts) > 1:
                budget.check_rate(len(x) - len(xb), len(xb) / seconds)
            shown.advance()
    return AttackReport(spec, clean.accuracy, len(x), rows)


def pick_examples(net: nn.Module, x: torch.Tensor, y: torch.Tensor, count: int, target: int | None,
                  device: torch.device | str, batch_size: int = 500) -> torch.Tensor:
    """Indices of up to `count` test images the net classifies correctly, one per class in class order while
    classes last (images of the target class are left out: they have nowhere to go)."""
    net = net.to(device).eval()
    chosen, seen = [], set()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            predicted = net(x[start : start + batch_size].to(device).float()).argmax(1).cpu()
            for offset, (p, label) in enumerate(zip(predicted.tolist(), y[start : start + batch_size].tolist(),
                                                    strict=True)):
                if p == label and label != target and label not in seen:
                    seen.add(label)
                    chosen.append((label, start + offset))
            if len(chosen) >= count:
                break
    return torch.tensor([index for _, index in sorted(chosen)[:count]], dtype=torch.long)
