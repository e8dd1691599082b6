"""The terminal side of `genrun report`: a table that fits the terminal, then what it left out and where the files are.

Override columns may shrink (with an ellipsis); metric columns never fold, so a number is read whole. The
default view adds headline metrics only while the table still fits; `--all` prints at its natural width.
"""

from __future__ import annotations

from genrun.report import (
    View,
    column_digits,
    direction_text,
    fmt_value,
    job_label,
    known_metrics,
    short_names,
    status_word,
)

BEST = "★"


def _table(view: View, metrics: list[str], names: dict[str, str]):
    from rich import box
    from rich.table import Table

    with_status = any(job.status != "completed" for job in view.jobs)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("job", no_wrap=True)
    for key in view.keys:
        table.add_column(names[key], overflow="ellipsis", no_wrap=True, min_width=min(len(names[key]), 6))
    for metric in metrics:
        arrow = {"min": " ↓", "max": " ↑"}[view.direction] if metric == view.optimized else ""
        table.add_column(metric.replace("/", "/\n", 1) + arrow, justify="right", no_wrap=True)
    if with_status:
        table.add_column("status", no_wrap=True)
    digits = {m: column_digits([view.value(job, m) for job in view.jobs]) for m in metrics}
    for job in view.jobs:
        best = job is view.best
        cells = [f"{BEST if best else ' '}{job.number}", *[job.overrides.get(k, "") for k in view.keys]]
        cells += [fmt_value(view.value(job, m), digits[m]) if job.status == "completed" else "-" for m in metrics]
        if with_status:
            cells.append(status_word(job))
        style = "bold" if best else {"completed": None, "failed": "red"}.get(job.status, "dim")
        table.add_row(*cells, style=style)
    return table


def _natural_width(console, table) -> int:
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update(width=10_000), table).maximum


def fit_metrics(view: View, console, names: dict[str, str]) -> list[str]:
    """The optimised metric and as many further metric columns as fit the console, in the view's order."""
    shown = view.metrics[:1]
    for metric in view.metrics[1:]:
        if _natural_width(console, _table(view, [*shown, metric], names)) > console.width:
            break
        shown.append(metric)
    return shown


def print_report(view: View, result: dict, console=None) -> list[str]:
    """Print the table and the notes under it; returns the metric columns shown."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(highlight=False)
    names = short_names(view.keys)
    failed = sum(job.status != "completed" for job in view.jobs)
    says = direction_text(view.direction)
    if view.direction_source == "default":
        says += " (sweepers minimise unless told otherwise)"
    done = f"{failed} not completed" if failed else "all completed"
    console.print(escape(f"sweep {view.sweep_dir.name}: {len(view.jobs)} jobs, {done}"))
    console.print(escape(f"optimised: {view.optimized}, {says}"))
    if view.selection == "all":
        metrics = view.metrics
        table = _table(view, metrics, names)
        width = _natural_width(console, table)
        if width > console.width:
            console.print(f"(--all: the table is {width} columns wide, wider than this terminal's {console.width})")
            console = Console(highlight=False, width=width, file=console.file)
    else:
        metrics = fit_metrics(view, console, names)
        table = _table(view, metrics, names)
    console.print(table)
    for job in view.jobs:
        if job.status != "completed":
            console.print(escape(f"job {job.number} {status_word(job)} [{job_label(view, job, names)}]: {job.error}"))
    if view.best is not None:
        value = view.best.metrics[view.optimized]
        console.print(escape(f"{BEST} best: job {view.best.number} [{job_label(view, view.best, names)}] "
                             f"{view.optimized} = {fmt_value(value, 6)}"))
    elif any(job.status == "completed" for job in view.jobs):
        console.print(escape(f"no completed job logged {view.optimized}: no best run"))
    if view.constant:
        console.print(escape("same in every job: " + " ".join(f"{k}={v}" for k, v in view.constant.items())))
    for metric in view.dropped:
        console.print(escape(f"{metric} equals {view.optimized} in every job (not repeated)"))
    left = [m for m in view.metrics if m not in metrics]
    hidden = len([m for m in known_metrics(view.jobs) if m not in view.metrics])
    if left or (hidden and view.selection == "default"):
        more = f"{len(left)} headline metrics did not fit (see the csv); " if left else ""
        console.print(escape(f"{more}{hidden} more metrics: --metrics a,b or --all"))
    console.print(escape(f"table: {result['csv']}"), soft_wrap=True)
    console.print(escape(f"plot: {result['png']}"), soft_wrap=True)
    return metrics
