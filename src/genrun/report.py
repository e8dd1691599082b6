"""`genrun report <multirun dir>`: a sweep's jobs against the metric it optimised, as a table and a plot.

Reads only files (`multirun.yaml`, `<job>/.hydra/*.yaml`, `<job>/metrics.json`), so it needs neither Hydra nor
torch and works on sweeps copied from another machine. The default view is what a person compares: the
overrides that vary, the optimised metric, then the family's headline metrics; `--metrics` and `--all` show
more. Each view writes its own files, so one view never replaces another's.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import hashlib
import json
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from genrun.errors import GenrunError
from genrun.headlines import headline, is_constant, reading_order

USAGE = "genrun report MULTIRUN_DIR [--metrics a,b | --all] [--out PLOT.png] [--force]"
# On a search (a directory with search.json) the default view is the study's: trials, best command, history and
# importances (genrun/report_search.py); --metrics or --all compare its jobs like any sweep's.
DEFAULT_METRIC = "val/loss"  # configs/train.yaml's optimized_metric
RUNNING_WINDOW_S = 600  # a job without metrics.json whose files changed this recently is taken as running

_HIGHER = re.compile(r"(^|/)(\w*acc|precision|recall|inception_score|classes_covered|modes_covered|hq_fraction"
                     r"|\w*_per_sec)$")
_LOWER = re.compile(r"(^|/)(\w*loss|\w*fid\w*|kid|nll\w*|bits_per_\w+|nats_per_\w+|perplexity|swd|\w*mse"
                    r"|near_copy_fraction|coverage_kl|mode_kl|memorization_ratio)$")
_UNITS = (("bits_per_", "bits/"), ("nats_per_", "nats/"), ("nll", "nats"), ("images_per_sec", "images/s"),
          ("tokens_per_sec", "tokens/s"), ("points_per_sec", "points/s"), ("items_per_sec", "items/s"))


@dataclass
class Job:
    name: str
    overrides: dict[str, str]
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def number(self) -> str:
        head = self.name.split("_", 1)[0]
        return head if head.isdigit() else self.name


@dataclass
class View:
    """What one `genrun report` call shows: the jobs, which columns, and the best job by the optimised metric."""

    sweep_dir: Path
    jobs: list[Job]
    keys: list[str]  # override columns
    constant: dict[str, str]  # overrides every job shares (named once, not as columns)
    optimized: str
    direction: str  # "min" or "max"
    direction_source: str
    metrics: list[str]  # metric columns, the optimised metric first
    selection: str  # "default", "all" or the --metrics list: names the files
    best: Job | None = None
    dropped: list[str] = field(default_factory=list)  # headline metrics left out as copies of the optimised one

    def value(self, job: Job, metric: str) -> float | None:
        value = job.metrics.get(metric) if job.status == "completed" else None
        return value if value is not None and not math.isnan(value) else None


# --- reading a sweep ---------------------------------------------------------------------------------------


def _read_overrides(job_dir: Path) -> dict[str, str]:
    import yaml

    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    items = yaml.safe_load(path.read_text()) or []
    pairs = (str(item).split("=", 1) if "=" in str(item) else (str(item), "") for item in items)
    return {key.lstrip("+~"): value for key, value in pairs}


def _recently_touched(job_dir: Path) -> bool:
    newest = max((p.stat().st_mtime for p in job_dir.rglob("*") if p.is_file()), default=0.0)
    return time.time() - newest < RUNNING_WINDOW_S


def read_job(job_dir: Path) -> Job:
    overrides = _read_overrides(job_dir)
    path = job_dir / "metrics.json"
    if not path.is_file():
        if _recently_touched(job_dir):
            return Job(job_dir.name, overrides, "running", error="no metrics.json yet (files changed recently)")
        return Job(job_dir.name, overrides, "no result", error="no metrics.json (killed, or never finished)")
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


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [p for p in sweep_dir.iterdir()
            if p.is_dir() and ((p / ".hydra").is_dir() or (p / "metrics.json").is_file())]

    def order(p: Path):
        head = p.name.split("_", 1)[0]
        return (0, int(head), p.name) if head.isdigit() else (1, 0, p.name)

    return sorted(dirs, key=order)


def find_jobs(sweep_dir: Path) -> list[Job]:
    if not sweep_dir.is_dir():
        raise GenrunError(f"{sweep_dir}: no such directory (pass a multirun directory: outputs/multirun/train/...)")
    dirs = _job_dirs(sweep_dir)
    if not dirs and (sweep_dir / ".hydra").is_dir():
        raise GenrunError(f"{sweep_dir}: a single run, not a sweep (pass a multirun directory: "
                          "outputs/multirun/train/...)")
    if not dirs:
        raise GenrunError(f"{sweep_dir}: no jobs found (expected sub-directories with .hydra/ or metrics.json)")
    return [read_job(p) for p in dirs]


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def sweep_config(sweep_dir: Path) -> dict:
    """The sweep's composed config with its `hydra` node: multirun.yaml, else the first job's saved config."""
    config = _load_yaml(sweep_dir / "multirun.yaml")
    if config:
        return config
    for job_dir in _job_dirs(sweep_dir) if sweep_dir.is_dir() else []:
        config = _load_yaml(job_dir / ".hydra" / "config.yaml")
        if config:
            return {**config, "hydra": _load_yaml(job_dir / ".hydra" / "hydra.yaml").get("hydra", {})}
    return {}


def _direction_word(value) -> str | None:
    if isinstance(value, list) and value:
        value = value[0]
    word = str(value).lower()
    if word in ("min", "minimize", "minimise", "lower"):
        return "min"
    if word in ("max", "maximize", "maximise", "higher"):
        return "max"
    return None


def optimized_metric(config: dict) -> tuple[str, str, str]:
    """(metric, "min" or "max", where the direction came from): the config's word, else minimise as sweepers do."""
    metric = config.get("optimized_metric")
    if isinstance(metric, list) and metric:
        metric = metric[0]
    metric = str(metric) if metric and "${" not in str(metric) else DEFAULT_METRIC
    for key in ("optimized_metric_mode", "optimized_metric_direction"):
        if _direction_word(config.get(key)):
            return metric, _direction_word(config[key]), key
    sweeper = (config.get("hydra") or {}).get("sweeper") or {}
    if _direction_word(sweeper.get("direction")):
        return metric, _direction_word(sweeper["direction"]), "hydra.sweeper.direction"
    checkpoint = (config.get("callbacks") or {}).get("model_checkpoint") or {}
    if checkpoint.get("monitor") == metric and _direction_word(checkpoint.get("mode")):
        return metric, _direction_word(checkpoint["mode"]), "callbacks.model_checkpoint.mode"
    return metric, "min", "default"


def metric_direction(name: str) -> str | None:
    """"min", "max" or None (unknown) for a metric that is not the optimised one, by what its name measures.

    Training losses get none: a GAN's discriminator loss is not better for being low."""
    if name.split("/", 1)[0] not in ("val", "test", "eval", "toy") and not name.endswith("_per_sec"):
        return None
    if _HIGHER.search(name):
        return "max"
    return "min" if _LOWER.search(name) else None


def metric_unit(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    for part, unit in _UNITS:
        if part in base:
            return unit + base.split(part, 1)[1] if unit.endswith("/") else unit
    return ""


def best_job(jobs: list[Job], metric: str, direction: str) -> Job | None:
    scored = [(job.metrics[metric], i, job) for i, job in enumerate(jobs)
              if job.status == "completed" and math.isfinite(job.metrics.get(metric, math.nan))]
    if not scored:
        return None
    pick = min if direction == "min" else max
    return pick(scored, key=lambda item: (item[0], item[1]) if direction == "min" else (item[0], -item[1]))[2]


# --- choosing the columns ----------------------------------------------------------------------------------


def split_overrides(jobs: list[Job]) -> tuple[list[str], dict[str, str]]:
    """(keys whose values differ between jobs, in first-seen order; the overrides every job shares)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    varies = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    return varies, {k: jobs[0].overrides[k] for k in keys if k not in varies}


def known_metrics(jobs: list[Job]) -> list[str]:
    """Final values only: `stage/name` keys, not Lightning's per-step / per-epoch duplicates."""
    keys = {k for job in jobs for k in job.metrics}
    return sorted(k for k in keys if "/" in k and not k.endswith(("_step", "_epoch")))


def _same_values(jobs: list[Job], a: str, b: str) -> bool:
    pairs = [(job.metrics.get(a), job.metrics.get(b)) for job in jobs if job.status == "completed"]
    return bool(pairs) and all(x is not None and x == y for x, y in pairs)


def choose_metrics(jobs: list[Job], optimized: str, wanted: list[str] | None, show_all: bool) -> list[str]:
    """The optimised metric, then the named ones, every one (--all), or the headline ones that add something."""
    names = known_metrics(jobs)
    if wanted:
        logged = {k for job in jobs for k in job.metrics}
        unknown = [m for m in wanted if m not in logged]
        if unknown and logged:
            near = difflib.get_close_matches(unknown[0], names, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else f" (logged: {', '.join(reading_order(names))})"
            raise GenrunError(f"--metrics: no job logged {unknown[0]}{hint}")
        return list(dict.fromkeys([optimized, *wanted]))
    if show_all:
        return list(dict.fromkeys([optimized, *reading_order(names), *sorted(filter(is_constant, names))]))
    lead = [m for m in headline(names) if m != optimized and not is_constant(m)]
    # A GAN's val/loss is its val/swd: a column repeating the optimised one tells nothing new.
    return [optimized, *[m for m in lead if not _same_values(jobs, m, optimized)]]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each override key by its shortest dotted tail that no other key shares: `model.lr` -> `lr`."""
    parts = {key: key.split(".") for key in keys}
    names = {}
    for key, split in parts.items():
        for n in range(1, len(split) + 1):
            tail = ".".join(split[-n:])
            if not any(".".join(other[-n:]) == tail for k, other in parts.items() if k != key):
                break
        names[key] = tail
    return names


def build_view(sweep_dir: Path, wanted: list[str] | None = None, show_all: bool = False) -> View:
    jobs = find_jobs(sweep_dir)
    optimized, direction, source = optimized_metric(sweep_config(sweep_dir))
    keys, constant = split_overrides(jobs)
    if show_all:
        keys, constant = keys + list(constant), {}
    metrics = choose_metrics(jobs, optimized, wanted, show_all)
    selection = "all" if show_all else (",".join(wanted) if wanted else "default")
    dropped = [] if wanted or show_all else [m for m in headline(known_metrics(jobs))
                                             if m != optimized and _same_values(jobs, m, optimized)]
    return View(sweep_dir, jobs, keys, constant, optimized, direction, source, metrics, selection,
                best_job(jobs, optimized, direction), dropped)


# --- formatting --------------------------------------------------------------------------------------------


def fmt_value(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.{max(digits - 1, 1)}e}"


def column_digits(values: list[float | None]) -> int:
    """Enough significant digits that distinct values in a column do not print alike (two runs that differ
    in the fifth digit must not look equal), and no more."""
    distinct = {v for v in values if v is not None and math.isfinite(v)}
    for digits in range(4, 8):
        if len({fmt_value(v, digits) for v in distinct}) == len(distinct):
            return digits
    return 8


def status_word(job: Job) -> str:
    return "done" if job.status == "completed" else job.status


def job_label(view: View, job: Job, names: dict[str, str] | None = None) -> str:
    names = names or short_names(view.keys)
    return " ".join(f"{names[k]}={job.overrides.get(k, '')}" for k in view.keys) or job.name


def direction_text(direction: str | None) -> str:
    return {"min": "lower is better", "max": "higher is better"}.get(direction or "", "")


# --- files -------------------------------------------------------------------------------------------------


def file_stem(selection: str) -> str:
    """`report` for the default view, `report-all`, or `report-<metrics>`: one set of files per view."""
    if selection == "default":
        return "report"
    slug = re.sub(r"[^A-Za-z0-9.+]+", "_", selection.replace(",", "+")).strip("_")
    if len(slug) > 60:
        slug = f"{slug[:48]}-{hashlib.sha1(selection.encode()).hexdigest()[:8]}"
    return f"report-{slug}"


def _sidecar_selection(path: Path) -> str | None:
    try:
        selection = json.loads(path.read_text()).get("selection")
    except (OSError, ValueError, AttributeError):
        return None
    return selection if isinstance(selection, str) else None


def output_paths(view: View, out: Path | None, force: bool) -> dict[str, Path]:
    """The view's csv, png and json paths; refuses to replace a file that another view (or a person) made."""
    plot = out or view.sweep_dir / f"{file_stem(view.selection)}.png"
    paths = {"png": plot, "csv": plot.with_suffix(".csv"), "json": plot.with_suffix(".json")}
    if force:
        return paths
    made_by = _sidecar_selection(paths["json"])
    for path in (paths["csv"], paths["png"], paths["json"]):
        if path.exists() and made_by != view.selection:
            why = f"was made by another view ({made_by})" if made_by else "was not made by genrun report"
            raise GenrunError(f"{path}: exists and {why}; pass --force to replace it, or --out to write elsewhere")
    return paths


def csv_rows(view: View) -> tuple[list[str], list[list[str]]]:
    header = ["job", *view.keys, *view.metrics, "best", "status", "error"]
    rows = []
    for job in view.jobs:
        values = [fmt_value(view.value(job, m), 8) if view.value(job, m) is not None
                  else ("nan" if job.status == "completed" and m in job.metrics else "")
                  for m in view.metrics]
        rows.append([job.name, *[job.overrides.get(k, "") for k in view.keys], *values,
                     "best" if job is view.best else "", job.status, job.error])
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def report(sweep_dir: Path, metrics: list[str] | None = None, show_all: bool = False, out: Path | None = None,
           force: bool = False) -> dict:
    """Build the view, then write its csv, png and a json of what the plot shows."""
    from genrun.report_plot import save_plot

    view = build_view(sweep_dir, metrics, show_all)
    paths = output_paths(view, out, force)
    header, rows = csv_rows(view)
    write_csv(paths["csv"], header, rows)
    panels = save_plot(view, paths["png"])
    sidecar = {"selection": view.selection, "sweep": str(view.sweep_dir), "optimized_metric": view.optimized,
               "direction": view.direction, "direction_source": view.direction_source, "panels": panels,
               "columns": header, "best_job": view.best.name if view.best else None,
               "csv": str(paths["csv"]), "png": str(paths["png"])}
    paths["json"].write_text(json.dumps(sidecar, indent=2) + "\n")
    return {"view": view, "header": header, "rows": rows, "csv": paths["csv"], "png": paths["png"],
            "json": paths["json"], "panels": panels}


def report_command(sweep_dir: Path) -> str:
    return f"genrun report {shlex.quote(str(sweep_dir))}"


# --- the command -------------------------------------------------------------------------------------------


def _search_facts(sweep_dir: Path) -> dict | None:
    """A search's facts (genrun.search wrote search.json beside its jobs), else None: an ordinary sweep."""
    from genrun.search.study import read_search_file

    return read_search_file(sweep_dir) if sweep_dir.is_dir() else None


def main(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="genrun report", usage=USAGE,
                                     description="Table and plot of a sweep's jobs against the metric it optimised.")
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (outputs/multirun/train/<id>)")
    parser.add_argument("--metrics", default="", help="comma-separated metrics to show after the optimised one")
    parser.add_argument("--all", action="store_true", dest="show_all",
                        help="every override and metric (the table may be wider than the terminal)")
    parser.add_argument("--out", type=Path, default=None,
                        help="plot file; the csv and json go beside it (default: <sweep_dir>/report*.png)")
    parser.add_argument("--force", action="store_true", help="replace report files that another view made")
    options = parser.parse_args(args)
    wanted = [m.strip() for m in options.metrics.split(",") if m.strip()]
    if wanted and options.show_all:
        parser.error("--metrics and --all: choose one")
    try:
        search = _search_facts(options.sweep_dir)
        if search is not None and not (wanted or options.show_all):
            from genrun.report_search import print_search, search_report

            found = search_report(options.sweep_dir, search, options.out)
            print_search(found["search"], found)
            return 0
        result = report(options.sweep_dir, wanted, options.show_all, options.out, options.force)
    except GenrunError as err:
        print(f"genrun: error: {err}", file=sys.stderr)
        return 1
    from genrun.report_table import print_report

    print_report(result["view"], result)
    return 0
