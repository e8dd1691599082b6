"""Inference for each model family without Lightning: rebuild the net from a checkpoint, sample, evaluate.

A family module provides:
  build_net(run_config: dict, state_dict: dict) -> nn.Module     (in eval mode)
  sample(net, request: SampleRequest, context: SampleContext) -> dict[str, Path]   (files written)
  evaluate(net, context: EvalContext) -> dict[str, float]
The LightningModule of the family names it with its `family` class attribute; the name is stored in
every checkpoint.
"""

from __future__ import annotations

import importlib

from genrun.errors import GenrunError

FAMILIES = {
    "autoencoder": "genrun.families.autoencoder",
    "classifier": "genrun.families.classifier",
    "text": "genrun.families.text",
    "gan": "genrun.families.gan",
}


def family_module(name: str):
    if name not in FAMILIES:
        raise GenrunError(f"checkpoint names model family {name!r}, which this genrun does not know "
                          f"(known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[name])
