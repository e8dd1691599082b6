"""Objects built from config nodes, with a bad value reported as one line naming the key.

The override checker catches unknown keys and wrong types before Hydra runs; values of the right type
can still be wrong (`trainer.precision=bogus`, `trainer.max_epochs=-5`, `trainer.accelerator=gpu` on a
machine without one). Lightning, torch and Hydra report those as a multi-line instantiation error ending
in a traceback hint. `build` turns them into a GenrunError that names the config key when the message
points at exactly one, and otherwise the config node. `HYDRA_FULL_ERROR=1` keeps the original error.
"""

from __future__ import annotations

import os
import re

from genrun.errors import GenrunError

# What a constructor raises for a value it cannot use; anything else is left alone (a bug should show).
CONFIG_ERRORS = (ValueError, TypeError, RuntimeError)


def build(node, key: str, **kwargs):
    """`hydra.utils.instantiate(node, **kwargs)`; `key` is the node's dotted path in the config."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from genrun.tasks import user_error

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if user_error(err) or not _is_config_error(cause) or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        where = _full_key(str(err)) or key
        message = _first_line(cause)
        culprit = _culprit(_leaves(node, key), message)
        raise GenrunError(f"{culprit}: {message}" if culprit else f"{where}: {message}") from None


def _is_config_error(cause: BaseException | None) -> bool:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    return isinstance(cause, (*CONFIG_ERRORS, MisconfigurationException))


def _full_key(message: str) -> str | None:
    found = re.search(r"^full_key: (\S+)$", message, re.MULTILINE)
    return found.group(1) if found else None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _leaves(node, prefix: str) -> dict[str, tuple[str, object]]:
    """Scalar values under `node`: dotted key -> (the key a user sets, value).

    A value interpolated from a knob (`activation: ${model.activation}`) is reported as that knob.
    """
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig):
        return {}
    try:
        resolved = OmegaConf.to_container(node, resolve=True)
    except Exception:  # an interpolation that cannot resolve here: name the node instead
        return {}
    raw = OmegaConf.to_container(node, resolve=False)
    found: dict[str, tuple[str, object]] = {}

    def walk(value, source, path: str) -> None:
        if isinstance(value, dict):
            for name, child in value.items():
                if not str(name).startswith("_"):
                    walk(child, source.get(name) if isinstance(source, dict) else None, f"{path}.{name}")
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            knob = re.fullmatch(r"\$\{([\w.]+)\}", source) if isinstance(source, str) else None
            found[path] = (knob.group(1) if knob else path, value)

    walk(resolved, raw, prefix)
    return found


def _culprit(leaves: dict[str, tuple[str, object]], message: str) -> str | None:
    """`key=value` for the one key the message points at, else None.

    Tried in turn: the key's name written as an assignment (`devices=0`), the name as a word, then a
    distinctive string value ('gpu'); the first test that singles out one key decides.
    """

    def mentions(word: str, suffix: str = "") -> bool:
        end = re.escape(suffix) if suffix else r"(?![\w-]|\.\w)"
        return re.search(rf"(?<![\w.-]){re.escape(word)}{end}", message) is not None

    def name(key: str) -> str:
        return key.rsplit(".", 1)[-1]

    def value(key: str):
        return leaves[key][1]

    tests = (lambda k: mentions(name(k), "="), lambda k: mentions(name(k)),
             lambda k: isinstance(value(k), str) and len(value(k)) > 1 and mentions(value(k)))
    for test in tests:
        found = [k for k in leaves if test(k)]
        if len(found) == 1:
            knob, found_value = leaves[found[0]]
            return f"{knob}={found_value!r}"
    return None
