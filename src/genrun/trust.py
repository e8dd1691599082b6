"""What a stored config may build: a checkpoint or a run directory is data, never code.

A config read back from a checkpoint (`sample`, `evaluate`, a cached classifier) or from a run directory
(`resume=`) names classes by import path in `_target_`. Handed to Hydra's `instantiate` as it is, a crafted
file could name `torch.load`, `builtins.open` or `shutil.copyfile` and run them; Hydra's own blocklist stops
only a handful of names. So every `_target_` in such a config is checked against the allow-list below
before anything is built, and one that is not on it is refused in one line naming the key and the target.

The allow-list has two parts:
- genrun's own building blocks, by where they live and what they are: an `nn.Module` defined in
  `genrun.nets` or `genrun.families`, a LightningModule in `genrun.models`, a dataset (InMemoryDataModule) in
  `genrun.data`, a Lightning callback in `genrun.callbacks`, and the few functions named in OWN_FUNCTIONS
  (learning-rate schedules).
  A new model's classes are trusted by living in those packages; nothing needs registering.
- the third-party classes genrun's configs use or document: exact names in THIRD_PARTY, plus optimisers and
  learning-rate schedulers defined in `torch.optim`.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

from genrun.errors import GenrunError

OWN_FUNCTIONS = frozenset({"genrun.models.language_model.warmup_cosine"})
THIRD_PARTY = frozenset({
    "lightning.pytorch.Trainer",
    "lightning.pytorch.callbacks.LearningRateMonitor",
    "lightning.pytorch.callbacks.EarlyStopping",
    "lightning.pytorch.callbacks.ModelCheckpoint",
    "lightning.pytorch.callbacks.RichProgressBar",
    "lightning.pytorch.callbacks.TQDMProgressBar",
    "lightning.pytorch.callbacks.RichModelSummary",
    "lightning.pytorch.callbacks.ThroughputMonitor",
    "lightning.pytorch.loggers.TensorBoardLogger",
    "lightning.pytorch.loggers.CSVLogger",
    "lightning.pytorch.loggers.MLFlowLogger",
    "lightning.pytorch.loggers.WandbLogger",
})
# Package of genrun's own classes -> (module, class) of the base every class there must derive from.
OWN_KINDS = {
    "genrun.nets": ("torch.nn", "Module"),
    "genrun.families": ("torch.nn", "Module"),  # a family may define the networks no other family uses
    "genrun.models": ("lightning.pytorch", "LightningModule"),
    "genrun.data": ("genrun.data.base", "InMemoryDataModule"),
    "genrun.callbacks": ("lightning.pytorch", "Callback"),
}
TORCH_KINDS = {
    "torch.optim": ("torch.optim", "Optimizer"),
    "torch.optim.lr_scheduler": ("torch.optim.lr_scheduler", "LRScheduler"),
}
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _class_in_source(target: str, module_name: str) -> bool:
    """Whether `module_name`'s source file defines a class named like `target`'s last part, read without
    importing it: genrun's LightningModules and callbacks import Lightning (seconds), and
    `genrun sample` checks a stored config that names them without ever building them."""
    import importlib.util

    name = target.rpartition(".")[2]
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    source = Path(spec.origin).read_text(encoding="utf-8")
    return re.search(rf"^class {re.escape(name)}\(", source, re.MULTILINE) is not None


def _derives_from(target: str, module_name: str, base: tuple[str, str]) -> bool:
    """Whether `target` is a class defined in `module_name` (or below) deriving from `base`.

    Imports only `module_name`, a module of genrun or torch, never a module the stored string names
    outside the trusted packages.
    """
    owner, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(owner)
        found = getattr(module, name)
        base_class = getattr(importlib.import_module(base[0]), base[1])
    except (ImportError, AttributeError):
        return False
    return (isinstance(found, type) and issubclass(found, base_class)
            and (found.__module__ == module_name or found.__module__.startswith(module_name + ".")))


def is_trusted(target: object) -> bool:
    """Whether a stored `_target_` names something genrun lets a stored config build."""
    if not isinstance(target, str) or not _DOTTED.fullmatch(target):
        return False
    if target in THIRD_PARTY or target in OWN_FUNCTIONS:
        return True
    owner = target.rpartition(".")[0]
    for package, base in OWN_KINDS.items():
        # genrun.nets.gan.DCGANGenerator: exactly one module level below the package
        if owner.startswith(package + ".") and owner.count(".") == package.count(".") + 1:
            if base[0].startswith("lightning") and "lightning" not in sys.modules:
                return _class_in_source(target, owner)
            return _derives_from(target, owner, base)
    if owner in TORCH_KINDS:
        return _derives_from(target, owner, TORCH_KINDS[owner])
    return False


def resolve_trusted(path: object, base: type):
    """The class `path` names if it is genrun's own and derives from `base` (an nn.Module of genrun.nets or
    genrun.families, or a genrun.pipeline.Pipeline defined anywhere in genrun), else None. For classes a
    checkpoint names outside Hydra's `_target_` (a pipeline and its components)."""
    if not isinstance(path, str) or not _DOTTED.fullmatch(path) or not path.startswith("genrun."):
        return None
    owner, _, name = path.rpartition(".")
    packages = ("genrun.nets", "genrun.families") if base.__name__ == "Module" else ("genrun",)
    if not owner.startswith(tuple(p + "." for p in packages)):
        return None
    try:
        found = getattr(importlib.import_module(owner), name)
    except (ImportError, AttributeError):
        return None
    if isinstance(found, type) and issubclass(found, base) and found.__module__ == owner:
        return found
    return None


def untrusted_targets(config: object, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, target) of every `_target_` in a plain config tree that is not on the allow-list.

    Also refuses an interpolation (`${...}`) as a target: a stored config is resolved when written.
    """
    found = []
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_target_" and not is_trusted(value):
                found.append((path, value))
            elif key != "_target_":
                found += untrusted_targets(value, path)
    elif isinstance(config, (list, tuple)):
        for i, value in enumerate(config):
            found += untrusted_targets(value, f"{prefix}[{i}]")
    return found


def check_stored_config(config: object, source: str) -> None:
    """Refuse a stored config that names anything but the allow-list; `source` says where it was read."""
    bad = untrusted_targets(config)
    if bad:
        key, target = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise GenrunError(f"{source}: refused: {key}={target!r} is not one of genrun's buildable classes; "
                          f"a stored config never chooses which code runs{more}")


def build_stored(node: dict, source: str, key: str):
    """`hydra.utils.instantiate` of a config node read from a file, after checking its targets."""
    from hydra.utils import instantiate

    check_stored_config(node, f"{source} ({key})")
    return instantiate(node, _convert_="all")
