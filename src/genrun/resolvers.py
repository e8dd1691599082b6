"""OmegaConf resolvers used by the run-directory names in configs/hydra/default.yaml and inference.yaml."""

from __future__ import annotations

import os
import secrets
from datetime import datetime

from omegaconf import OmegaConf


def _run_id() -> str:
    from genrun.distributed import shared_run_id

    # The processes of one torchrun or srun launch share one run (genrun/distributed.py).
    # Seconds alone collide when two runs start together; pid and a random suffix do not.
    return shared_run_id() or f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{os.getpid()}{secrets.token_hex(2)}"


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


def _mode_prefix(task, mode, ckpt, model, dataset, output_root) -> str:
    """`<mode>_` for a `genrun sample` run directory (empty for other tasks), so the directory says what was
    drawn: the mode asked for, or with `mode=null` the first mode of the checkpoint's pipeline (or, for a model
    with no training, of the pipeline its config declares).

    That first mode is read from the checkpoint itself, cheaply: memory-mapped, so only the small pipeline
    spec is read from disk, never the weights, and the pipeline class is imported (Lightning-free, and
    imported by the task anyway) only for its `modes`, through genrun.trust's allow-list: nothing the
    checkpoint names is built. When that fails the prefix is left out; the task then reports the
    checkpoint's problem itself.
    """
    if task != "sample":
        return ""
    if mode is None:
        mode = _first_mode(ckpt, model, dataset, output_root)
    return f"{_safe(str(mode))}_" if mode else ""


def _first_mode(ckpt, model, dataset, output_root) -> str | None:
    try:
        import torch

        from genrun.pipeline import Pipeline, declared_pipeline, stored_spec
        from genrun.runs import locate_checkpoint
        from genrun.trust import resolve_trusted

        declared = None if ckpt else declared_pipeline(model)
        if declared is not None:  # a model with no training (DeepDream, style transfer): no checkpoint to read
            return declared.modes[0]
        path = locate_checkpoint(ckpt, output_root, model, dataset)
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        pipeline = resolve_trusted(stored_spec(payload, path).get("class"), Pipeline)
        return pipeline.modes[0] if pipeline is not None else None
    except Exception:  # noqa: BLE001 (a name is all this wants; the task reports a bad checkpoint)
        return None


def _safe(text: str) -> str:
    """A mode as a directory-name part: letters, digits, '-' and '.' kept, anything else '-'."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip(".") or "mode"


# Job directories resolved in this process, newest last: Hydra makes them before the task runs, so a
# Ctrl-C in between can only find them here (genrun.cli removes a half-made one).
JOB_DIRS: list[str] = []


def _job_dir(path: str, subdir: str | None = None) -> str:
    """Returns `path` (a run directory, or a sweep directory and a job's sub-directory) and records it."""
    JOB_DIRS.append(os.path.join(path, subdir) if subdir else path)
    return subdir if subdir else path


def register() -> None:
    import warnings

    # configs/hydra/launcher/ sets genrun's defaults over a launcher plugin's config of the same name, which
    # Hydra then validates against the plugin's schema (as wanted) and warns about on every run.
    warnings.filterwarnings("ignore", message=r"(?s).*validated against ConfigStore schema with the same name")
    # Hydra's ${hydra:runtime.cwd} is not set yet when a sweep's directory is resolved; this is.
    OmegaConf.register_new_resolver("cwd", os.getcwd, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_id", _run_id, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("run_name", _run_name, replace=True)
    OmegaConf.register_new_resolver("job_dir", _job_dir, replace=True)
    OmegaConf.register_new_resolver("checkpoint_run_name", _checkpoint_run_name, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("mode_prefix", _mode_prefix, use_cache=True, replace=True)
