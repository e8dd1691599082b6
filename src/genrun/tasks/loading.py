"""Rebuild a trained network from a checkpoint alone (no Lightning): for sample and evaluate.

A model with no training of its own (DeepDream, Gatys style transfer: a frozen feature network and an
optimiser over the image) says so in its config with `pipeline: genrun.families.X.SomePipeline`; its
pipeline is then built from that config (`SomePipeline.from_config`), with no checkpoint. The class must be
one of genrun's own Pipelines (genrun.trust), as a checkpoint's is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genrun.checkpoint import load_checkpoint
from genrun.errors import GenrunError
from genrun.pipeline import Pipeline, load_pipeline
from genrun.runs import choose_checkpoint
from genrun.trust import check_stored_config


@dataclass
class LoadedModel:
    path: Path | None  # None: a pipeline built from its model config, no checkpoint
    why: str  # why this checkpoint: said on the console, so a default choice is never silent
    pipeline: Pipeline
    run_config: dict
    data_info: dict
    choices: dict


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise GenrunError(f"device={name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenrunError(f"device={name}: CUDA is not available on this machine")
    return device


def load_model(cfg, choices) -> LoadedModel:
    """The checkpoint `ckpt=` names (or the newest run of model/dataset), rebuilt as its pipeline; or, for a
    model whose config declares its pipeline, that pipeline built from the config."""
    model_cfg = cfg.get("model")
    if model_cfg is not None and model_cfg.get("pipeline"):
        return from_model_config(cfg, choices)
    path, why = choose_checkpoint(cfg.get("ckpt"), cfg.paths.output_root, choices.get("model"),
                                  choices.get("dataset"))

    payload = load_checkpoint(path)
    info = payload.get("genrun")
    if not isinstance(info, dict) or "config" not in info:
        raise GenrunError(f"checkpoint {path}: not written by genrun train (no run config inside)")
    check_stored_config(info["config"], f"checkpoint {path}")
    stored_choices = info.get("choices") or {}
    _check_choices(cfg, choices, stored_choices, path)
    data_info = info.get("data", {}) or {}
    pipeline = load_pipeline(payload, path)
    run_config = {**info["config"], "dataset": dataset_settings(info["config"].get("dataset"), data_info,
                                                                 cfg.get("dataset_keys") or {}, path)}
    return LoadedModel(path, why, pipeline, run_config, data_info, stored_choices)


def from_model_config(cfg, choices) -> LoadedModel:
    """The pipeline a model config declares (`pipeline: CLASS`, one of genrun's own), built from its settings."""
    from omegaconf import OmegaConf

    from genrun.pipeline import _trusted_class

    name = choices.get("model") or "?"
    if cfg.get("ckpt"):
        raise GenrunError(f"ckpt={cfg.ckpt}: model={name} has no training and reads no checkpoint; drop ckpt=")
    settings = OmegaConf.to_container(cfg.model, resolve=True)
    cls = _trusted_class(settings.pop("pipeline"), Pipeline, "pipeline", f"model={name}")
    if not callable(getattr(cls, "from_config", None)):
        raise GenrunError(f"model={name}: pipeline {cls.__name__} is built from a checkpoint, not a config")
    pipeline = cls.from_config(settings)
    why = f"model={name} has no training: its pipeline is built from its config, with no checkpoint"
    return LoadedModel(None, why, pipeline, {}, {}, dict(choices))


def dataset_settings(stored: dict | None, data_info: dict, given, path: Path) -> dict | None:
    """The dataset config that reads test images: the run's own, reading the data the run trained on (a run
    that fell back to the bundled digits reads them again, with no download attempt), then the user's
    `dataset.KEY=VALUE` settings, each of which must be a key that dataset has."""
    if not isinstance(stored, dict):
        if given:
            raise GenrunError(f"dataset.{next(iter(given))}: checkpoint {path} records no dataset settings")
        return stored
    settings = dict(stored)
    if settings.get("source") == "auto" and data_info.get("source") in ("mini", "full"):
        settings["source"] = data_info["source"]
    from omegaconf import OmegaConf

    given = OmegaConf.to_container(given, resolve=True) if OmegaConf.is_config(given) else dict(given)
    for key, value in given.items():
        if key == "_target_" or key not in settings:
            known = ", ".join(k for k in settings if k != "_target_")
            raise GenrunError(f"dataset.{key}: not a setting of this checkpoint's dataset (it has: {known})")
        settings[key] = value
    return settings


def say_which(loaded: LoadedModel) -> None:
    """Which checkpoint a task uses and why: on stdout, beside the files it writes (stderr keeps a refused
    setting's error to its one line)."""
    from rich.console import Console

    what = f"checkpoint: {loaded.path}" if loaded.path is not None else "checkpoint: none"
    Console(highlight=False).print(f"{what}\n  ({loaded.why})", soft_wrap=True)


def _check_choices(cfg, choices, stored: dict, path: Path) -> None:
    """`model=` / `dataset=` on the command line must name what the checkpoint holds (with `ckpt=`, they
    would otherwise be ignored silently)."""
    if not cfg.get("ckpt"):
        return  # the newest run of that model and dataset was picked: they agree by construction
    for group in ("model", "dataset"):
        asked, stored_choice = choices.get(group), stored.get(group)
        if asked and stored_choice and asked != stored_choice:
            raise GenrunError(f"{group}={asked}, but ckpt={cfg.ckpt} holds a {group}={stored_choice} run "
                              f"({path}); drop {group}= or pick a {asked} checkpoint")


def split_loader(run_config: dict):
    """A function returning a split's (inputs, labels), building the run's datamodule on first use."""
    cache = {}

    def load(split: str):
        if "module" not in cache:
            from genrun.trust import build_stored

            cache["module"] = build_stored(run_config["dataset"], "checkpoint", "dataset")
            cache["module"].purpose = "reading test images from"
            cache["module"].setup()
        return cache["module"].splits[split]

    return load
