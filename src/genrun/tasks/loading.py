"""Rebuild a trained network from a checkpoint alone (no Lightning): for sample and evaluate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from genrun.checkpoint import load_checkpoint
from genrun.errors import GenrunError
from genrun.families import family_module
from genrun.runs import locate_checkpoint


@dataclass
class LoadedModel:
    path: Path
    net: torch.nn.Module
    family: object
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
    path = locate_checkpoint(cfg.get("ckpt"), cfg.paths.output_root, choices.get("model"), choices.get("dataset"))
    payload = load_checkpoint(path)
    info = payload.get("genrun")
    if not isinstance(info, dict) or "config" not in info or "family" not in info:
        raise GenrunError(f"checkpoint {path}: not written by genrun train (no run config inside)")
    family = family_module(info["family"])
    net = family.build_net(info["config"], payload["state_dict"])
    return LoadedModel(path, net, family, info["config"], info.get("data", {}), info.get("choices", {}))


def split_loader(run_config: dict):
    """A function returning a split's (inputs, labels), building the run's datamodule on first use."""
    cache = {}

    def load(split: str):
        if "module" not in cache:
            from hydra.utils import instantiate

            cache["module"] = instantiate(run_config["dataset"])
            cache["module"].setup()
        return cache["module"].splits[split]

    return load
