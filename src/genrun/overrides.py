"""Checks command-line overrides before Hydra runs, so mistakes end in one line naming the culprit.

Hydra is the judge: each job's overrides are composed as the run will compose them (genrun's configs and
any --config-dir, Hydra's plugins, the basic sweeper's expansion of sweeps), and what Hydra or OmegaConf
raises becomes one GenrunError line naming the key (unknown key with the keys beside it, unknown group
choice with the choices, a launcher or sweeper whose plugin is missing with the package to install).
Composition takes any value for an existing key, so two checks are added, each decided by an existing
source rather than a rule kept here: a value whose type the key's default rules out (OmegaConf's typed
node for that default decides), and `trainer.X`, judged by lightning.pytorch.Trainer's own signature (an
argument the trainer config does not list is added for the run as `++trainer.X=...`; a misspelt one is
refused with the closest name). Lightning is imported only when a trainer key needs it.
"""

from __future__ import annotations

import difflib
import functools
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

from genrun.configs import config_dir as packaged_config_dir
from genrun.errors import GenrunError

# Hydra plugins genrun knows by name: the package providing each launcher or sweeper choice, for a hint.
PLUGINS = {
    "hydra/launcher": {"joblib": "hydra-joblib-launcher", "submitit_local": "hydra-submitit-launcher",
                       "submitit_slurm": "hydra-submitit-launcher", "rq": "hydra-rq-launcher",
                       "ray": "hydra-ray-launcher", "ray_aws": "hydra-ray-launcher"},
    "hydra/sweeper": {"ax": "hydra-ax-sweeper",
                      "nevergrad": "hydra-nevergrad-sweeper"},
}
# pyproject.toml extras that install a plugin (tested with genrun).
EXTRAS = {"hydra-joblib-launcher": "joblib", "hydra-submitit-launcher": "cluster"}
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"
SEARCH_SWEEPER = "hydra_plugins.genrun_search.optuna_sweeper.OptunaSweeper"  # genrun.search: hydra/sweeper=optuna
TRAINERS = ("lightning.pytorch.Trainer", "lightning.Trainer")
# Trainer arguments genrun/tasks/train.py passes itself: a trainer.X for these would be silently replaced.
SET_BY_GENRUN = {"callbacks": "the callbacks group (callbacks.NAME=...)", "logger": "logger=tensorboard|csv",
                 "plugins": "nothing: genrun sets the checkpoint I/O", "default_root_dir": "hydra.run.dir=..."}


@contextmanager
def _quiet():
    """Hydra warns about deprecated syntax while composing; the run itself warns once, the check stays silent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _loader(config_dir: str | None = None):
    """Hydra's config loader with the search path `genrun TASK` runs with: Hydra's own configs, genrun's,
    then a --config-dir (Hydra adds it after the primary directory), then the plugins' configs."""
    from hydra import version
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    from genrun import resolvers

    resolvers.register()
    version.setbase("1.3")  # as genrun's hydra.main: Hydra's rules (and errors) depend on it
    search_path = create_config_search_path(f"file://{packaged_config_dir()}")
    if config_dir:
        search_path.prepend(provider="command-line", path=f"file://{Path(config_dir).resolve()}",
                            anchor=SearchPathQuery(provider="schema"))
    return ConfigLoaderImpl(config_search_path=search_path)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0].strip() if lines else type(err).__name__


def _parse(overrides: list[str], loader=None) -> list:
    """Hydra's parse of each override; one that does not parse is named."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create(config_loader=loader)
    parsed = []
    for override in overrides:
        try:
            parsed += parser.parse_overrides([override])
        except OverrideParseException as err:  # its first line may only repeat the override: take the reason
            reasons = [line for line in str(err).splitlines()
                       if line.strip() and not line.startswith(("Error parsing override", "See https://"))]
            reason = reasons[0].strip() if reasons else _first_line(err)
            raise GenrunError(f"cannot parse override {override!r}: {reason}") from None
    return parsed


def _open(overrides: list[str], opened: set[str]) -> list[str]:
    """`overrides` with each plain `trainer.X=v` whose key is in `opened` written `++trainer.X=v`."""
    if not opened:
        return list(overrides)
    result = []
    for line, override in zip(overrides, _parse(overrides), strict=True):
        plain = override.type.name == "CHANGE" and override.package is None
        result.append(f"++{line}" if plain and override.key_or_group in opened else line)
    return result


def _load(loader, name: str, overrides: list[str], run_mode, opened: set[str]):
    """(config, overrides as run) of Hydra's composition; a refused override becomes a GenrunError.

    A `trainer.X` Hydra refuses only because the trainer config does not list X is added to `opened`
    and composed again as `++trainer.X` when Lightning's Trainer takes X.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    for _attempt in range(len(overrides) + 1):
        lines = _open(overrides, opened)
        try:
            with _quiet():
                return loader.load_configuration(config_name=name, overrides=lines, run_mode=run_mode), lines
        except (HydraException, OmegaConfBaseException) as err:
            key = _trainer_argument(err, lines)
            if key is None or key in opened:
                raise GenrunError(_explain(err, lines)) from None
            opened.add(key)
        except ValueError:  # Hydra's own check of a group choice: `model=null`
            culprit = next((line for line in lines if line.split("=", 1)[-1] in ("null", "")), None)
            if culprit is None:
                raise
            raise GenrunError(f"{culprit}: a config group needs one of its choices (genrun --help lists "
                              "them)") from None
    raise AssertionError("unreachable: each attempt opens one more key")


def _rejected_key(err):
    """(dotted key, parent node) of a `key=value` Hydra refused because the config has no such key."""
    from omegaconf import DictConfig
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = err.__cause__
    if not str(err).startswith("Could not override") or not isinstance(cause, (ConfigAttributeError,
                                                                              ConfigKeyError)):
        return None
    parent = cause.parent_node if isinstance(cause.parent_node, DictConfig) else None
    return str(cause.full_key or _first_quoted(str(err))), parent


def _first_quoted(text: str) -> str:
    found = re.search(r"'([^']+)'", text)
    return found.group(1) if found else ""


def _line_for(key: str, lines: list[str]) -> str | None:
    """The override (as written) that sets `key` itself, else None."""
    for line, override in zip(lines, _parse(lines), strict=True):
        if override.key_or_group == key:
            return line
    return None


def _is_trainer(node) -> bool:
    from omegaconf import DictConfig

    return isinstance(node, DictConfig) and node.get("_target_") in TRAINERS


@functools.lru_cache(maxsize=1)
def trainer_arguments() -> dict[str, object]:
    """lightning.pytorch.Trainer's arguments and their annotations: the only list of what trainer.X may be.

    Imports Lightning, so it is asked only when a trainer key needs it (a run imports it anyway).
    """
    import inspect
    import typing

    from lightning.pytorch import Trainer

    names = [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]
    try:
        hints = typing.get_type_hints(Trainer.__init__)
    except Exception:  # an annotation this Python cannot evaluate: leave every value to Lightning
        hints = {}
    return {name: hints.get(name, typing.Any) for name in names}


def _trainer_argument(err, lines: list[str]) -> str | None:
    """The dotted key to add as `++trainer.X` when Hydra refused a Trainer argument the config omits.

    None when the refusal is not about a Trainer's argument; a GenrunError for a name Lightning's Trainer
    does not take (with the closest one) or one genrun passes itself.
    """
    rejected = _rejected_key(err)
    line = _line_for(rejected[0], lines) if rejected and _is_trainer(rejected[1]) else None
    if line is None:  # not about a trainer's own argument (trainer.X.Y with no X is an unknown key)
        return None
    key = rejected[0]
    name = key.rpartition(".")[2]
    if name in SET_BY_GENRUN:
        raise GenrunError(f"{line}: genrun passes {name} to lightning.pytorch.Trainer itself; set it with "
                          f"{SET_BY_GENRUN[name]}")
    arguments = trainer_arguments()
    if name not in arguments:
        close = difflib.get_close_matches(name, arguments, n=1)
        hint = f"did you mean {close[0]}?" if close else f"its arguments: {', '.join(sorted(arguments))}"
        raise GenrunError(f"{line}: not a lightning.pytorch.Trainer argument; {hint}")
    return key


def _explain(err, lines: list[str]) -> str:
    """One line for what Hydra refused, naming the override."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options is not None:
        return _unknown_choice(err)
    rejected = _rejected_key(err)
    if rejected is not None:
        return _unknown_key(*rejected)
    message = str(err)
    twice = re.match(r"Multiple values for (\S+?)\.", message)
    added = [line for line in lines if twice and line.startswith(f"+{twice.group(1)}=")]
    if added:
        return f"{added[0]}: {twice.group(1)} has a value already; choose another with {added[0][1:]} (no +)"
    for line, override in zip(lines, _parse(lines), strict=True):
        if override.is_sweep_override() and line in message:
            return _sweep_needs_multirun(line, override)
    return _squash(err)


def _unknown_choice(err) -> str:
    """`model=vea`: the group's choices, as Hydra listed them (a --config-dir's included)."""
    missing = err.missing_cfg_file or ""
    found = re.search(r"Available options in '([^']+)'", str(err))
    group = found.group(1) if found else missing.rpartition("/")[0]
    choice = missing[len(group) + 1 :] if missing.startswith(f"{group}/") else missing
    package = PLUGINS.get(group, {}).get(choice)
    if package:
        extra = f" (or the genrun[{EXTRAS[package]}] extra)" if package in EXTRAS else ""
        return f"{group}={choice}: not installed; pip install {package}{extra}"
    return f"unknown {group} {choice!r}; choose one of: {', '.join(err.options)}"


def _unknown_key(key: str, parent) -> str:
    parent_path = key.rpartition(".")[0]
    where = f"'{parent_path}'" if parent_path else "the top level"
    known = ", ".join(sorted(str(k) for k in parent if parent_path or k != "hydra")) if parent is not None else ""
    hint = f"; keys at {where}: {known}" if known else ""
    return f"unknown key '{key}' (add it with +{key}=... if intended){hint}"


def _sweep_needs_multirun(line: str, override) -> str:
    if not override.is_discrete_sweep():
        return (f"{line} is a range a sweeper samples from: add -m and a sweeper that samples, e.g. "
                "hydra/sweeper=optuna (pip install 'genrun[search]')")
    as_list = " (a list is written [a,b]; quote a string that holds commas)" \
        if override.value_type.name == "SIMPLE_CHOICE_SWEEP" else ""
    return f"{line} is a sweep: add -m to run one job per value{as_list}"


def _squash(err) -> str:
    """Hydra's own message on one line, without the search path it appends."""
    text = re.split(r"\n(?:Config search path|Search path):", str(err))[0]
    cause = err.__cause__
    if cause is not None and str(cause).strip() and _first_line(cause) not in text:
        text = f"{text.strip()}: {_first_line(cause)}" if text.strip() else _first_line(cause)
    return " ".join(text.split()) or type(err).__name__


def check_overrides(task: str, overrides: list[str], *, multirun: bool = False, config_dir: str | None = None,
                    config_name: str | None = None) -> list[str]:
    """Raise GenrunError for what Hydra, a key's default type or Lightning's Trainer would refuse.

    Returns the overrides to run with: the same, except `trainer.X=v` written `++trainer.X=v` where the
    trainer config omits X and Lightning's Trainer takes it.
    """
    from hydra.types import RunMode

    loader = _loader(config_dir)
    name = config_name or task
    parsed = _parse(overrides, loader)
    opened: set[str] = set()
    defaults: dict[tuple[str, ...], object] = {}  # the jobs of a sweep often share their group choices
    if not multirun and any(o.is_sweep_override() for o in parsed):
        multirun = _sets_multirun(loader, name, overrides, parsed, opened)
    checked = None  # overrides already checked as one job
    if not multirun:
        cfg = _check_job(loader, name, overrides, opened, defaults)
        if cfg.hydra.get("mode") != RunMode.MULTIRUN:  # an hparams_search recipe asks for a sweep itself
            return _open(overrides, opened)
        checked = list(overrides)
    master, _lines = _load(loader, name, overrides, RunMode.MULTIRUN, opened)
    _check_launcher(master)
    if master.hydra.sweeper.get("_target_") == BASIC_SWEEPER:
        jobs = _sweep_jobs(loader, master, overrides)
    elif master.hydra.sweeper.get("_target_") == SEARCH_SWEEPER:
        from genrun.search.check import search_jobs

        fixed, sampled = search_jobs(master, overrides, loader)
        if fixed != checked:
            _check_job(loader, name, fixed, opened, defaults)
        try:  # the keys exist (one compose); a further choice of a value is checked against its key's default
            _check_job(loader, name, [*fixed, *sampled[0]], opened, defaults)
            for values in sampled[1:]:
                check = _check_values if all("." in v.split("=", 1)[0] for v in values) else _check_job
                check(loader, name, [*fixed, *values], opened, defaults)
        except GenrunError as err:
            raise GenrunError(f"search space: {err}") from None
        return _open(overrides, opened)
    else:  # the sweeper chooses the values: check what is fixed
        jobs = [[line for line, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]]
    for job in jobs:
        _check_job(loader, name, job, opened, defaults)
    return _open(overrides, opened)


def _check_launcher(master) -> None:
    """The launcher's plugin must be importable: genrun's own launcher configs (configs/hydra/launcher/)
    compose without it, and Hydra would fail only as it launches, with a traceback."""
    import importlib.util

    target = str(master.hydra.launcher.get("_target_") or "")
    module = target.rpartition(".")[0]
    try:
        found = not module or importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing too
        found = False
    if found:
        return
    choice = master.hydra.runtime.choices.get("hydra/launcher") or module
    package = PLUGINS["hydra/launcher"].get(choice)
    if package is None:
        raise GenrunError(f"hydra/launcher={choice}: {target} cannot be imported; install the plugin providing it")
    extra = f" (or the genrun[{EXTRAS[package]}] extra)" if package in EXTRAS else ""
    raise GenrunError(f"hydra/launcher={choice}: not installed; pip install {package}{extra}")


def _sets_multirun(loader, name: str, overrides: list[str], parsed: list, opened: set[str]) -> bool:
    """Whether the config itself asks for a sweep (`hydra.mode: MULTIRUN`, as an hparams_search recipe does)."""
    from hydra.types import RunMode

    fixed = [line for line, o in zip(overrides, parsed, strict=True) if not o.is_sweep_override()]
    cfg, _lines = _load(loader, name, fixed, RunMode.RUN, opened)
    return cfg.hydra.get("mode") == RunMode.MULTIRUN


def _sweep_jobs(loader, master, overrides: list[str]) -> list[list[str]]:
    """The jobs checked for a sweep: each sweep's first value together, then every other value of one sweep
    at a time (a compose per value, not per job of the product). Hydra's basic sweeper expands the values
    (lists, choice, range, glob, with sort, shuffle, tag); one it cannot enumerate is refused as it would."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.errors import HydraException

    params = [f"{key}={value}" for key, value in (master.hydra.sweeper.get("params") or {}).items()]
    choices: dict[str, list[str]] = {}  # keyed like the sweeper: a later override of a key replaces an earlier
    for override in _parse([*params, *overrides], loader):
        try:
            (batch,) = BasicSweeper.split_arguments([override], None)
        except HydraException as err:
            raise GenrunError(f"{override.input_line}: {_first_line(err)}; Hydra's basic sweeper enumerates "
                              "a,b, choice(), range() and glob(); to sample, choose a sweeper such as "
                              "hydra/sweeper=optuna (pip install 'genrun[search]')") from None
        if not batch:
            raise GenrunError(f"{override.input_line}: sweeps over no value")
        choices[override.get_key_element()] = [job[0] for job in batch]
    values = list(choices.values())
    base = [options[0] for options in values]
    jobs = [base]
    for i, options in enumerate(values):
        jobs += [[*base[:i], option, *base[i + 1 :]] for option in options[1:]]
    return jobs


def _check_job(loader, name: str, job: list[str], opened: set[str], defaults: dict):
    """One job: Hydra composes it, its values fit their keys, nothing required is left at ???. Returns its config."""
    from hydra.types import RunMode

    cfg, lines = _load(loader, name, job, RunMode.RUN, opened)
    _check_values(loader, name, lines, opened, defaults)
    missing = _missing_keys(cfg)
    if missing:
        raise GenrunError(f"{missing[0]} is required: pass {missing[0]}=...")
    return cfg


def _check_values(loader, name: str, lines: list[str], opened: set[str], defaults: dict) -> None:
    """Each `key=value` against the key's default as composed before values apply (Hydra applies value
    overrides after the defaults list, so a compose of the group overrides alone holds those defaults;
    `defaults` keeps those composes by group overrides)."""
    from hydra.types import RunMode

    with _quiet():
        values = loader.compute_defaults_list(name, lines, RunMode.RUN).config_overrides
    checked = [o for o in values if not o.is_hydra_override()
               and (o.type.name == "CHANGE" or o.key_or_group in opened)]
    if not checked:
        return
    value_lines = {o.input_line for o in values}
    groups = tuple(line for line in lines if line not in value_lines)
    if groups not in defaults:
        defaults[groups] = _load(loader, name, list(groups), RunMode.RUN, set())[0]
    for override in checked:
        _check_value(defaults[groups], override, opened)


def _check_value(defaults, override, opened: set[str]) -> None:
    from omegaconf import DictConfig, ListConfig

    key, value = override.key_or_group, override.value()
    parent_path, _, leaf = key.rpartition(".")
    if key in opened:
        annotation = trainer_arguments()[leaf]
        if not _admits(annotation, value):
            raise GenrunError(f"{key}={value!r}: expected {_describe(annotation)} "
                              f"(lightning.pytorch.Trainer's {leaf})")
        return
    parent = _select(defaults, parent_path) if parent_path else defaults
    node = parent._get_node(leaf, validate_access=False) if isinstance(parent, DictConfig) else None
    if node is None:
        return
    default = node if isinstance(node, (DictConfig, ListConfig)) else node._value()
    expected = _type_mistake(default, value)
    if expected and _is_trainer(parent) and _admits(trainer_arguments().get(leaf), value):
        expected = None  # e.g. trainer.devices=auto: Lightning takes more than the default's type
    if expected:
        raise GenrunError(f"{key}={value!r}: expected {expected} (default is {default!r})")


def _type_mistake(default, value) -> str | None:
    """What `value` should have been, if the default's type rules it out; None if it fits.

    OmegaConf decides, through the typed node it would use for such a default (3 fits a float; 1.5 does
    not fit an integer). A string where the default is a number or boolean is refused although OmegaConf
    would convert '3' or 'yes' inside a typed config: genrun's YAML configs are untyped, so the string
    would reach the code unconverted ('no' is true in Python).
    """
    from omegaconf import BooleanNode, DictConfig, FloatNode, IntegerNode, ListConfig
    from omegaconf.errors import ValidationError

    if default is None or value is None or (isinstance(value, str) and "${" in value):
        return None
    if isinstance(default, str):
        return None  # a string (or an interpolation, or ???) takes anything
    if isinstance(default, ListConfig):
        return None if isinstance(value, list) else "a list like [a,b]"
    if isinstance(default, DictConfig):
        return None if isinstance(value, dict) else "a mapping like {a:1}"
    node, expected = {bool: (BooleanNode, "a boolean (true/false)"), int: (IntegerNode, "an integer"),
                      float: (FloatNode, "a number")}.get(type(default), (None, None))
    if node is None:
        return None
    if isinstance(value, str):
        return expected
    try:
        node(value=value)
    except ValidationError:
        return expected
    return None


def _admits(annotation, value) -> bool:
    """Whether a command-line value fits a Trainer annotation; a class other than a builtin takes a node
    Hydra can build ({_target_: ...}). An annotation this cannot read admits everything (Lightning judges)."""
    import types
    import typing

    if annotation is None or annotation is typing.Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_admits(arg, value) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(value == arg and type(value) is type(arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    kind = origin or annotation
    if not isinstance(kind, type):
        return True
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    if kind in (int, str, list, dict):
        return isinstance(value, kind)
    if kind.__module__ == "collections.abc":
        return isinstance(value, (list, dict))
    return isinstance(value, dict) or (isinstance(value, str) and kind.__module__ == "pathlib")


def _describe(annotation) -> str:
    """`typing.Optional[int]` as `Optional[int]`: the annotation without module paths."""
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", getattr(annotation, "__name__", None)
                  if isinstance(annotation, type) else str(annotation))


def _missing_keys(cfg, prefix: str = "") -> list[str]:
    """Keys still set to ??? (without resolving interpolations, which need a running Hydra job)."""
    from omegaconf import DictConfig

    found = []
    for key in cfg:
        if not prefix and key == "hydra":
            continue  # Hydra fills its own ??? keys when the job starts
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


def compose_task(task: str, overrides: list[str], config_dir: str | None = None):
    """The task's config as a run composes it, without Hydra's own node (what the task's code reads)."""
    from hydra.types import RunMode
    from omegaconf import flag_override

    cfg, _lines = _load(_loader(config_dir), task, overrides, RunMode.RUN, set())
    with flag_override(cfg, ["struct", "readonly"], [False, False]):
        del cfg["hydra"]
    return cfg


def task_keys(task: str) -> set[str]:
    """The top-level keys a task's own config defines, with the config groups and Hydra's node."""
    from omegaconf import OmegaConf

    from genrun.configs import config_groups

    own = OmegaConf.load(packaged_config_dir() / f"{task}.yaml")
    return set(own.keys()) | set(config_groups()) | {"hydra", "defaults"}


def knob_overrides(task: str, overrides: list[str]) -> list[str]:
    """`steps=10`, `truncation=0.7`, `arithmetic.a=[0,1]` for sample/evaluate: a plain key the task's config
    does not define is one of the model's own knobs, added as `+key=value` for Hydra; the task checks it
    against the model's pipeline (genrun.pipeline.parse_knobs), which refuses a knob it does not have.
    `dataset.KEY=VALUE` becomes `+dataset_keys.KEY=VALUE`: the checkpoint's dataset settings (loading.py)."""
    known = task_keys(task)
    rewritten = []
    for text, override in zip(overrides, _parse(overrides), strict=True):
        key = override.key_or_group
        top = key.split(".")[0].split("@")[0].split("/")[0]
        plain = override.type.name == "CHANGE" and override.package is None
        if plain and key.startswith("dataset.") and text.startswith("dataset."):
            rewritten.append(f"+dataset_keys.{text[len('dataset.'):]}")  # the checkpoint's dataset settings
        else:
            rewritten.append(f"+{text}" if plain and top not in known else text)
    return rewritten


def model_knob_overrides(overrides: list[str]) -> list[str]:
    """`genrun train model=fast_style style=FILE`: a plain top-level key that the train config does not define
    but the chosen model's config does (its knobs sit at the top of configs/model/NAME.yaml) means that knob,
    `model.style=FILE`. Any other unknown key is left for the override check to refuse."""
    from omegaconf import OmegaConf

    known = task_keys("train")
    parsed = _parse(overrides)
    model = next((o.value() for o in parsed if o.key_or_group == "model" and o.type.name == "CHANGE"
                  and isinstance(o.value(), str)), None)
    path = packaged_config_dir() / "model" / f"{model}.yaml"
    if model is None or not path.is_file():
        return overrides
    knobs = {key for key in OmegaConf.load(path) if key not in ("defaults", "module")}
    rewritten = []
    for text, override in zip(overrides, parsed, strict=True):
        key = override.key_or_group
        plain = override.type.name == "CHANGE" and override.package is None and "." not in key and "/" not in key
        rewritten.append(f"model.{text}" if plain and key not in known and key in knobs else text)
    return rewritten
