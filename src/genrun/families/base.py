"""What every family's sampling and evaluation receive: plain values, read from the config at the edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from genrun.budget import check_max_minutes
from genrun.errors import GenrunError


@dataclass(frozen=True)
class SampleRequest:
    """What every `genrun sample` asks, whatever the model; the pipeline's own knobs ride along in `knobs`
    and read as attributes of the request (`request.steps`), so family code reads one object."""

    mode: str = "prior"
    num_samples: int = 64
    temperature: float = 1.0
    seed: int = 0
    # Refuse up front a draw estimated to take longer than this (None: no limit).
    max_minutes: float | None = None
    knobs: object = None

    def __post_init__(self):
        object.__setattr__(self, "max_minutes", check_max_minutes(self.max_minutes))

    def __getattr__(self, name: str):
        knobs = self.__dict__.get("knobs")
        if knobs is not None and not name.startswith("_") and hasattr(knobs, name):
            return getattr(knobs, name)
        raise AttributeError(f"SampleRequest has no {name!r} (and its knobs have none)")

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.seed))

    @classmethod
    def of(cls, knobs_class: type, **values) -> SampleRequest:
        """A request whose knob values come among the settings (for code that builds one directly)."""
        generic = {f.name for f in fields(cls)} - {"knobs"}
        knobs = knobs_class(**{k: v for k, v in values.items() if k not in generic})
        if hasattr(knobs, "check"):
            knobs.check()
        return cls(**{k: v for k, v in values.items() if k in generic}, knobs=knobs)


@dataclass
class SampleContext:
    """Where to write, which device to use, and the training data on demand (loaded only if asked).

    A family appends to `notes` what the reader of the output must know that the file names do not say
    (a picture showing fewer samples than were drawn); `genrun sample` prints them and records them. It puts
    in `results` the figures it measured (an objective's curve, a wall time): metrics.json records them.
    """

    out_dir: Path
    device: torch.device
    data_info: dict
    load_split: Callable[[str], tuple[torch.Tensor, torch.Tensor]]
    notes: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)


@dataclass
class EvalContext:
    out_dir: Path
    device: torch.device
    data_info: dict
    load_split: Callable[[str], tuple[torch.Tensor, torch.Tensor]]
    settings: dict = field(default_factory=dict)


def check_mode(request: SampleRequest, modes: tuple[str, ...], family: str) -> None:
    if request.mode not in modes:
        raise GenrunError(f"mode={request.mode}: {family} models support {', '.join(modes)}")


def knobs_from_settings(knobs_class: type, settings: dict):
    """A pipeline's knobs from an evaluation's settings (where the task put them), defaults for the rest."""
    names = {f.name for f in fields(knobs_class)}
    return knobs_class(**{key: value for key, value in settings.items() if key in names})


def check_nrow(nrow: int | None) -> None:
    """The images-per-row knob of every picture."""
    if nrow is not None and nrow < 1:
        raise GenrunError(f"nrow={nrow}: must be at least 1 (or null for the default layout)")


def check_path(steps: int, interpolation: str) -> None:
    """The knobs of an interpolation between two latents: its length and its kind."""
    from genrun.sampling.latents import INTERPOLATIONS

    if steps < 2:
        raise GenrunError(f"steps={steps}: an interpolation needs at least 2 steps (its two ends)")
    if interpolation not in INTERPOLATIONS:
        raise GenrunError(f"interpolation={interpolation}: choose {' or '.join(INTERPOLATIONS)}")


def labels_for(label: int | None, classes: int, n: int) -> torch.Tensor | None:
    """`n` copies of the class `label` asked for at sampling (None: no label asked), checked against the
    model's number of classes (0: not class-conditional)."""
    if label is None:
        return None
    if not classes:
        raise GenrunError(f"label={label}: this model is not class-conditional (train with model.num_classes)")
    if not 0 <= label < classes:
        raise GenrunError(f"label={label}: this model has classes 0..{classes - 1}")
    return torch.full((n,), label, dtype=torch.long)
