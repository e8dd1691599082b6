"""genrun sample: the newest (or given) checkpoint, rebuilt without Lightning, sampled into this run's dir."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from genrun.errors import GenrunError


def request_from_config(cfg: DictConfig):
    from genrun.families.base import SampleRequest

    if int(cfg.num_samples) < 1:
        raise GenrunError(f"num_samples={cfg.num_samples}: must be at least 1")
    if float(cfg.temperature) < 0:
        raise GenrunError(f"temperature={cfg.temperature}: must be non-negative")
    if cfg.nrow is not None and int(cfg.nrow) < 1:
        raise GenrunError(f"nrow={cfg.nrow}: must be at least 1 (or null for the default layout)")
    if int(cfg.steps) < 2:
        raise GenrunError(f"steps={cfg.steps}: an interpolation needs at least 2 steps (its two ends)")
    return SampleRequest(
        mode=str(cfg.mode), num_samples=int(cfg.num_samples), temperature=float(cfg.temperature),
        seed=int(cfg.seed), steps=int(cfg.steps), interpolation=str(cfg.interpolation), between=str(cfg.between),
        truncation=None if cfg.truncation is None else float(cfg.truncation),
        label=None if cfg.label is None else int(cfg.label),
        prompt=None if cfg.prompt is None else str(cfg.prompt), max_new_tokens=int(cfg.max_new_tokens),
        top_k=None if cfg.top_k is None else int(cfg.top_k), top_p=None if cfg.top_p is None else float(cfg.top_p),
        temperatures=tuple(float(t) for t in cfg.temperatures), nrow=None if cfg.nrow is None else int(cfg.nrow),
        arithmetic=_arithmetic_groups(cfg), max_minutes=cfg.get("max_minutes"),
    )


def _arithmetic_groups(cfg: DictConfig) -> tuple[tuple[int, ...], ...]:
    groups = []
    for key in ("a", "b", "c"):
        indices = cfg.arithmetic[key]
        try:
            groups.append(tuple(int(i) for i in indices))
        except (TypeError, ValueError):
            raise GenrunError(f"arithmetic.{key}={indices}: expected a list of sample indices like [0,1,2]") from None
        if not groups[-1]:
            raise GenrunError(f"arithmetic.{key}: needs at least one sample index")
    return tuple(groups)


def run(cfg: DictConfig):
    import torch
    from hydra.core.hydra_config import HydraConfig

    from genrun.families.base import SampleContext
    from genrun.runs import write_metrics
    from genrun.tasks.loading import load_model, pick_device, split_loader

    choices = HydraConfig.get().runtime.choices
    out_dir = Path(cfg.paths.run_dir)
    request = request_from_config(cfg)
    loaded = load_model(cfg, choices)
    torch.manual_seed(request.seed)
    context = SampleContext(out_dir=out_dir, device=pick_device(str(cfg.get("device", "auto"))),
                            data_info=loaded.data_info, load_split=split_loader(loaded.run_config))
    files = loaded.family.sample(loaded.net, request, context)
    write_metrics(out_dir, {"task": "sample", "status": "completed", "checkpoint": str(loaded.path),
                            "request": OmegaConf.to_container(cfg, resolve=False) | {"paths": None},
                            "files": {k: str(v) for k, v in files.items()}, "notes": context.notes})
    print(f"checkpoint: {loaded.path}")
    for name, path in files.items():
        print(f"{name}: {path}")
    for note in context.notes:
        print(f"note: {note}")
    return None
