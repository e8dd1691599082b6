"""genrun train: fit, then (on rank zero) evaluate, sample, log and summarise."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from genrun.errors import GenrunError
from genrun.tasks.building import build


def _job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)


def _prepare_ddp_children(task: str, run_dir: Path) -> None:
    """Lightning starts DDP workers by re-running our command line; tell them which job to re-enter."""
    from genrun.cli import DDP_ARGS_ENV, DDP_TASK_ENV

    if "LOCAL_RANK" in os.environ:
        return
    # hydra.mode=RUN: a search trial's overrides name its recipe, which asks for a sweep; a worker is one job.
    args = [*_job_overrides(), f"hydra.run.dir='{run_dir}'", "hydra.output_subdir=null",
            f"hydra.job.name={task}_ddp_worker", "hydra.mode=RUN"]
    os.environ[DDP_TASK_ENV] = task
    os.environ[DDP_ARGS_ENV] = json.dumps(args)


def _leave_distributed(environment: dict) -> None:
    """Undo what DDP set in this process (LOCAL_RANK, WORLD_SIZE, the process group, the job its workers
    re-enter), so the next job of a sweep starts its own workers instead of believing it is one, and a
    process this one starts later (torchrun, say) is not taken for one of this job's workers."""
    import torch.distributed as dist

    from genrun.cli import DDP_ARGS_ENV, DDP_TASK_ENV

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in set(os.environ) - set(environment):
        del os.environ[key]
    os.environ.update(environment)
    for key in (DDP_TASK_ENV, DDP_ARGS_ENV):
        os.environ.pop(key, None)


def _callbacks(cfg: DictConfig, has_validation: bool) -> list:
    callbacks = []
    for name, conf in (cfg.get("callbacks") or {}).items():
        if conf is None:
            continue
        if name == "model_checkpoint" and not has_validation:
            conf = OmegaConf.merge(conf, {"monitor": None, "save_top_k": 1, "filename": "best"})
        if not has_validation and str(conf.get("monitor") or "").startswith("val/") and name != "model_checkpoint":
            raise GenrunError(f"callbacks.{name} watches {conf.monitor}, but this run has no validation split "
                              "(dataset.val_fraction=0): drop the callback or keep a validation split")
        callbacks.append(build(conf, f"callbacks.{name}"))
    return callbacks


def ddp_strategy_for(model, strategy):
    """Models that step their own optimisers (GANs) back-propagate through one network at a time, so
    each backward leaves the other network's parameters unused: plain DDP would stop with an error."""
    if strategy in ("ddp", "ddp_spawn", "ddp_fork", "ddp_notebook") and not model.automatic_optimization:
        return f"{strategy}_find_unused_parameters_true"
    return strategy


PROFILERS = {"simple": "SimpleProfiler", "advanced": "AdvancedProfiler"}


def profiler_for(trainer_cfg: DictConfig, run_dir: Path) -> dict:
    """`trainer.profiler=simple|advanced` (debug=profiler) as Lightning's profiler writing its report to
    <run dir>/fit-profile.txt instead of the console; without one, genrun's NoProfiler (cheaper hooks)."""
    import lightning.pytorch.profilers as profilers

    from genrun.callbacks.lean import NoProfiler

    name = trainer_cfg.get("profiler")
    if name is None:
        return {"profiler": NoProfiler()}
    if not isinstance(name, str):
        return {}
    if name not in PROFILERS:
        raise GenrunError(f"trainer.profiler={name}: choose one of {', '.join(PROFILERS)} (or null)")
    return {"profiler": getattr(profilers, PROFILERS[name])(dirpath=str(run_dir), filename="profile")}


def _loggers(cfg: DictConfig) -> list:
    return [build(conf, f"logger.{name}") for name, conf in (cfg.get("logger") or {}).items() if conf is not None]


def _test_item_limit(cfg: DictConfig, batch_size: int) -> int | None:
    """How many test items to evaluate: all, or what the trainer's debug limits allow."""
    trainer = cfg.trainer
    if trainer.get("fast_dev_run"):
        n = trainer.fast_dev_run
        return batch_size * (1 if n is True else int(n))
    limit = trainer.get("limit_test_batches")
    if isinstance(limit, int) and not isinstance(limit, bool):
        return batch_size * limit
    return None


def fill_from_data(cfg: DictConfig, data_info: dict) -> None:
    """Dataset keys left null in the config (num_classes of an image folder, vocab_size of a text) are
    known once the data is read: fill them in, so model configs can interpolate ${dataset.<key>}."""
    with open_dict(cfg):
        for key, value in cfg.dataset.items():
            if value is None and data_info.get(key) is not None:
                cfg.dataset[key] = data_info[key]


def flat_hparams(config: dict) -> dict:
    """model/dataset/trainer settings and seed as flat scalar hyperparameters for TensorBoard's HPARAMS."""
    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key != "_target_" or not prefix:
                    walk(f"{prefix}.{key}" if prefix else key, value)
        elif isinstance(node, (int, float, str, bool)):
            flat[prefix] = node
        elif node is None:
            flat[prefix] = "null"
        else:
            flat[prefix] = str(node)

    for section in ("model", "dataset", "trainer"):
        walk(section, config.get(section, {}))
    flat["seed"] = config.get("seed")
    return flat


def check_run_settings(cfg: DictConfig) -> None:
    """The task's own settings, checked before anything is built: a mistake here must not cost a run."""
    if int(cfg.num_samples) < 0:
        raise GenrunError(f"num_samples={cfg.num_samples}: must be 0 (no samples at the end) or more")
    if float(cfg.temperature) < 0:
        raise GenrunError(f"temperature={cfg.temperature}: must be non-negative")
    if cfg.get("threads") is not None and int(cfg.threads) < 1:
        raise GenrunError(f"threads={cfg.threads}: must be at least 1 (or null for torch's default)")
    if cfg.model.get("compile", False) not in (True, False):
        raise GenrunError(f"model.compile={cfg.model.compile!r}: must be true or false")
    from genrun.budget import check_max_minutes

    check_max_minutes(cfg.get("max_minutes"))


def _warn_if_endless(trainer_cfg: DictConfig) -> None:
    """max_epochs=-1 is Lightning's "no limit": say so once, so an endless run is never a surprise."""
    import logging

    endless = trainer_cfg.get("max_epochs") == -1 and trainer_cfg.get("max_steps") in (None, -1)
    if endless and not trainer_cfg.get("max_time") and not trainer_cfg.get("fast_dev_run"):
        logging.getLogger("genrun").warning(
            "trainer.max_epochs=-1 with no trainer.max_steps or trainer.max_time: training runs until you stop "
            "it (Ctrl-C keeps the last checkpoint; continue with resume=RUN_DIR)")


def _check_room_for_samples(cfg: DictConfig, data_info: dict, run_dir: Path) -> None:
    """The end-of-run samples must fit on disk: say so before training, not after it."""
    from genrun.budget import Budget
    from genrun.streaming import npy_bytes

    shape = data_info.get("shape")
    if int(cfg.num_samples) > 0 and shape and not data_info.get("tokenizer"):
        Budget(f"num_samples={cfg.num_samples}", None).check_disk(npy_bytes(int(cfg.num_samples), tuple(shape)),
                                                               run_dir)


def interrupted(trainer, run_dir: Path):
    """The line Ctrl-C during training ends with: where the last checkpoint is and how to go on."""
    from genrun.runs import CHECKPOINT_NAME
    from genrun.tasks import Interrupted

    last = run_dir / "checkpoints" / CHECKPOINT_NAME
    where = f"epoch {trainer.current_epoch}, step {trainer.global_step}"
    if not last.is_file():
        return Interrupted(f"training interrupted at {where}, before the first checkpoint; nothing was kept",
                           checkpoint=None, global_step=trainer.global_step)
    return Interrupted(f"training interrupted at {where}; last checkpoint: {last}; continue with: "
                       f"genrun train resume={run_dir}", checkpoint=str(last), global_step=trainer.global_step,
                       resume=f"genrun train resume={run_dir}")


def weights_checksum(model) -> str:
    """A fingerprint of a model's parameters (float64 sums of values and of their squares)."""
    import torch

    with torch.no_grad():
        params = [p.detach().double() for p in model.parameters()]
        total, squares = sum(float(p.sum()) for p in params), sum(float((p * p).sum()) for p in params)
    return f"{total:.17g}/{squares:.17g}"


def preempted(stop, run_dir: Path, launch, previous_handlers: dict):
    """After the preemption checkpoint: rank 0 requeues the job where a scheduler can (a submitit job exits
    here) and returns the line the run ends with; other ranks leave quietly."""
    from genrun import distributed
    from genrun.runs import CHECKPOINT_NAME
    from genrun.tasks import Interrupted

    if not launch.is_zero:
        raise SystemExit(0)
    last = run_dir / "checkpoints" / CHECKPOINT_NAME
    line = f"training preempted by {stop}; last checkpoint: {last}"
    logging.getLogger("genrun").warning(line, extra={"console": False})
    requeued = distributed.requeue(launch, stop.signum, previous_handlers)
    then = requeued or f"continue with: genrun train resume={run_dir}"
    return Interrupted(f"{line}; {then}", checkpoint=str(last), global_step=stop.step, preempted=True,
                       resume=f"genrun train resume={run_dir}")


def run(cfg: DictConfig):
    import lightning as L
    import torch
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.callbacks import ModelSummary

    from genrun import distributed
    from genrun.callbacks.preemption import Preempted, Preemption
    from genrun.callbacks.run_state import ResumeRecord, RNGState, RunInfo
    from genrun.checkpoint import checkpoint_io, remove_stale_temporaries
    from genrun.cuda_probe import cheap_cuda_probe
    from genrun.data.lightning import LightningData
    from genrun.families.base import EvalContext, SampleContext, SampleRequest
    from genrun.runs import CHECKPOINT_NAME, quiet_library_logs, write_metrics, write_run_file
    from genrun.search.trial import search_callbacks
    from genrun.tasks.train_console import announce, summarise
    from genrun.trackers import log_run_end

    started = time.monotonic()
    hydra_cfg = HydraConfig.get()
    run_dir = Path(cfg.paths.run_dir)
    choices = hydra_cfg.runtime.choices
    check_run_settings(cfg)
    launch = distributed.prepare(cfg.trainer)  # before anything is built: a wrong layout costs nothing
    # A process of a launch other than rank 0, or one that Lightning's DDP started for us.
    is_worker = not launch.is_zero or (launch.launcher is None and os.environ.get("LOCAL_RANK", "0") != "0")
    if not launch.is_zero:
        distributed.worker_log(run_dir, "train", launch.rank)
    checkpoint_dir = run_dir / "checkpoints"
    resume_from = None
    if cfg.resume:
        resume_from = checkpoint_dir / CHECKPOINT_NAME
        if not resume_from.is_file():
            raise GenrunError(f"resume={cfg.resume}: no checkpoint at {resume_from}; nothing to resume")
    elif launch.restarted and (checkpoint_dir / CHECKPOINT_NAME).is_file():
        # A requeued SLURM job or a torchrun restart runs the same command again: continue where it stopped.
        resume_from = checkpoint_dir / CHECKPOINT_NAME
        logging.getLogger("genrun").info(f"{launch.launcher} restarted this job: resuming from {resume_from}")
    debug = bool(choices.get("debug")) or bool(cfg.trainer.get("fast_dev_run"))
    if not is_worker:
        remove_stale_temporaries(checkpoint_dir)
        write_run_file(run_dir, choices.get("model"), choices.get("dataset"), "train", debug=debug)
        _prepare_ddp_children("train", run_dir)

    quiet_library_logs()
    distributed.apply_threads(distributed.thread_budget(cfg.get("threads"), hydra_cfg.get("launcher"), launch))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build(cfg.dataset, "dataset")
    data_info = datamodule.info()
    fill_from_data(cfg, data_info)
    model = build(cfg.model.module, "model.module")
    if cfg.model.get("compile", False):
        model.compile_training()
    if not model.automatic_optimization and cfg.trainer.get("gradient_clip_val"):
        raise GenrunError("trainer.gradient_clip_val does not apply to models that step their own optimisers "
                          f"(model={choices.get('model')}); clip with model.clip_grad_norm=... instead")
    # Lightning refuses gradient accumulation under manual optimisation, but only once fitting has begun.
    accumulate = cfg.trainer.get("accumulate_grad_batches")
    if not model.automatic_optimization and isinstance(accumulate, int) and accumulate > 1:
        raise GenrunError(f"trainer.accumulate_grad_batches={accumulate} does not apply to models that step "
                          f"their own optimisers (model={choices.get('model')}); raise dataset.batch_size instead")
    if not is_worker:
        _check_room_for_samples(cfg, data_info, run_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    info = {"config": config, "data": data_info,
            "choices": {"model": choices.get("model"), "dataset": choices.get("dataset")}}
    has_validation = datamodule.has_validation()
    preemption = Preemption(checkpoint_dir / CHECKPOINT_NAME)
    callbacks = [*_callbacks(cfg, has_validation), RunInfo(info), RNGState(int(cfg.seed)), preemption,
                 *search_callbacks(cfg)]
    if cfg.trainer.get("enable_model_summary", True):
        # Lightning's plain summary logs its table (to train.log); the rich one would print it on the console.
        callbacks.append(ModelSummary(max_depth=1))
    if resume_from is not None and not is_worker:
        callbacks.append(ResumeRecord(run_dir, _job_overrides()))
    # No validation split (dataset.val_fraction=0): switch the loop off rather than hand Lightning an empty one.
    no_validation = {} if has_validation else {"limit_val_batches": 0}
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=_loggers(cfg) or False,
                          plugins=[checkpoint_io()], default_root_dir=str(run_dir),
                          strategy=ddp_strategy_for(model, cfg.trainer.get("strategy")), **no_validation,
                          **profiler_for(cfg.trainer, run_dir))
    environment = dict(os.environ)
    title = f"genrun train: {choices.get('model')} on {choices.get('dataset')}"
    if not is_worker:
        _warn_if_endless(cfg.trainer)
        announce(title, model, data_info, trainer.strategy.root_device, cfg.trainer)
    try:
        with cheap_cuda_probe():
            trainer.fit(model, datamodule=LightningData(datamodule), ckpt_path=resume_from, weights_only=True)
    except SystemExit:
        if trainer.interrupted:  # Lightning turns Ctrl-C into SystemExit(1) once it has shut down
            raise interrupted(trainer, run_dir) from None
        raise
    except Preempted as stop:
        raise preempted(stop, run_dir, launch, preemption.previous) from None
    finally:
        preemption.restore()
    if trainer.interrupted:
        raise interrupted(trainer, run_dir)
    if trainer.world_size > 1:
        # Each process's own weights, in its own log: data-parallel ranks must end with the same ones.
        logging.getLogger("genrun").info(f"weights checksum on rank {trainer.global_rank}: {weights_checksum(model)}",
                                         extra={"console": False})
    # fast_dev_run and max_steps can end without an epoch-end checkpoint: always leave the final one.
    trainer.save_checkpoint(checkpoint_dir / CHECKPOINT_NAME, weights_only=False)
    if not is_worker:
        _leave_distributed(environment)
    if not trainer.is_global_zero:
        return None

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    pipeline = model.pipeline(data_info).eval()
    end_knobs = replace(type(pipeline).Knobs(), **type(pipeline).after_training)
    device = trainer.strategy.root_device
    splits = datamodule.splits

    def load_split(name: str):
        return splits[name]

    if cfg.test:
        limit = _test_item_limit(cfg, datamodule.batch_size)
        x, y = splits["test"]
        test_splits = {**splits, "test": (x[:limit], y[:limit]) if limit else (x, y)}
        quality = bool(cfg.get("image_metrics", True)) and type(pipeline).quality_after_training and not debug
        context = EvalContext(out_dir=run_dir, device=device, data_info=data_info,
                              load_split=test_splits.__getitem__,
                              settings={**asdict(end_knobs), "iwae_k": getattr(model, "iwae_k", 100),
                                        "image_metrics": quality,
                                        "batch_size": 250,
                                        "classifier_dir": str(Path(cfg.paths.output_root) / ".cache" / "classifiers"),
                                        "dataset_config": config["dataset"]})
        with torch.no_grad():
            metrics.update(pipeline.evaluate(context))
    files = {}
    if int(cfg.num_samples) > 0:
        request = SampleRequest(num_samples=int(cfg.num_samples), temperature=float(cfg.temperature),
                                seed=int(cfg.seed), max_minutes=cfg.get("max_minutes"), knobs=end_knobs,
                                mode=type(pipeline).modes[0])
        files = pipeline.sample(request, SampleContext(out_dir=run_dir / "samples", device=device,
                                                       data_info=data_info, load_split=load_split))
    _log_to_tensorboard(trainer, config, metrics, files)
    log_run_end(trainer, config, metrics, files)  # MLflow, W&B (genrun/trackers.py)
    write_metrics(run_dir, {"task": "train", "status": "completed", "metrics": metrics,
                            "epochs": trainer.current_epoch, "global_step": trainer.global_step, "data": data_info})
    summarise(title, metrics, data_info, run_dir, time.monotonic() - started, trainer)
    return metrics.get(cfg.get("optimized_metric"))


def _log_to_tensorboard(trainer, config: dict, metrics: dict, files: dict) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger

    from genrun.evaluation.run_tensorboard import hparam_metric_names, write_hparams
    from genrun.headlines import is_constant

    for logger in trainer.loggers:
        if not isinstance(logger, TensorBoardLogger):
            continue
        hparam_metrics = {f"hparams/{k}": v for k, v in metrics.items() if not k.endswith("_step")}
        # Lightning's log_hyperparams, with the columns a later `genrun evaluate` fills named in advance:
        # TensorBoard takes a run's HPARAMS columns from its first record.
        write_hparams(logger.experiment, flat_hparams(config), hparam_metrics, hparam_metric_names())
        # The end-of-run figures as ordinary scalars too, beside the curves, at the run's last step.
        final = {k: v for k, v in metrics.items() if k.split("/")[0] in ("test", "eval") and not is_constant(k)}
        logger.log_metrics(final, step=trainer.global_step)
        text = OmegaConf.to_yaml(OmegaConf.create(config))
        logger.experiment.add_text("config", "    " + text.replace("\n", "\n    "), 0)
        grid = files.get("grid")
        if grid is not None:
            import numpy as np
            from PIL import Image

            image = np.asarray(Image.open(grid).convert("RGB"))
            logger.experiment.add_image("samples/final", image, trainer.global_step, dataformats="HWC")
        logger.experiment.flush()
