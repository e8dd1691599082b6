"""`genrun report <multirun dir>`: each job's overrides against its final metrics, as a table and a plot.

Reads only files (`<job>/.hydra/overrides.yaml`, `<job>/metrics.json`), so it needs neither Hydra nor torch
and works on sweeps copied from another machine. Failed jobs are listed as failed, with their error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from genrun.errors import GenrunError

USAGE = "genrun report MULTIRUN_DIR [--metrics a,b] [--out report.png]"


@dataclass
class Job:
    name: str
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def _read_overrides(job_dir: Path) -> dict[str, str]:
    import yaml

    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    return dict(str(item).split("=", 1) if "=" in str(item) else (str(item), "") for item in items)


def read_job(job_dir: Path) -> Job:
    overrides = _read_overrides(job_dir)
    path = job_dir / "metrics.json"
    if not path.is_file():
        return Job(job_dir.name, overrides, "unfinished", error="no metrics.json (still running, or killed)")
    try:
        payload = json.loads(path.read_text())
    except ValueError as err:
        return Job(job_dir.name, overrides, "unreadable", error=f"metrics.json: {err}")
    status = str(payload.get("status", "completed"))
    metrics = {k: float(v) for k, v in (payload.get("metrics") or {}).items() if _is_number(v)}
    return Job(job_dir.name, overrides, status, metrics, str(payload.get("error", "")))


def _is_number(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and value.lower() in ("nan", "inf", "-inf")


def find_jobs(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise GenrunError(f"{sweep_dir}: no such directory (pass a multirun directory: outputs/multirun/train/...)")
    dirs = [p for p in sweep_dir.iterdir()
            if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").is_file())]
    if not dirs:
        raise GenrunError(f"{sweep_dir}: no jobs found (expected sub-directories with .hydra/ or metrics.json)")

    def order(p: Path):
        head = p.name.split("_", 1)[0]
        return (0, int(head), p.name) if head.isdigit() else (1, 0, p.name)

    return [read_job(p) for p in sorted(dirs, key=order)]


def default_metrics(jobs: list[Job]) -> list[str]:
    """Final values only: `stage/name` keys, not Lightning's per-step / per-epoch duplicates."""
    keys = sorted({k for job in jobs for k in job.metrics})
    return [k for k in keys if "/" in k and not k.endswith(("_step", "_epoch"))]


def varying_keys(jobs: list[Job]) -> list[str]:
    """Override keys, those that differ between jobs first (they are what the sweep compares)."""
    keys = sorted({k for job in jobs for k in job.overrides})
    varies = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    return varies + [k for k in keys if k not in varies]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def table_rows(jobs: list[Job], keys: list[str], metrics: list[str]) -> list[list[str]]:
    rows = []
    for job in jobs:
        values = [_fmt(job.metrics.get(m)) for m in metrics] if job.status == "completed" else ["-"] * len(metrics)
        status = job.status if job.status == "completed" else f"{job.status}: {job.error}"
        rows.append([job.name, *[job.overrides.get(k, "") for k in keys], *values, status])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def plot(jobs: list[Job], keys: list[str], metrics: list[str], path: Path) -> Path:
    """One horizontal bar panel per metric; failed jobs appear as labelled gaps, not as zeros."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    shown = metrics[:6] or ["(no metrics)"]
    labels = [" ".join(f"{k}={job.overrides.get(k, '')}" for k in keys if len({j.overrides.get(k) for j in jobs}) > 1)
              or job.name for job in jobs]
    height = max(2.5, 0.35 * len(jobs) + 1.2)
    fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown) + 2.5, height), squeeze=False, sharey=True)
    positions = list(range(len(jobs)))
    for ax, metric in zip(axes[0], shown, strict=True):
        for i, job in enumerate(jobs):
            value = job.metrics.get(metric) if job.status == "completed" else None
            if value is None or not math.isfinite(value):
                ax.text(0, i, f" {job.status}" if job.status != "completed" else " n/a", va="center",
                        color="tab:red", fontsize=8)
            else:
                ax.barh(i, value, color="tab:blue")
                ax.text(value, i, f" {_fmt(value)}", va="center", fontsize=8)
        ax.set_title(metric, fontsize=9)
        ax.set_yticks(positions, labels, fontsize=8)
        ax.set_ylim(len(jobs) - 0.5, -0.5)  # first job on top; rows without bars keep their place
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(sweep_dir: Path, metrics: list[str] | None = None, out: Path | None = None) -> dict:
    jobs = find_jobs(sweep_dir)
    metrics = metrics or default_metrics(jobs)
    keys = varying_keys(jobs)
    header = ["job", *keys, *metrics, "status"]
    rows = table_rows(jobs, keys, metrics)
    csv_path = sweep_dir / "report.csv"
    write_csv(csv_path, header, rows)
    png = plot(jobs, keys, metrics, out or sweep_dir / "report.png")
    return {"jobs": jobs, "header": header, "rows": rows, "csv": csv_path, "png": png}


def print_table(header: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for name in header:
        table.add_column(name, overflow="fold")
    for row in rows:
        style = None if row[-1] == "completed" else "red"
        table.add_row(*row, style=style)
    Console().print(table)


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="genrun report", usage=USAGE,
                                     description="Table and plot of a sweep's overrides against final metrics.")
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multirun/train/<id>)")
    parser.add_argument("--metrics", default="", help="comma-separated metric names (default: all final ones)")
    parser.add_argument("--out", type=Path, default=None, help="plot file (default: <sweep_dir>/report.png)")
    options = parser.parse_args(args)
    wanted = [m for m in options.metrics.split(",") if m]
    try:
        result = report(options.sweep_dir, wanted, options.out)
    except GenrunError as err:
        import sys

        print(f"genrun: error: {err}", file=sys.stderr)
        return 1
    print_table(result["header"], result["rows"])
    failed = sum(job.status != "completed" for job in result["jobs"])
    print(f"{len(result['jobs'])} jobs, {failed} not completed")
    print(f"table: {result['csv']}")
    print(f"plot: {result['png']}")
    return 0
