"""genrun evaluate: measure a trained model on held-out data; a table, metrics.json, and the figures in the
training run's own TensorBoard (genrun.evaluation.run_tensorboard)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from genrun.errors import GenrunError

SETTING_KEYS = ("num_samples", "batch_size", "temperature", "seed", "image_metrics", "inception_weights")


def settings_from_config(cfg: DictConfig, run_config: dict, knobs=None) -> dict:
    """The plain values a family's evaluate reads (see genrun.families.base.EvalContext): the task's settings
    and the model's own knobs (iwae_k of an autoencoder, say)."""
    from dataclasses import asdict

    from genrun.budget import check_max_minutes

    settings = {**(asdict(knobs) if knobs is not None else {}), **{k: cfg[k] for k in SETTING_KEYS if k in cfg}}
    settings["max_minutes"] = check_max_minutes(cfg.get("max_minutes"))
    classifier = cfg.get("classifier") or {}
    settings |= {"classifier_ckpt": classifier.get("ckpt"), "classifier_epochs": classifier.get("epochs"),
                 "classifier_dir": classifier.get("cache_dir"), "dataset_config": run_config.get("dataset")}
    return settings


def _headline(metrics: dict) -> dict[str, str]:
    """The lines a reader needs before the numbers: sample counts and the feature network's accuracy."""
    lines = {}
    if "eval/n_fake" in metrics:
        lines["samples"] = (f"n fake {metrics['eval/n_fake']:.0f}, n real {metrics['eval/n_real']:.0f} (test split), "
                            f"n train {metrics['eval/n_train']:.0f}")
    if "eval/domain_fid" in metrics:
        lines["domain FID"] = (f"features of a classifier trained on this dataset (test accuracy "
                               f"{metrics['eval/classifier_test_acc']:.4f}); not comparable with Inception FID")
    return lines


def _where(tb_dir: Path, out_dir: Path) -> str:
    if tb_dir.parent == out_dir:
        return "this evaluation's own: the checkpoint is not inside a genrun train run directory"
    return "the training run's own: eval/* at the checkpoint's step, hparams/eval/* in its HPARAMS row"


def run(cfg: DictConfig):
    from dataclasses import fields

    import torch
    from hydra.core.hydra_config import HydraConfig

    from genrun.evaluation.run_tensorboard import log_evaluation
    from genrun.families.base import EvalContext
    from genrun.pipeline import parse_knobs
    from genrun.runs import print_summary, summary_metrics, test_is_validation, write_metrics, write_run_file
    from genrun.tasks.loading import load_model, pick_device, say_which, split_loader
    from genrun.tasks.sample import knob_values, model_name, task_settings

    choices = HydraConfig.get().runtime.choices
    out_dir = Path(cfg.paths.run_dir)
    loaded = load_model(cfg, choices)
    if not (out_dir / "run.json").exists():  # names the model for titles; never rewrites a training run's
        write_run_file(out_dir, loaded.choices.get("model"), loaded.choices.get("dataset"), "evaluate")
    values = knob_values(cfg, "evaluate")
    if "attack" in values and "attack" not in {f.name for f in fields(type(loaded.pipeline).Knobs)}:
        raise GenrunError(f"attack={values['attack']}: adversarial attacks need a model=classifier checkpoint; "
                          f"{loaded.path} is a {model_name(loaded)} run ({type(loaded.pipeline).__name__})")
    knobs = parse_knobs(type(loaded.pipeline).Knobs, values, model_name(loaded), task_settings("evaluate"))
    say_which(loaded)
    torch.manual_seed(int(cfg.seed))
    context = EvalContext(out_dir=out_dir, device=pick_device(str(cfg.get("device", "auto"))),
                          data_info=loaded.data_info, load_split=split_loader(loaded.run_config),
                          settings=settings_from_config(cfg, loaded.run_config, knobs))
    with torch.no_grad():
        metrics = loaded.pipeline.evaluate(context)
    write_metrics(out_dir, {"task": "evaluate", "status": "completed", "checkpoint": str(loaded.path),
                            "metrics": metrics, "data": loaded.data_info})
    tb_dir = log_evaluation(loaded.path, loaded.run_config, metrics, out_dir)
    headline = _headline(metrics) | {"tensorboard": _where(tb_dir, out_dir)}
    if test_is_validation(loaded.data_info):
        headline["note"] = "no separate test split: held-out figures are on the validation split (val/...)"
    print_summary(f"genrun evaluate: {loaded.path}", headline, summary_metrics(metrics, loaded.data_info), out_dir,
                  [f"tensorboard --logdir {tb_dir}"])
    return metrics
