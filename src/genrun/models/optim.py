"""Optimisers from the config's partials, with fused kernels where they are safe and faster.

A fused Adam/AdamW updates all parameters in one kernel instead of a dozen small ops per tensor; on CPU a
small VAE's whole training step gets ~20% faster (bench/results/vae_throughput.md). The choice is left to
genrun only while the config leaves `fused: null`; `fused: false` or `true` in the optimizer config wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

FUSABLE = (torch.optim.Adam, torch.optim.AdamW)
FUSED_DEVICES = ("cpu", "cuda")


def _parameters(params: Iterable) -> list[torch.Tensor]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return [p for group in params for p in group["params"]]
    return params


def build_optimizer(factory: Callable, params: Iterable, grad_scaler: object | None = None) -> torch.optim.Optimizer:
    """`factory(params=...)`, fused when the config does not decide and every parameter allows it.

    Never fused under fp16 mixed precision (`grad_scaler` set): a fused step unscales gradients itself, so
    gradient clipping before it would see scaled values.
    """
    params = list(params)
    keywords = getattr(factory, "keywords", {}) or {}
    target = getattr(factory, "func", factory)
    tensors = _parameters(params)
    fusable = (keywords.get("fused") is None and grad_scaler is None and isinstance(target, type)
               and issubclass(target, FUSABLE) and bool(tensors)
               and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in tensors))
    return factory(params=params, fused=True) if fusable else factory(params=params)


def trainer_grad_scaler(module) -> object | None:
    """The fp16 gradient scaler of the module's trainer, if it has one."""
    trainer = getattr(module, "_trainer", None)
    plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
    return getattr(plugin, "scaler", None)
