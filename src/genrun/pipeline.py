"""Pipelines: a trained model's named components and the code that generates with them, without Lightning.

diffusers' separation is the model: networks only compute, samplers (genrun.sampling) walk noise or tokens,
and a pipeline holds the components and turns knobs into pictures, text and metrics. The LightningModule
builds its pipeline from its live components for the grids it logs while training; `genrun sample` and
`evaluate` rebuild the same pipeline from a checkpoint alone, so generation is written once.

A checkpoint states its pipeline (`genrun.pipeline` below): the pipeline class, and per component its class,
constructor arguments (genrun.nets.base.Net) and the prefix of its weights in the state_dict, or a frozen
reference to another run's checkpoint by path and content digest (a VQ-VAE under its prior, an autoencoder
under latent diffusion). Every class named there is checked by genrun.trust before it is built.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from genrun.errors import GenrunError

FORMAT = 2


@dataclasses.dataclass(frozen=True)
class NoKnobs:
    """A pipeline without sampling knobs of its own."""


class Pipeline:
    """Named components (nn.Modules) and plain settings; subclasses add sampling modes and evaluation.

    Class attributes a subclass sets: `components` (the names it needs), `Knobs` (a frozen dataclass of its
    sampling knobs: typed fields with defaults, an optional `check()`), `modes` (the `mode=` values of
    `genrun sample`, the first is the default); optionally `after_training` and `quality_after_training`.
    """

    components: tuple[str, ...] = ()
    Knobs: type = NoKnobs
    modes: tuple[str, ...] = ("prior",)
    # Knob values for what training ends with (its samples and test figures), where the sampling defaults
    # suit a person better than a run's log: a few short texts, a fast diffusion sampler.
    after_training: Mapping = {}
    # Whether training ends with the sample-quality report (domain FID, KID, precision/recall) when the
    # run asks for it (image_metrics=true): too slow for families whose sampling is long.
    quality_after_training: bool = True

    def __init__(self, components: Mapping[str, nn.Module], settings: Mapping | None = None,
                 data_info: Mapping | None = None):
        missing = [name for name in self.components if name not in components]
        if missing:
            raise GenrunError(f"{type(self).__name__} needs the component(s) {', '.join(missing)}")
        self.parts = dict(components)
        self.settings = dict(settings or {})
        self.data_info = dict(data_info or {})  # what the checkpoint says of its data (a tokenizer, classes)

    def __getattr__(self, name: str):
        parts = self.__dict__.get("parts", {})
        if name in parts:
            return parts[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or component {name!r}")

    def to(self, device) -> Pipeline:
        for part in self.parts.values():
            part.to(device)
        return self

    def eval(self) -> Pipeline:
        for part in self.parts.values():
            part.eval()
        return self


def class_path(obj) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def pipeline_spec(pipeline: Pipeline, owner: nn.Module) -> dict:
    """What a checkpoint stores to rebuild `pipeline`: classes, arguments and weight prefixes in `owner`'s
    state_dict (or the frozen reference a component was loaded from)."""
    where = {id(module): name for name, module in owner.named_modules() if name}
    components = {}
    for name, part in pipeline.parts.items():
        reference = getattr(part, "frozen_reference", None)
        if reference is not None:
            components[name] = {"ref": dict(reference)}
            continue
        if id(part) not in where:
            raise RuntimeError(f"component {name!r} is not a submodule of {type(owner).__name__}")
        if not hasattr(part, "init_config"):
            raise RuntimeError(f"component {name!r} ({class_path(part)}) does not derive from genrun.nets.base.Net")
        components[name] = {"class": class_path(part), "config": part.init_config, "prefix": where[id(part)] + "."}
    return {"format": FORMAT, "class": class_path(pipeline), "components": components,
            "settings": dict(pipeline.settings)}


def declared_pipeline(model: str | None) -> type | None:
    """The pipeline genrun's config of `model` declares (`pipeline: CLASS`: models with no training, such as
    DeepDream), through the allow-list; None for models whose pipeline comes from a checkpoint."""
    from omegaconf import OmegaConf

    from genrun.configs import config_dir

    path = config_dir() / "model" / f"{model}.yaml" if model else None
    if path is None or not path.is_file():
        return None
    declared = OmegaConf.load(path).get("pipeline")
    return _trusted_class(declared, Pipeline, "pipeline", f"model={model}") if declared else None


def _trusted_class(path: object, base: type, what: str, source: str):
    from genrun.trust import resolve_trusted

    found = resolve_trusted(path, base)
    if found is None:
        raise GenrunError(f"{source}: refused: {what} {path!r} is not one of genrun's own {base.__name__} classes; "
                          "a checkpoint never chooses which code runs")
    return found


def build_component(entry: Mapping, state_dict: Mapping, source: str, name: str) -> nn.Module:
    """One component from its stored class, arguments and weights (or its frozen reference)."""
    if "ref" in entry:
        return load_reference(entry["ref"], source, name)
    cls = _trusted_class(entry.get("class"), nn.Module, f"component {name}", source)
    config = entry.get("config") or {}
    if not isinstance(config, dict):
        raise GenrunError(f"{source}: component {name}: its arguments are not a mapping")
    try:
        module = cls(**config)
    except (TypeError, ValueError) as err:
        raise GenrunError(f"{source}: component {name} cannot be rebuilt: {err}") from None
    return load_prefixed(module, state_dict, str(entry.get("prefix", "")), source, name)


def load_prefixed(module: nn.Module, state_dict: Mapping, prefix: str, source: str, name: str) -> nn.Module:
    """Load the state_dict entries under `prefix` into `module`, all of them and nothing else."""
    weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    expected = module.state_dict()
    if not weights and expected:
        raise GenrunError(f"{source}: no weights for component {name} (prefix {prefix!r})")
    try:
        missing, unexpected = module.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # a tensor of another shape: the stored arguments do not fit the weights
        detail = next((line.strip() for line in str(err).splitlines() if "size mismatch" in line), str(err))
        raise GenrunError(f"{source}: component {name} does not match its weights: {detail[:200]}") from None
    if missing or unexpected:
        raise GenrunError(f"{source}: component {name} does not match its weights: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    return module.eval()


def load_reference(reference: Mapping, source: str, name: str) -> nn.Module:
    """A frozen component taken from another run's checkpoint, which must be the file it was trained with."""
    from genrun.checkpoint import load_checkpoint_with_digest

    path = Path(str(reference.get("path", "")))
    payload, digest = load_checkpoint_with_digest(path)
    if reference.get("digest") and digest != reference["digest"]:
        raise GenrunError(f"{source}: component {name} refers to {path}, which has changed since this run used it "
                          f"(digest {str(digest)[:12]} instead of {str(reference['digest'])[:12]})")
    spec = stored_spec(payload, path)
    inner = str(reference.get("component", name))
    if inner not in spec["components"]:
        raise GenrunError(f"{source}: component {name} refers to component {inner!r} of {path}, which has "
                          f"only {', '.join(spec['components'])}")
    module = build_component(spec["components"][inner], payload["state_dict"], str(path), inner)
    module.requires_grad_(False)
    module.__dict__["frozen_reference"] = {"path": str(path), "digest": digest, "component": inner}
    return module


def frozen_reference(path: str | Path, component: str) -> nn.Module:
    """Load `component` of the checkpoint at `path` as a frozen part of a new model (recorded as a reference)."""
    return load_reference({"path": str(path), "component": component}, str(path), component)


def stored_spec(payload: Mapping, path: Path | str) -> dict:
    """The pipeline spec of a checkpoint, converting checkpoints written before pipelines existed."""
    info = payload.get("genrun")
    if not isinstance(info, dict):
        raise GenrunError(f"checkpoint {path}: not written by genrun train (no genrun section)")
    spec = info.get("pipeline")
    if spec is None:
        from genrun.compat import convert_format1

        spec = convert_format1(info, payload.get("state_dict", {}), path)
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else None
        raise GenrunError(f"checkpoint {path}: pipeline format {found!r}; this genrun reads format {FORMAT} "
                          "(and converts format 1)")
    if not isinstance(spec.get("components"), dict):
        raise GenrunError(f"checkpoint {path}: its pipeline lists no components")
    return spec


def load_pipeline(payload: Mapping, path: Path | str) -> Pipeline:
    """The pipeline a checkpoint describes, built from the checkpoint alone (no Lightning, no run config)."""
    spec = stored_spec(payload, path)
    cls = _trusted_class(spec.get("class"), Pipeline, "pipeline", f"checkpoint {path}")
    state_dict = payload.get("state_dict", {})
    parts = {name: build_component(entry, state_dict, f"checkpoint {path}", name)
             for name, entry in spec["components"].items()}
    settings = spec.get("settings") or {}
    if not isinstance(settings, dict):
        raise GenrunError(f"checkpoint {path}: pipeline settings are not a mapping")
    data_info = (payload.get("genrun") or {}).get("data") or {}
    return cls(parts, settings, data_info if isinstance(data_info, dict) else {}).eval()


# --- knobs: each pipeline's own sampling settings, typed and checked -------------------------------------------

def knob_fields(knobs_class: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(knobs_class)}


def _coerce(name: str, annotation, value):
    """`value` as the field's declared type (int, float, str, bool, tuples of them, or None where allowed)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(name, options[0], value) if len(options) == 1 else value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise GenrunError(f"{name}={value!r}: expected a list like [a,b]")
        inner = args[0] if args else object
        return tuple(_coerce(name, inner, item) for item in value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise GenrunError(f"{name}={value!r}: expected true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GenrunError(f"{name}={value!r}: expected an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GenrunError(f"{name}={value!r}: expected a number")
        return float(value)
    if annotation is str:
        return str(value)
    return value


def parse_knobs(knobs_class: type, values: Mapping, model: str, settings: tuple[str, ...] = ()):
    """The knobs dataclass from command-line values; a knob the pipeline does not have is refused by name,
    with the knobs it has and the task's own `settings` (a misspelt setting lands here too)."""
    fields = knob_fields(knobs_class)
    hints = typing.get_type_hints(knobs_class)
    unknown = [name for name in values if name not in fields]
    if unknown:
        have = ", ".join(fields) or "none"
        also = f"; the task's own settings: {', '.join(settings)}" if settings else ""
        raise GenrunError(f"{unknown[0]} does not apply to {model} (its knobs: {have}{also})")
    knobs = knobs_class(**{name: _coerce(name, hints[name], value) for name, value in values.items()})
    check = getattr(knobs, "check", None)
    if check is not None:
        check()
    return knobs


def describe_knobs(knobs_class: type) -> list[str]:
    """One line per knob: name, type, default and its help (the field's `help` metadata)."""
    hints = typing.get_type_hints(knobs_class)
    lines = []
    for name, spec in knob_fields(knobs_class).items():
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        kind = getattr(hints[name], "__name__", str(hints[name]).replace("typing.", ""))
        lines.append(f"  {name}={default!r}  ({kind})  {spec.metadata.get('help', '')}".rstrip())
    return lines


def knob(default, help: str = "", **kwargs):
    """A knob field: its default and the one line `genrun sample --help` shows for it."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: default, metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)
