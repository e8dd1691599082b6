"""Optimisers from the config's partials, with fused kernels where they are safe and faster.

A fused Adam/AdamW updates all parameters in one kernel instead of a dozen small ops per tensor, which
makes a small model's whole step measurably faster on CPU (bench/results/vae_throughput.md). The choice is
left to genrun only while the config leaves `fused: null`; `fused: false` or `true` in the config wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from genrun.errors import GenrunError

FUSABLE = (torch.optim.Adam, torch.optim.AdamW)
FUSED_DEVICES = ("cpu", "cuda")


def _parameters(params: Iterable) -> list[torch.Tensor]:
    params = list(params)
    if params and isinstance(params[0], dict):
        return [p for group in params for p in group["params"]]
    return params


def build_optimizer(factory: Callable, params: Iterable, trainer=None, clipping: bool | None = None,
                    key: str = "model.module.optimizer") -> torch.optim.Optimizer:
    """`factory(params=...)`, fused when the config does not decide and every parameter allows it.

    Never fused under mixed precision (`trainer.precision=16-mixed` or `bf16-mixed`): a fused step unscales
    fp16 gradients itself, so clipping before it would see scaled values, and Lightning refuses to clip
    for such an optimiser at all. `clipping` defaults to whether the trainer clips (`gradient_clip_val`);
    models that clip by hand say so. `key` names the optimizer's config node in errors.
    """
    params = list(params)
    keywords = getattr(factory, "keywords", {}) or {}
    target = getattr(factory, "func", factory)
    mixed = trainer_mixed_precision(trainer)
    if clipping is None:
        clipping = bool(getattr(trainer, "gradient_clip_val", None))
    if keywords.get("fused") is True and mixed and clipping:
        raise GenrunError(f"{key}.fused=true cannot be combined with gradient clipping under mixed precision: "
                          "the fused step unscales gradients itself, so they cannot be clipped first; "
                          f"set {key}.fused=null")
    tensors = _parameters(params)
    fusable = (keywords.get("fused") is None and not mixed and isinstance(target, type)
               and issubclass(target, FUSABLE) and bool(tensors)
               and all(p.device.type in FUSED_DEVICES and p.is_floating_point() for p in tensors))
    try:
        return factory(params=params, fused=True) if fusable else factory(params=params)
    except ValueError as err:  # torch's own check of a value: "Invalid learning rate: -1"
        raise GenrunError(f"{key}: {err}") from None


def trainer_mixed_precision(trainer) -> bool:
    """Whether the trainer runs under torch.autocast with Lightning's MixedPrecision plugin."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    return isinstance(getattr(trainer, "precision_plugin", None), MixedPrecision)


def trainer_grad_scaler(module) -> object | None:
    """The fp16 gradient scaler of the module's trainer, if it has one."""
    trainer = getattr(module, "_trainer", None)
    plugin = getattr(trainer, "precision_plugin", None) if trainer is not None else None
    return getattr(plugin, "scaler", None)
