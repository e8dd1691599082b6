"""OmegaConf resolvers used by the run-directory names in configs/hydra/default.yaml."""

from __future__ import annotations

import os
import secrets
from datetime import datetime

from omegaconf import OmegaConf


def _run_id() -> str:
    # Seconds alone collide when two runs start together; pid and a random suffix do not.
    return f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}{secrets.token_hex(2)}"


def _run_name(model: str | None, dataset: str | None) -> str:
    return f"{model or 'any'}_{dataset or 'any'}"


def _checkpoint_run_name(ckpt, model, dataset, output_root) -> str:
    """`<model>_<dataset>` of the run whose checkpoint sample/evaluate will use (read from its run.json)."""
    import json
    from pathlib import Path

    from genrun.errors import GenrunError
    from genrun.runs import RUN_FILE, locate_checkpoint

    try:
        checkpoint = locate_checkpoint(ckpt, output_root, model, dataset)
        run = json.loads((Path(checkpoint).resolve().parents[1] / RUN_FILE).read_text())
        return _run_name(run.get("model"), run.get("dataset"))
    except (GenrunError, OSError, ValueError, IndexError):  # IndexError: a file with no grandparent directory
        return _run_name(model, dataset)  # the task itself reports a missing or unreadable checkpoint


# Job directories resolved in this process, newest last: Hydra makes them before the task runs, so a
# Ctrl-C in between can only find them here (genrun.cli removes a half-made one).
JOB_DIRS: list[str] = []


def _job_dir(path: str, subdir: str | None = None) -> str:
    """Returns `path` (a run directory, or a sweep directory and a job's sub-directory) and records it."""
    JOB_DIRS.append(os.path.join(path, subdir) if subdir else path)
    return subdir if subdir else path


def register() -> None:
    # Hydra's ${hydra:runtime.cwd} is not set yet when a sweep's directory is resolved; this is.
    OmegaConf.register_new_resolver("cwd", os.getcwd, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_name", _run_name, replace=True)
    OmegaConf.register_new_resolver("job_dir", _job_dir, replace=True)
    OmegaConf.register_new_resolver("checkpoint_run_name", _checkpoint_run_name, use_cache=True, replace=True)
