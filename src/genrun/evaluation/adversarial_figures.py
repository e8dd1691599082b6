"""What an attack on a classifier shows a reader: the accuracy-against-eps table (terminal) and plot, and the
panda/gibbon picture at digit scale (originals, amplified perturbations, adversarial images, each with the
predicted class and its probability)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from genrun.evaluation.adversarial import AttackReport, AttackSpec, perturb

EPS_AXIS = "ε, L∞ budget (fraction of the [0, 1] pixel range)"


def table_rows(report: AttackReport) -> list[tuple[str, ...]]:
    """eps, accuracy, error, [target rate,] mean confidence of the wrong predictions: clean first."""
    targeted = report.spec.target is not None
    rows = [("0 (clean)", f"{report.clean_accuracy:.2%}", f"{1 - report.clean_accuracy:.2%}",
             *(["-"] if targeted else []), "-")]
    for row in report.rows:
        confidence = "-" if math.isnan(row.wrong_confidence) else f"{row.wrong_confidence:.2f}"
        rows.append((f"{row.eps:g}", f"{row.accuracy:.2%}", f"{1 - row.accuracy:.2%}",
                     *([f"{row.target_rate:.2%}"] if targeted else []), confidence))
    return rows


def table_header(report: AttackReport) -> tuple[str, ...]:
    target = (f"predicted {report.spec.target}",) if report.spec.target is not None else ()
    return ("eps", "accuracy", "error", *target, "confidence when wrong")


def print_table(report: AttackReport, what: str, split: str = "test") -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report.spec.description}: {what}, {report.n:,} {split} images", title_justify="left")
    for name in table_header(report):
        table.add_column(name, justify="right")
    for row in table_rows(report):
        table.add_row(*row)
    Console(highlight=False).print(table)


def accuracy_plot(report: AttackReport, path: Path, title: str, subtitle: str, num_classes: int,
                  split: str = "test") -> Path:
    """Accuracy (and, for a targeted attack, the target's share) against eps, clean accuracy at eps = 0."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    eps = [0.0, *(row.eps for row in report.rows)]
    accuracy = [100 * report.clean_accuracy, *(100 * row.accuracy for row in report.rows)]
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.plot(eps, accuracy, marker="o", color="tab:blue", label="accuracy on the true labels")
    for e, a in zip(eps, accuracy, strict=True):
        ax.annotate(f"{a:.1f}", (e, a), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    if report.spec.target is not None:
        rate = [0.0, *(100 * row.target_rate for row in report.rows)]
        ax.plot(eps[1:], rate[1:], marker="s", color="tab:red",
                label=f"predicted as the target {report.spec.target} (other classes' images)")
    ax.axhline(100 / num_classes, color="grey", linestyle=":", linewidth=1, label=f"chance ({100 / num_classes:.0f}%)")
    ax.set_xlabel(EPS_AXIS)
    ax.set_ylabel(f"% of {report.n:,} {split} images")
    ax.set_ylim(-3, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{title}\n{subtitle}", fontsize=9)
    fig.savefig(path, dpi=110)
    return path


def examples_picture(net: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, names: list[str],
                     path: Path, headline: tuple[str, str], device, seed: int = 0) -> Path:
    """Columns: the chosen test images. Rows: the originals, then per eps the perturbation (amplified: mid-grey
    is 0, white +eps, black -eps) and the adversarial image; predicted class and probability under each image,
    red where the prediction is wrong."""
    from genrun import figures

    net = net.to(device).eval()
    x, y = x.to(device).float(), y.to(device)
    generator = torch.Generator().manual_seed(int(seed))

    def captioned(images):
        with torch.no_grad():
            confidence, predicted = net(images).float().softmax(1).max(1)
        return [figures.Caption(f"{names[int(p)]} {float(c):.2f}", wrong=int(p) != int(t))
                for p, c, t in zip(predicted, confidence, y, strict=True)]

    tiles, captions, labels = [*x.cpu()], captioned(x), ["original"]
    for eps in spec.eps:
        adv = perturb(net, x, y, spec.attack, eps, spec.target, spec.steps, spec.step_size, generator)
        delta = adv - x
        shown = (0.5 + delta / (2 * eps)) if eps > 0 else torch.full_like(delta, 0.5)
        tiles += [*shown.cpu(), *adv.cpu()]
        captions += [figures.Caption(f"±{float(d.abs().max()):.2f}") for d in delta] + captioned(adv)
        labels += [f"perturbation eps={eps:g}", f"adversarial eps={eps:g}"]
    title, subtitle = headline  # PIL's own font has no Greek letters: eps, spelt out
    subtitle += ("\nunder each image: predicted class and its probability (red: wrong); perturbation rows: "
                 "mid-grey = no change, white = +eps, black = -eps, ± its largest change")
    return figures.save(figures.sheet(tiles, len(x), title, subtitle, row_labels=labels, captions=captions,
                                      split_rows=list(range(1, len(labels), 2))), path)
