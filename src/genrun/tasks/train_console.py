"""What `genrun train` says on the console: one line before fitting, one summary after it.

The line before says what is about to run (model, data, parameters, device, how long); the summary leads
with the family's headline figures, then the elapsed time and the best checkpoint's score, and names
figures measured on the validation split as such.
"""

from __future__ import annotations

from pathlib import Path

from genrun.runs import format_value, print_summary, summary_metrics, test_is_validation


def count(n: int) -> str:
    """1234567 -> '1.2 M', 652000 -> '652 K': parameter counts as people say them."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return str(n)


def elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{seconds:.1f} s"


def data_line(data_info: dict) -> str:
    """'mini: 4,500 train / 500 val / test = the validation split' (or '/ 10,000 test')."""
    sizes = data_info.get("split_sizes") or {}
    unit = data_info.get("split_unit")
    parts = [f"{sizes[name]:,} {name}" for name in ("train", "val") if name in sizes]
    if test_is_validation(data_info):
        parts.append("test = the validation split")
    elif "test" in sizes:
        parts.append(f"{sizes['test']:,} test")
    source = data_info.get("source")
    described = " / ".join(parts) + (f" ({unit})" if unit else "")
    return f"{Path(str(source)).name}: {described}" if source else described


def limit_line(trainer_cfg) -> str:
    """How the run is bounded, as the progress bar counts it."""
    steps, epochs = trainer_cfg.get("max_steps") or -1, trainer_cfg.get("max_epochs")
    if trainer_cfg.get("fast_dev_run"):
        return "one batch (fast_dev_run)"
    parts = [f"{steps:,} steps"] if steps > 0 else []
    if epochs not in (None, -1):
        parts.append(f"{epochs} epoch{'s' if epochs != 1 else ''}")
    if trainer_cfg.get("max_time"):
        parts.append(f"time {trainer_cfg.max_time}")
    return "up to " + " or ".join(parts) if parts else "until stopped"


def announce(title: str, model, data_info: dict, device, trainer_cfg) -> None:
    """The line printed before fitting, so the wait that follows is never a mystery."""
    from rich.console import Console

    parameters = sum(p.numel() for p in model.parameters())
    Console(stderr=True, highlight=False).print(
        f"[bold]{title}[/bold] · {count(parameters)} parameters · {data_line(data_info)} · {device} · "
        f"{limit_line(trainer_cfg)}", soft_wrap=True)


def best_checkpoint(trainer) -> str | None:
    """'val/loss 191.3 (checkpoints/best.ckpt)' when a checkpoint callback monitors a metric."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = trainer.checkpoint_callback
    if not isinstance(callback, ModelCheckpoint) or callback.monitor is None:
        return None
    score, path = callback.best_model_score, callback.best_model_path
    if score is None or not path:
        return None
    return f"{callback.monitor} {format_value(float(score))} ({Path(path).parent.name}/{Path(path).name})"


def summarise(title: str, metrics: dict, data_info: dict, run_dir: Path, seconds: float, trainer) -> None:
    """The end-of-run block: headline figures first, constants left to metrics.json."""
    lines = {"data": data_line(data_info), "elapsed": f"{elapsed(seconds)} ({trainer.global_step:,} steps, "
                                                      f"{trainer.current_epoch} epochs)"}
    best = best_checkpoint(trainer)
    if best:
        lines["best checkpoint"] = best
    if test_is_validation(data_info):
        lines["note"] = "no separate test split: end-of-run figures are on the validation split (val/...)"
    tb_dir, csv = run_dir / "tensorboard", run_dir / "csv" / "metrics.csv"
    print_summary(
        title, lines, summary_metrics(metrics, data_info), run_dir,
        [*([f"tensorboard --logdir {tb_dir}"] if tb_dir.exists() else []),
         *([f"logged metrics: {csv}"] if csv.exists() else []),
         f"genrun sample ckpt={run_dir}", f"genrun sample --help ckpt={run_dir}   (this model's knobs)"],
    )
