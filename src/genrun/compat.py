"""Checkpoints written before pipelines (format 1: a model family and the whole run config) still load.

Format 1 named a family ("autoencoder", "gan", "text", "classifier") and kept each net's config inside the
training config at `model.module.<net>`; the conversion reads exactly those places, once, and returns the
format 2 pipeline spec that genrun.pipeline builds from. Nothing in it is instantiated through Hydra.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from genrun.errors import GenrunError

# family -> (pipeline class, {component: config key under model.module})
FORMAT1 = {
    "autoencoder": ("genrun.families.autoencoder.AutoencoderPipeline", {"net": "net"}),
    "gan": ("genrun.families.gan.GANPipeline", {"generator": "generator"}),
    "text": ("genrun.families.text.TextPipeline", {"net": "net"}),
    "classifier": ("genrun.families.classifier.ClassifierPipeline", {"net": "net"}),
}


def _prefix(family: str, component: str, state_dict: Mapping) -> str:
    """A GAN kept its averaged generator beside the live one; that is the one to sample from."""
    if family == "gan" and any(k.startswith("ema_generator.") for k in state_dict):
        return "ema_generator."
    return f"{component}."


def convert_format1(info: Mapping, state_dict: Mapping, path: Path | str) -> dict:
    family = info.get("family")
    if family not in FORMAT1:
        raise GenrunError(f"checkpoint {path}: written by an older genrun (model family {family!r}) that this "
                          "version cannot convert; retrain, or sample it with the genrun that wrote it")
    pipeline, components = FORMAT1[family]
    module = ((info.get("config") or {}).get("model") or {}).get("module") or {}
    spec = {"format": 2, "class": pipeline, "components": {}, "settings": {}}
    for name, key in components.items():
        node = module.get(key)
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise GenrunError(f"checkpoint {path}: format 1 without model.module.{key}; it cannot be converted")
        config = {k: v for k, v in node.items() if not str(k).startswith("_")}
        spec["components"][name] = {"class": node["_target_"], "config": config,
                                    "prefix": _prefix(family, name, state_dict)}
    if family == "text":
        spec["settings"]["carry_state"] = bool(module.get("carry_state", False))
    return spec
