"""Tasks (train, sample, evaluate): read the config at the edge, build objects, run, write outputs.

`run_task` turns a GenrunError raised anywhere below into one line on stderr and exit status 1, and
records a failed job in its metrics.json so a sweep's report can list it.
"""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

from genrun.errors import GenrunError

# A KeyboardInterrupt whose line was already printed carries this, so the CLI adds nothing.
REPORTED = "reported"


def user_error(err: BaseException) -> GenrunError | None:
    """The GenrunError behind `err`, also when Hydra's instantiate wrapped it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, GenrunError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def run_task(task: str, cfg):
    """Run one job; a user mistake ends in one line (and exit 1 outside a sweep), never in a traceback.

    In a sweep a failed job is recorded and reported, and the sweep goes on: the summary at its end lists
    every failure (genrun.sweeps). Ctrl-C before training starts leaves no half-made run directory.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from genrun.collector import libraries_loaded
    from genrun.runs import quiet_library_logs, write_metrics

    quiet_library_logs()  # Hydra has set up its handlers by now: filter the console one
    libraries_loaded(task)  # the job starts here (not for --cfg, --info or shell completion, which need no torch)
    module = importlib.import_module(f"genrun.tasks.{task}")
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        return module.run(cfg)
    except Interrupted as stop:
        if stop.details.get("checkpoint") is None and not cfg.get("resume"):
            discard_unstarted_run(run_dir)
        else:
            write_metrics(run_dir, {"task": task, "status": "interrupted", "error": str(stop), **stop.details})
        print(f"genrun: {stop}", file=sys.stderr)
        raise KeyboardInterrupt(REPORTED) from None  # a sweep stops too; the CLI exits 130, no traceback
    except KeyboardInterrupt:
        if task == "train" and not cfg.get("resume"):
            discard_unstarted_run(run_dir)
        raise
    except Exception as err:
        mistake = user_error(err)
        message = str(mistake) if mistake else f"{type(err).__name__}: {err}"
        status = getattr(mistake, "status", "failed")  # a search's pruned trial: recorded, not an error
        write_metrics(run_dir, {"task": task, "status": status, "error": message})
        if status != "failed":
            print(f"genrun: {message}", file=sys.stderr)
            return None
        if mistake is None and not sweeping:
            raise
        if mistake is None:  # a bug: keep the traceback in the job's log, and the sweep going
            logging.getLogger("genrun").exception("job failed")
            message += f" (traceback in {run_dir / (hydra_cfg.job.name + '.log')})"
        print(f"genrun: error: {message}", file=sys.stderr)
        if sweeping:
            return None  # the sweep's summary lists this job (its metrics.json says failed)
        sys.exit(1)


class Interrupted(GenrunError):
    """Ctrl-C during training: the line to print and what metrics.json records beside status: interrupted."""

    def __init__(self, message: str, **details):
        super().__init__(message)
        self.details = details


def discard_unstarted_run(run_dir: Path) -> None:
    """Remove a run directory that this process made and that holds no checkpoint: nothing to keep."""
    import shutil

    checkpoints = run_dir / "checkpoints"
    if run_dir.is_dir() and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
        shutil.rmtree(run_dir, ignore_errors=True)
