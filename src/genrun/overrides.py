"""Checks command-line overrides before Hydra runs, so mistakes end in one line naming the culprit.

Hydra reports the same mistakes as multi-line messages (or not at all, for a value of the wrong type);
here each becomes a GenrunError: unknown group choice, unknown key, wrong type, bad resume directory.
"""

from __future__ import annotations

from pathlib import Path

from genrun.configs import config_dir, config_groups
from genrun.errors import GenrunError


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        first = str(err).strip().splitlines()[0]
        raise GenrunError(f"cannot parse override: {first}") from None


def _first_value_override(override) -> str:
    """A sweep `k=a,b` checked as `k=a` (every value is checked by type below); others as written.

    The key element keeps its `+`, `++` or `~` prefix.
    """
    if not override.is_sweep_override():
        return override.input_line
    return f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"


def _values(override) -> list:
    if override.is_sweep_override():
        return list(override.sweep_iterator())
    return [override.value()]


def check_overrides(task: str, overrides: list[str]) -> None:
    """Raise GenrunError for an unknown group choice, unknown key, or value of the wrong type."""
    parsed = _parse(overrides)
    groups = config_groups()
    group_args, value_args = [], []
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra.") or key == "hydra":
            continue
        group = key.split("@")[0]
        if group in groups and override.type.name != "DEL":
            for choice in _values(override):
                if choice is not None and str(choice) not in groups[group]:
                    raise GenrunError(
                        f"unknown {group} {str(choice)!r}; choose one of: {', '.join(groups[group])}"
                    )
            group_args.append(_first_value_override(override))
        else:
            value_args.append((override, _first_value_override(override)))

    from omegaconf import DictConfig, ListConfig

    base = _compose(task, group_args)
    for override, _text in value_args:
        key = override.key_or_group
        if override.type.name in ("ADD", "FORCE_ADD"):
            continue
        parent, _, leaf = key.rpartition(".")
        node = _select(base, parent) if parent else base
        # `leaf in node` is False for ??? values, so ask for the node itself
        if not isinstance(node, DictConfig) or node._get_node(leaf, validate_access=False) is None:
            where = f"'{parent}'" if parent else "the top level"
            known = ", ".join(sorted(str(k) for k in node)) if isinstance(node, DictConfig) else ""
            hint = f"; keys at {where}: {known}" if known else ""
            raise GenrunError(f"unknown key '{key}' (add it with +{key}=... if intended){hint}")
        if override.type.name == "DEL":
            continue
        child = node._get_node(leaf)
        default = child if isinstance(child, (DictConfig, ListConfig)) else child._value()
        for value in _values(override):
            _check_type(key, default, value)
    composed = _compose(task, group_args + [text for _o, text in value_args])
    missing = _missing_keys(composed)
    if missing:
        raise GenrunError(f"{missing[0]} is required: pass {missing[0]}=...")


def _missing_keys(cfg, prefix: str = "") -> list[str]:
    """Keys still set to ??? (without resolving interpolations, which need a running Hydra job)."""
    from omegaconf import DictConfig

    found = []
    for key in cfg:
        node = cfg._get_node(key)
        path = f"{prefix}{key}"
        if isinstance(node, DictConfig):
            found += _missing_keys(node, f"{path}.")
        elif node is not None and node._is_missing():
            found.append(path)
    return found


def _select(cfg, path: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, path, throw_on_missing=False, throw_on_resolution_failure=False)


def _check_type(key: str, default, value) -> None:
    from omegaconf import DictConfig, ListConfig

    if default is None or value is None or (isinstance(default, str) and default.startswith("${")):
        return
    if isinstance(default, str) and default == "???":
        return
    expected = None
    if isinstance(default, bool):
        expected = None if isinstance(value, bool) else "a boolean (true/false)"
    elif isinstance(default, int):
        expected = None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        expected = None if ok else "a number"
    elif isinstance(default, (list, ListConfig)):
        expected = None if isinstance(value, list) else "a list like [a,b]"
    elif isinstance(default, (dict, DictConfig)):
        expected = None if isinstance(value, dict) else "a mapping like {a:1}"
    if expected:
        raise GenrunError(f"{key}={value!r}: expected {expected} (default is {default!r})")


def _compose(task: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from genrun import resolvers

    resolvers.register()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=task):
            return compose(config_name=task, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        message = " ".join(str(err).split())
        raise GenrunError(message) from None


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# What a resume may not change: the run it continues would no longer be the run its files describe.
FIXED_ON_RESUME = ("model", "dataset", "tokenizer", "seed")


def resume_overrides(overrides: list[str], multirun: bool) -> tuple[list[str], Path | None]:
    """Turn `resume=RUN_DIR` into the run's original overrides, placed back into RUN_DIR.

    Later overrides that extend or steer the training (trainer.max_epochs=20, callbacks, loggers) apply on
    top; one that would change the model, the data or the seed is refused, since the restored weights and
    optimiser state would keep doing what the checkpoint says while the config said otherwise. The stored
    overrides are data: any that names code (a `_target_` off genrun's allow-list) or a Hydra setting is
    refused. Returns the overrides and the run directory (None without resume=).
    """
    resume = [o for o in overrides if o.split("=", 1)[0] == "resume"]
    if not resume:
        return overrides, None
    value = resume[-1].split("=", 1)[1].strip("'\"")
    if value in ("", "null"):
        return [o for o in overrides if o not in resume], None
    if multirun:
        raise GenrunError("resume= continues one run; it cannot be combined with -m")
    run_dir = Path(value).expanduser().resolve()
    if not run_dir.is_dir():
        raise GenrunError(f"resume={value}: no such run directory")
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise GenrunError(f"resume={value}: no checkpoint at {last}; nothing to resume (train afresh instead)")
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise GenrunError(f"resume={value}: {saved} is missing, so the run's config cannot be rebuilt")
    original = _stored_overrides(saved)
    rest = [o for o in overrides if o not in resume]
    _refuse_changes(original, rest, value)
    return [*original, *rest, f"resume={_quote(str(run_dir))}", f"hydra.run.dir={_quote(str(run_dir))}"], run_dir


def _stored_overrides(saved: Path) -> list[str]:
    """The run's own overrides, checked as data: plain strings, no Hydra settings, only trusted targets."""
    from omegaconf import OmegaConf

    from genrun.trust import check_stored_config

    try:
        stored = OmegaConf.to_container(OmegaConf.load(saved))
    except Exception as err:  # a YAML or OmegaConf error: the file is damaged
        raise GenrunError(f"{saved}: unreadable ({' '.join(str(err).split())[:200]})") from None
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise GenrunError(f"{saved}: not a list of overrides")
    original = [o for o in stored if o.split("=", 1)[0].lstrip("+") not in ("resume", "hydra.run.dir")]
    for override in original:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise GenrunError(f"{saved}: refused: {override!r} sets Hydra itself; a stored override may set "
                              "only the run's own config")
    check_stored_config(OmegaConf.to_container(_compose("train", original), resolve=False), str(saved))
    return original


def _refuse_changes(original: list[str], rest: list[str], value: str) -> None:
    """One line naming the first model/data/seed setting that `rest` would change."""
    from omegaconf import OmegaConf

    if not rest:
        return
    before = OmegaConf.to_container(_compose("train", original), resolve=False)
    after = OmegaConf.to_container(_compose("train", [*original, *rest]), resolve=False)
    for section in FIXED_ON_RESUME:
        changed = _first_difference(before.get(section), after.get(section), section)
        if changed:
            key, old, new = changed
            raise GenrunError(f"resume={value}: {key}={new!r} differs from the run's {old!r}; a resume continues "
                              f"the same model, data and seed (change only trainer, callbacks or logger "
                              f"settings), or start a new run with {key}={new!r}")


def _first_difference(old, new, path: str):
    """(dotted key, old value, new value) of the first place two config trees differ, else None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}")
            if found:
                return found
        return None
    return None if old == new else (path, old, new)
