"""`genrun sample --help` and `genrun evaluate --help`: the task's settings and each model's own knobs.

With `ckpt=` or `model=` (the newest run of it), the knobs and modes of that checkpoint's pipeline; without,
those of every pipeline genrun has (found by scanning genrun.families, so a new family needs no entry here).
"""

from __future__ import annotations

import importlib
import pkgutil

from genrun.errors import GenrunError


def all_pipelines() -> list[type]:
    import genrun.families
    from genrun.pipeline import Pipeline

    found = []
    for info in pkgutil.iter_modules(genrun.families.__path__):
        module = importlib.import_module(f"genrun.families.{info.name}")
        found += [obj for obj in vars(module).values()
                  if isinstance(obj, type) and issubclass(obj, Pipeline) and obj.__module__ == module.__name__]
    return found


def describe(pipeline: type, title: str) -> list[str]:
    from genrun.pipeline import describe_knobs

    return [f"{title}: mode={' | '.join(pipeline.modes)}", *describe_knobs(pipeline.Knobs)]


def _located_pipeline(values: dict) -> tuple[type, str] | None:
    """The pipeline of the checkpoint that `ckpt=` or `model=`/`dataset=` would pick, if there is one."""
    from genrun.checkpoint import load_checkpoint
    from genrun.pipeline import load_pipeline
    from genrun.runs import locate_checkpoint

    if not (values.get("ckpt") or values.get("model")):
        return None
    from genrun.pipeline import declared_pipeline

    declared = None if values.get("ckpt") else declared_pipeline(values.get("model"))
    if declared is not None:
        return declared, f"model={values['model']}, which needs no training"
    import os
    from pathlib import Path

    root = Path(os.environ.get("GENRUN_OUTPUT_DIR") or Path.cwd() / "outputs")
    try:
        path = locate_checkpoint(values.get("ckpt"), root, values.get("model"), values.get("dataset"))
        return type(load_pipeline(load_checkpoint(path), path)), str(path)
    except GenrunError:
        return None


def knob_help(task: str, overrides: list[str]) -> str:
    values = dict(o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("+", "~")))
    lines = [f"usage: genrun {task} [ckpt=FILE|RUN_DIR | model=NAME] [setting=value ...] [knob=value ...]", "",
             "Each model's own knobs are plain key=value; one the model does not have is refused.", ""]
    located = _located_pipeline(values)
    if located is not None:
        pipeline, path = located
        lines += describe(pipeline, f"knobs of {path} ({pipeline.__name__})")
    else:
        if values.get("model"):
            lines += [f"(no trained run of model={values['model']} found: every pipeline's knobs follow)", ""]
        for pipeline in all_pipelines():
            lines += [*describe(pipeline, pipeline.__name__), ""]
    lines += ["", f"settings of every model: see `genrun {task} --cfg job`; Hydra's own help: --hydra-help"]
    return "\n".join(lines)
