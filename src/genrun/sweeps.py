"""The end of a sweep: one summary of what ran, what failed and why, and the exit status it earns.

A failed job does not stop a sweep (its metrics.json records the error, see genrun.tasks.run_task); this
Hydra callback reads every job's metrics.json when the sweep ends, so it also sees jobs that a launcher ran
in other processes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from genrun.report import report_command

_failed: list[str] = []


def reset() -> None:
    _failed.clear()


def failed_jobs() -> list[str]:
    """Run directories of the jobs that failed in this process's last sweep (empty outside sweeps)."""
    return list(_failed)


def _job_number(path: Path) -> int:
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def job_results(sweep_dir: Path) -> list[tuple[Path, str, str]]:
    """(job directory, status, error) for every job directory of a sweep, in job order."""
    results = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=_job_number):
        try:
            metrics = json.loads((job / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {"status": "no result", "error": "the job wrote no metrics.json"}
        results.append((job, str(metrics.get("status", "unknown")), str(metrics.get("error", ""))))
    return results


def _overrides(job: Path) -> str:
    try:
        return " ".join(line[2:] for line in (job / ".hydra" / "overrides.yaml").read_text().splitlines()
                        if line.startswith("- "))
    except OSError:
        return ""


def _best_line(sweep_dir: Path) -> str:
    """The best job by the sweep's optimised metric, read the way `genrun report` reads it, so the two agree."""
    from genrun.errors import GenrunError
    from genrun.report import build_view, direction_text, fmt_value, job_label

    try:
        view = build_view(sweep_dir)
    except GenrunError:
        return ""
    if view.best is None:
        return f"  no completed job logged {view.optimized}"
    value = fmt_value(view.best.metrics[view.optimized], 6)
    return (f"  best {view.optimized} ({direction_text(view.direction)}): {value} in {view.best.name} "
            f"[{job_label(view, view.best)}]")


class SweepSummary(Callback):
    """Prints `N done, M failed` with each failure's one-line reason, the best job, and the report command."""

    def on_multirun_end(self, config, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        results = job_results(sweep_dir)
        failed = [(job, status, error) for job, status, error in results if status not in ("completed", "pruned")]
        pruned = sum(status == "pruned" for _job, status, _error in results)  # a search stopped them: no failure
        _failed[:] = [str(job) for job, _status, _error in failed]
        out = sys.stderr if failed else sys.stdout
        done = len(results) - len(failed) - pruned
        print(f"genrun: sweep finished: {done} done, {f'{pruned} pruned, ' if pruned else ''}{len(failed)} failed "
              f"({sweep_dir})", file=out)
        for job, status, error in failed:
            print(f"  {status}: {job.name} [{_overrides(job)}]: {error}", file=out)
        best = _best_line(sweep_dir)
        if best:
            print(best, file=out)
        print(f"  next: {report_command(sweep_dir)}   (compare the jobs: a table and a plot)", file=out)
