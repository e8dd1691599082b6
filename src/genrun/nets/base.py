"""The base of genrun's networks: each remembers the arguments it was built with.

A checkpoint stores each component of a pipeline as its class, these arguments and its weights, so
`genrun sample` rebuilds it without the training config (diffusers' `register_to_config` does the same job).
Only the most derived constructor's arguments are kept: they are the ones that rebuild the object.
"""

from __future__ import annotations

import functools
import inspect

from torch import nn

PLAIN = (str, int, float, bool, type(None))


def plain(value, where: str):
    """`value` as JSON-like data (lists for tuples), or a TypeError naming the argument."""
    if isinstance(value, PLAIN):
        return value
    if type(value).__module__.startswith("omegaconf"):  # Hydra passes lists and dicts as OmegaConf containers
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (list, tuple)):
        return [plain(item, where) for item in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: a network argument must be plain data to be stored, got {type(value).__name__}")


class Net(nn.Module):
    """An nn.Module whose constructor arguments are kept in `init_config` (plain data)."""

    init_config: dict

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            init(self, *args, **kw)
            if type(self).__init__ is recording_init:  # the most derived constructor records
                bound = signature.bind(self, *args, **kw)
                bound.apply_defaults()
                config = {name: value for name, value in list(bound.arguments.items())[1:]}
                self.__dict__["init_config"] = plain(config, f"{cls.__name__}()")

        cls.__init__ = recording_init
