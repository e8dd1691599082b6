"""Run directories: finding the newest checkpoint, writing metrics.json, the end-of-run summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from genrun.errors import GenrunError

CHECKPOINT_NAME = "last.ckpt"


RUN_FILE = "run.json"


def write_run_file(run_dir: Path, model: str | None, dataset: str | None, task: str, debug: bool = False) -> None:
    """Names the run's model and dataset choices, so later commands find runs without guessing."""
    path = Path(run_dir) / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a resumed run keeps what run.json already records (its resumes)
        run = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        run = {}
    run = {**(run if isinstance(run, dict) else {}), "task": task, "model": model, "dataset": dataset,
           "debug": debug}
    path.write_text(json.dumps(run) + "\n")


BEST_NAME = "best.ckpt"
# ckpt= words that pick the newest run's checkpoint of that name instead of a path.
CHECKPOINT_WORDS = {"best": BEST_NAME, "last": CHECKPOINT_NAME}


def is_debug_run(run_dir: Path) -> bool:
    """Whether a run was a debug run (debug=..., trainer.fast_dev_run): never picked without being named."""
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        run = {}
    if isinstance(run, dict) and "debug" in run:
        return bool(run["debug"])
    try:  # runs from before run.json recorded it
        overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    except OSError:
        return False
    return any(word in overrides for word in ("- debug=", "- +debug=", "fast_dev_run=true", "fast_dev_run=1"))


def _runs_of(output_root: Path, model: str | None, dataset: str | None) -> list[Path]:
    """Run directories of model (and dataset) under output_root that hold a final checkpoint."""
    found = []
    for run_file in [*output_root.glob(f"train/*/*/{RUN_FILE}"), *output_root.glob(f"multirun/train/*/*/{RUN_FILE}")]:
        try:
            run = json.loads(run_file.read_text())
        except (OSError, ValueError):
            continue
        if (model in (None, run.get("model")) and dataset in (None, run.get("dataset"))
                and (run_file.parent / "checkpoints" / CHECKPOINT_NAME).is_file()):
            found.append(run_file.parent)
    return found


def _in_run(run_dir: Path, wanted: str | None) -> tuple[Path, str]:
    """A run directory's best checkpoint (or `wanted`, a file name), and why that one."""
    folder = run_dir / "checkpoints"
    if wanted is None and (folder / BEST_NAME).is_file():
        return folder / BEST_NAME, (f"{BEST_NAME}: the run's best by its monitored metric; ckpt=last for its "
                                    "final weights")
    name = wanted or CHECKPOINT_NAME
    if not (folder / name).is_file():
        raise GenrunError(f"ckpt: no checkpoints/{name} in {run_dir}")
    why = "the run's final weights" if name == CHECKPOINT_NAME else "as asked"
    return folder / name, f"{name}: {why}" + ("" if wanted else " (it kept no best.ckpt)")


def choose_checkpoint(ckpt: str | None, output_root: str | Path, model: str | None = None,
                      dataset: str | None = None) -> tuple[Path, str]:
    """(the checkpoint sample/evaluate use, a sentence saying why).

    `ckpt` is a file, a run directory (its best.ckpt, else last.ckpt), or `best` / `last` / null for the
    newest run of model (and dataset) that is not a debug run.
    """
    word = CHECKPOINT_WORDS.get(str(ckpt)) if ckpt else None
    if ckpt and word is None:
        path = Path(ckpt).expanduser()
        if path.is_dir():
            if not any((path / "checkpoints" / name).is_file() for name in (CHECKPOINT_NAME, BEST_NAME)):
                raise GenrunError(f"ckpt={ckpt}: no checkpoints/{CHECKPOINT_NAME} in that directory")
            return _in_run(path, None)
        if not path.is_file():
            raise GenrunError(f"ckpt={ckpt}: no such file, run directory, or word (best, last)")
        return path, "the file named by ckpt="
    found = _runs_of(Path(output_root), model, dataset)
    real = [run for run in found if not is_debug_run(run)]
    what = " ".join(f"{k}={v}" for k, v in (("model", model), ("dataset", dataset)) if v)
    if not real:
        train = f"genrun train {what}".strip()
        plural = "s" if len(found) > 1 else ""
        debug = f" ({len(found)} debug run{plural} skipped: name one with ckpt=RUN_DIR)" if found else ""
        raise GenrunError(f"no trained checkpoint{' of ' + what if what else ''} under {output_root}{debug}; "
                          f"train one with: {train}  (or pass ckpt=FILE|RUN_DIR)")
    newest = max(real, key=lambda run: (run / "checkpoints" / CHECKPOINT_NAME).stat().st_mtime)
    chosen, why = _in_run(newest, word)
    skipped = len(found) - len(real)
    note = f", {skipped} debug run{'s' if skipped > 1 else ''} skipped" if skipped else ""
    return chosen, f"{why}; the newest {what + ' ' if what else ''}run{note}"


def locate_checkpoint(ckpt: str | None, output_root: str | Path, model: str | None = None,
                      dataset: str | None = None) -> Path:
    """The checkpoint choose_checkpoint picks."""
    return choose_checkpoint(ckpt, output_root, model, dataset)[0]


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


class LibraryNoise:
    """A logging filter for the console: Lightning's INFO notices (accelerators found, tips, why fitting
    stopped, the model summary table) tell a genrun user nothing they asked for, and a record logged with
    `extra={"console": False}` was already shown another way. Both stay in train.log."""

    def filter(self, record) -> bool:
        import logging

        if getattr(record, "console", True) is False:
            return False
        return not (record.name.startswith("lightning") and record.levelno < logging.WARNING)


def quiet_library_logs() -> None:
    """Lightning logs to its own console handler and to Hydra's: keep only Hydra's, whose file handler keeps
    every line and whose console handler drops Lightning's notices (LibraryNoise)."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
        if console and not any(isinstance(f, LibraryNoise) for f in handler.filters):
            handler.addFilter(LibraryNoise())
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # genrun's loaders resume in the middle of an epoch by position (data/base.py, data/text.py)
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
    # genrun freezes referenced components (a latent model's autoencoder) in eval mode on purpose
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")


def test_is_validation(data_info: dict) -> bool:
    """Whether the run's "test" split is its validation split (the bundled digits without test files, text)."""
    return str((data_info or {}).get("test_split", "")).startswith("validation")


def summary_metrics(metrics: dict, data_info: dict | None = None) -> list[tuple[str, object]]:
    """(name, value) in reading order, constants left out (they stay in metrics.json).

    When the test split is the validation split, the end-of-run figures are named `val/...` (they were
    measured on it) and replace the training loop's own val/ figure of the same name.
    """
    from genrun.headlines import reading_order

    shown = {k: v for k, v in metrics.items() if "/" in k and not k.endswith(("_step", "_epoch"))}
    ordered = reading_order(shown)
    if not test_is_validation(data_info or {}):
        return [(name, shown[name]) for name in ordered]
    renamed = {name: "val/" + name[5:] if name.startswith("test/") else name for name in ordered}
    replaced = {new for old, new in renamed.items() if old != new}
    return [(renamed[name], shown[name]) for name in ordered if renamed[name] == name and name not in replaced
            or renamed[name] != name]


def print_summary(title: str, lines: dict[str, str], metrics, run_dir: Path, next_steps: list[str]) -> None:
    """One short block at the end of a task: where things are, the numbers (headline first), what next.

    `metrics`: (name, value) pairs in the order to show (see summary_metrics), or a dict to be put in it.
    """
    from rich.console import Console
    from rich.table import Table

    if isinstance(metrics, dict):
        metrics = summary_metrics(metrics)
    console = Console()
    console.print(f"[bold]{title}[/bold]")
    console.print(f"  run directory: {run_dir}", highlight=False, soft_wrap=True)
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for index, (key, value) in enumerate(lines.items()):
        table.add_row(key, str(value), end_section=index == len(lines) - 1)
    for key, value in metrics:
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
