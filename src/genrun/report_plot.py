"""The picture of a sweep: one dot plot per metric, the optimised metric first, the best job starred.

Dots on a y-range fitted to the data, not bars from zero: two runs at 211.6 and 214.3 must look different.
Failed and unfinished jobs keep their place on the x axis, marked, so a gap is never mistaken for a value.
"""

from __future__ import annotations

import math
from pathlib import Path

from genrun.report import (
    View,
    column_digits,
    direction_text,
    fmt_value,
    job_label,
    metric_direction,
    metric_unit,
    short_names,
    split_overrides,
)

MAX_PANELS = 6  # more panels than this are unreadable in one picture; the csv has every column


def _tick_labels(view: View) -> tuple[list[str], str]:
    """Each job by the overrides that vary (never the shared ones, even under --all)."""
    keys = split_overrides(view.jobs)[0]
    names = short_names(keys)
    if not keys:
        return [job.name for job in view.jobs], "job"
    if len(keys) == 1:
        return [job.overrides.get(keys[0], "") for job in view.jobs], names[keys[0]]
    labels = ["\n".join(f"{names[k]}={job.overrides.get(k, '')}" for k in keys) for job in view.jobs]
    return labels, "varying overrides"


def _limits(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * 0.18 or (abs(high) * 0.05 or 1.0)
    return low - pad, high + pad


def _panel(ax, view: View, metric: str, labels: list[str], xlabel: str) -> None:
    optimised = metric == view.optimized
    direction = view.direction if optimised else metric_direction(metric)
    values = [view.value(job, metric) for job in view.jobs]
    finite = [v for v in values if v is not None and math.isfinite(v)]
    digits = column_digits(values)
    xs = range(len(view.jobs))
    for x, job, value in zip(xs, view.jobs, values, strict=True):
        if value is None or not math.isfinite(value):
            why = "no value" if job.status == "completed" else job.status
            ax.axvspan(x - 0.35, x + 0.35, color="tab:red", alpha=0.08, linewidth=0)
            ax.text(x, 0.5, why, color="tab:red", fontsize=9, ha="center", va="center", rotation=90,
                    transform=ax.get_xaxis_transform())
            continue
        best = job is view.best  # starred in every panel: how the chosen run fares on the other metrics
        ax.plot(x, value, marker="*" if best else "o", markersize=18 if best else 8, linestyle="none",
                color="gold" if best else "tab:blue", markeredgecolor="black" if best else "tab:blue", zorder=3)
        ax.annotate(fmt_value(value, digits), (x, value), textcoords="offset points", xytext=(0, 10), ha="center",
                    fontsize=8, fontweight="bold" if best else "normal")
    if finite:
        ax.set_ylim(*_limits(finite))
        if optimised and view.best is not None:
            ax.axhline(view.best.metrics[metric], color="goldenrod", linestyle=":", linewidth=1, zorder=1)
    else:
        ax.set_yticks([])
    said = direction_text(direction)
    ax.set_title(f"{metric}" + (f" ({said})" if said else ""), fontsize=10,
                 fontweight="bold" if optimised else "normal")
    unit = metric_unit(metric)
    ax.set_ylabel(f"{metric} ({unit})" if unit else metric, fontsize=9)
    long = max((len(line) for label in labels for line in label.split("\n")), default=0)
    rotation = 0 if len(labels) * max(long, 1) <= 48 else 35
    ax.set_xticks(list(xs), labels, fontsize=8, rotation=rotation, ha="right" if rotation else "center")
    if view.best is not None:
        ax.get_xticklabels()[view.jobs.index(view.best)].set_fontweight("bold")
    ax.set_xlim(-0.6, len(view.jobs) - 0.4)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def build_figure(view: View):
    """The figure (not saved): its first axes is always the optimised metric."""
    from matplotlib.figure import Figure

    panels = view.metrics[:MAX_PANELS]
    labels, xlabel = _tick_labels(view)
    cols = 1 if len(view.jobs) > 12 else (2 if len(panels) == 4 else min(len(panels), 3))
    rows = math.ceil(len(panels) / cols)
    panel_width = min(max(5.5, 0.5 * len(view.jobs) + 2.0), 14.0)
    label_lines = max(label.count("\n") + 1 for label in labels)
    panel_height = 3.4 + 0.16 * label_lines
    fig = Figure(figsize=(panel_width * cols, panel_height * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, panels, strict=False):
        _panel(ax, view, metric, labels, xlabel)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    best = "no completed job logged it"
    if view.best is not None:
        best = (f"best {fmt_value(view.best.metrics[view.optimized], 6)} at job {view.best.number}"
                f" [{job_label(view, view.best)}]")
    fig.suptitle(f"sweep {view.sweep_dir.name}\n{view.optimized}, {direction_text(view.direction)}: {best}",
                 fontsize=11)
    return fig


def save_plot(view: View, path: Path) -> list[str]:
    """Writes the figure; returns the panel titles, the optimised metric's first."""
    import matplotlib

    matplotlib.use("Agg")
    fig = build_figure(view)
    fig.savefig(path, dpi=110)
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]
