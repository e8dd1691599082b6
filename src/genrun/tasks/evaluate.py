"""genrun evaluate: measure a trained model on held-out data; a table, metrics.json and TensorBoard."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def run(cfg: DictConfig):
    import torch
    from hydra.core.hydra_config import HydraConfig

    from genrun.families.base import EvalContext
    from genrun.runs import print_summary, write_metrics
    from genrun.tasks.loading import load_model, pick_device, split_loader

    choices = HydraConfig.get().runtime.choices
    out_dir = Path(cfg.paths.run_dir)
    loaded = load_model(cfg, choices)
    torch.manual_seed(int(cfg.seed))
    settings = {k: cfg[k] for k in ("iwae_k", "num_samples", "batch_size", "temperature", "seed") if k in cfg}
    context = EvalContext(out_dir=out_dir, device=pick_device(str(cfg.get("device", "auto"))),
                          data_info=loaded.data_info, load_split=split_loader(loaded.run_config),
                          settings=settings)
    with torch.no_grad():
        metrics = loaded.family.evaluate(loaded.net, context)
    write_metrics(out_dir, {"task": "evaluate", "status": "completed", "checkpoint": str(loaded.path),
                            "metrics": metrics})
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(out_dir / "tensorboard")) as writer:
        for name, value in metrics.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(f"evaluate/{name}", value, 0)
    print_summary(f"genrun evaluate: {loaded.path}", {}, metrics, out_dir,
                  [f"tensorboard --logdir {out_dir / 'tensorboard'}"])
    return metrics
