"""The picture of a search: the optimisation history (every trial, the best so far) and parameter importances.

Pruned trials sit at the last value they reported (crosses), failed ones are marked on the axis, so the
history shows what the pruner stopped and where; the importance panel says how it was computed.
"""

from __future__ import annotations

import math
from pathlib import Path

from genrun.report_search import Search, _last_reported


def _history(ax, search: Search) -> None:
    complete = [(t.number, t.value) for t in search.trials if t.state.name == "COMPLETE"
                and t.value is not None and math.isfinite(t.value)]
    pruned = [(t.number, _last_reported(t)) for t in search.trials if t.state.name == "PRUNED"
              and _last_reported(t) is not None and math.isfinite(_last_reported(t))]
    failed = [t.number for t in search.trials if t.state.name == "FAIL"]
    if complete:
        ax.plot(*zip(*complete, strict=True), "o", color="tab:blue", label="completed trial", zorder=3)
        pick = min if search.direction == "minimize" else max
        best, xs, ys = None, [], []
        for number, value in complete:
            best = value if best is None else pick(best, value)
            xs.append(number)
            ys.append(best)
        last = search.trials[-1].number
        ax.step([*xs, last], [*ys, ys[-1]], where="post", color="goldenrod", label="best so far", zorder=2)
    if pruned:
        ax.plot(*zip(*pruned, strict=True), "x", color="tab:orange", markersize=8,
                label="pruned (last value reported)", zorder=3)
    for i, number in enumerate(failed):
        ax.axvline(number, color="tab:red", alpha=0.25, linewidth=6, label="failed" if i == 0 else None)
    if search.best is not None:
        ax.plot(search.best.number, search.best.value, "*", color="gold", markeredgecolor="black", markersize=16,
                label=f"best: trial {search.best.number}", zorder=4)
    said = "lower is better" if search.direction == "minimize" else "higher is better"
    ax.set_title(f"optimisation history ({said})", fontsize=10)
    ax.set_xlabel("trial number")
    ax.set_ylabel(search.metric)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _importance(ax, search: Search) -> None:
    from genrun.report import short_names

    ax.set_title(f"parameter importance ({search.importance_note})", fontsize=10)
    if not search.importances:
        ax.text(0.5, 0.5, search.importance_note, ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    names = short_names(list(search.importances))
    keys = list(search.importances)[::-1]  # most important on top
    ax.barh([names[k] for k in keys], [search.importances[k] for k in keys], color="tab:blue")
    for y, key in enumerate(keys):
        ax.annotate(f"{search.importances[key]:.2f}", (search.importances[key], y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_xlim(0, max(search.importances.values()) * 1.2 or 1)
    ax.set_xlabel(f"share of the variance of {search.metric} explained")
    ax.set_ylabel("parameter")


def save_search_plot(search: Search, path: Path) -> list[str]:
    """Writes the figure; returns the panel titles."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    history, importance = fig.subplots(1, 2, width_ratios=[3, 2])
    _history(history, search)
    _importance(importance, search)
    tally = ", ".join(f"{search.count(s)} {s.lower()}" for s in ("COMPLETE", "PRUNED", "FAIL") if search.count(s))
    best = (f"best {search.metric} = {search.best.value:.6g} at trial {search.best.number}"
            if search.best is not None else "no completed trial")
    fig.suptitle(f"search {search.name!r}: {len(search.trials)} trials ({tally}); {best}", fontsize=11)
    fig.savefig(path, dpi=110)
    return [ax.get_title() for ax in fig.axes]
