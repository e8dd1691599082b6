"""genrun sample: the newest (or given) checkpoint, rebuilt as its pipeline without Lightning, sampled
into this run's directory with the model's own knobs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genrun.errors import GenrunError


def knob_values(cfg: DictConfig, task: str) -> dict:
    """The model's own knobs given on the command line: the top-level keys the task's config does not define."""
    from genrun.overrides import task_keys

    own = task_keys(task)
    return {key: OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
            for key, value in cfg.items() if key not in own}


def task_settings(task: str) -> tuple[str, ...]:
    """The settings a user gives a task itself (for the message that refuses an unknown key)."""
    from omegaconf import OmegaConf

    from genrun.configs import config_dir

    own = OmegaConf.load(config_dir() / f"{task}.yaml")
    return tuple("dataset.KEY" if k == "dataset_keys" else k for k in own if k not in ("defaults", "task"))


def request_for(cfg: DictConfig, pipeline, model: str):
    """The request from the task's settings and the pipeline's knobs, all checked before any work."""
    from genrun.families.base import SampleRequest
    from genrun.pipeline import parse_knobs

    if int(cfg.num_samples) < 1:
        raise GenrunError(f"num_samples={cfg.num_samples}: must be at least 1")
    if float(cfg.temperature) < 0:
        raise GenrunError(f"temperature={cfg.temperature}: must be non-negative")
    modes = type(pipeline).modes
    mode = str(cfg.mode) if cfg.get("mode") is not None else modes[0]
    if mode not in modes:
        raise GenrunError(f"mode={mode}: {model} supports {', '.join(modes)}")
    knobs = parse_knobs(type(pipeline).Knobs, knob_values(cfg, "sample"), model, task_settings("sample"))
    return SampleRequest(mode=mode, num_samples=int(cfg.num_samples), temperature=float(cfg.temperature),
                         seed=int(cfg.seed), max_minutes=cfg.get("max_minutes"), knobs=knobs)


def effective_request(request) -> dict:
    """Every setting and knob the samples were drawn with, defaults included (for metrics.json)."""
    from dataclasses import asdict

    values = {k: v for k, v in asdict(request).items() if k != "knobs"}
    return values | asdict(request.knobs)


def model_name(loaded) -> str:
    return f"model={loaded.choices.get('model') or type(loaded.pipeline).__name__}"


def run(cfg: DictConfig):
    import torch
    from hydra.core.hydra_config import HydraConfig

    from genrun.families.base import SampleContext
    from genrun.runs import write_metrics, write_run_file
    from genrun.tasks.loading import load_model, pick_device, say_which, split_loader

    choices = HydraConfig.get().runtime.choices
    out_dir = Path(cfg.paths.run_dir)
    loaded = load_model(cfg, choices)
    if not (out_dir / "run.json").exists():  # names the model for titles; never rewrites a training run's
        write_run_file(out_dir, loaded.choices.get("model"), loaded.choices.get("dataset"), "sample")
    request = request_for(cfg, loaded.pipeline, model_name(loaded))
    say_which(loaded)
    torch.manual_seed(request.seed)
    context = SampleContext(out_dir=out_dir, device=pick_device(str(cfg.get("device", "auto"))),
                            data_info=loaded.data_info, load_split=split_loader(loaded.run_config))
    files = loaded.pipeline.sample(request, context)
    checkpoint = None if loaded.path is None else str(loaded.path)  # None: built from its model config
    results = {"results": context.results} if context.results else {}
    write_metrics(out_dir, {"task": "sample", "status": "completed", "checkpoint": checkpoint,
                            "checkpoint_choice": loaded.why, "request": effective_request(request),
                            "config": OmegaConf.to_container(cfg, resolve=False) | {"paths": None},
                            "files": {k: str(v) for k, v in files.items()}, "notes": context.notes} | results)
    for name, path in files.items():
        print(f"{name}: {path}")
    for note in context.notes:
        print(f"note: {note}")
    return None
