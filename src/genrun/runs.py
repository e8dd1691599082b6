"""Run directories: finding the newest checkpoint, writing metrics.json, the end-of-run summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from genrun.errors import GenrunError

CHECKPOINT_NAME = "last.ckpt"


RUN_FILE = "run.json"


def write_run_file(run_dir: Path, model: str | None, dataset: str | None, task: str) -> None:
    """Names the run's model and dataset choices, so later commands find runs without guessing."""
    path = Path(run_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a resumed run keeps what run.json already records (its resumes)
        run = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        run = {}
    run = {**(run if isinstance(run, dict) else {}), "task": task, "model": model, "dataset": dataset}
    path.write_text(json.dumps(run) + "\n")


def _runs_of(output_root: Path, model: str | None, dataset: str | None) -> list[Path]:
    found = []
    for run_file in [*output_root.glob(f"train/*/*/{RUN_FILE}"), *output_root.glob(f"multirun/train/*/*/{RUN_FILE}")]:
        try:
            run = json.loads(run_file.read_text())
        except (OSError, ValueError):
            continue
        checkpoint = run_file.parent / "checkpoints" / CHECKPOINT_NAME
        if (model in (None, run.get("model")) and dataset in (None, run.get("dataset"))
                and checkpoint.is_file()):
            found.append(checkpoint)
    return found


def locate_checkpoint(ckpt: str | None, output_root: str | Path, model: str | None = None,
                      dataset: str | None = None) -> Path:
    """`ckpt` as a file or run directory, else the newest `last.ckpt` of model (and dataset) under outputs."""
    if ckpt:
        path = Path(ckpt).expanduser()
        if path.is_dir():
            candidate = path / "checkpoints" / CHECKPOINT_NAME
            if not candidate.is_file():
                raise GenrunError(f"ckpt={ckpt}: no checkpoints/{CHECKPOINT_NAME} in that directory")
            return candidate
        if not path.is_file():
            raise GenrunError(f"ckpt={ckpt}: no such file or run directory")
        return path
    found = _runs_of(Path(output_root), model, dataset)
    if not found:
        what = " ".join(f"{k}={v}" for k, v in (("model", model), ("dataset", dataset)) if v)
        train = f"genrun train {what}".strip()
        raise GenrunError(f"no trained checkpoint{' of ' + what if what else ''} under {output_root}; "
                          f"train one with: {train}  (or pass ckpt=FILE|RUN_DIR)")
    return max(found, key=lambda p: p.stat().st_mtime)


def _plain_number(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_metrics(run_dir: Path, payload: dict) -> Path:
    path = Path(run_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: ({m: _plain_number(v) for m, v in val.items()} if isinstance(val, dict) else val)
             for k, val in payload.items()}
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def quiet_library_logs() -> None:
    """Lightning logs to its own console handler and to Hydra's: keep only Hydra's (console + file)."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def print_summary(title: str, lines: dict[str, str], metrics: dict, run_dir: Path, next_steps: list[str]) -> None:
    """One short block at the end of a task: where things are, the numbers, what to run next."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"[bold]{title}[/bold]")
    console.print(f"  run directory: {run_dir}", highlight=False, soft_wrap=True)
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key, value in lines.items():
        table.add_row(key, str(value))
    for key, value in sorted(metrics.items()):
        table.add_row(key, format_value(value))
    console.print(table)
    for step in next_steps:
        console.print(f"  [dim]next:[/dim] {step}", highlight=False, soft_wrap=True)


class RunSnapshot:
    """A run directory's files as they were before a resume, to put back if the resume fails before it
    writes a checkpoint: a failed attempt must not replace a finished run's metrics, config or logs."""

    REWRITTEN = ("metrics.json", RUN_FILE, ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml")
    LOGS = ("train.log",)

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.contents = {name: self._read(name) for name in self.REWRITTEN}
        self.log_sizes = {name: (self.run_dir / name).stat().st_size for name in self.LOGS
                          if (self.run_dir / name).is_file()}
        self.files = set(self._all_files())
        self.checkpoint = self._checkpoint_state()

    def _read(self, name: str) -> bytes | None:
        path = self.run_dir / name
        return path.read_bytes() if path.is_file() else None

    def _all_files(self) -> list[Path]:
        return [p for p in self.run_dir.rglob("*") if p.is_file()]

    def _checkpoint_state(self):
        last = self.run_dir / "checkpoints" / CHECKPOINT_NAME
        if not last.is_file():
            return None
        stat = last.stat()
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def checkpoint_unchanged(self) -> bool:
        return self._checkpoint_state() == self.checkpoint

    def restore(self) -> None:
        for path in self._all_files():
            if path not in self.files:
                path.unlink(missing_ok=True)
        for name, content in self.contents.items():
            path = self.run_dir / name
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)
        for name, size in self.log_sizes.items():
            with open(self.run_dir / name, "r+b") as handle:
                handle.truncate(size)
