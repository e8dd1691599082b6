"""Tasks (train, sample, evaluate): read the config at the edge, build objects, run, write outputs.

`run_task` turns a GenrunError raised anywhere below into one line on stderr and exit status 1, and
records a failed job in its metrics.json so a sweep's report can list it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from genrun.errors import GenrunError


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
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    module = importlib.import_module(f"genrun.tasks.{task}")
    try:
        return module.run(cfg)
    except Exception as err:
        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        mistake = user_error(err)
        message = str(mistake) if mistake else f"{type(err).__name__}: {err}"
        from genrun.runs import write_metrics

        write_metrics(run_dir, {"task": task, "status": "failed", "error": message})
        if mistake is None:
            raise
        print(f"genrun: error: {message}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise mistake from None  # Hydra marks this job failed and runs the rest of the sweep
        sys.exit(1)
