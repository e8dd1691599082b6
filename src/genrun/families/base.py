"""What every family's sampling and evaluation receive: plain values, read from the config at the edge."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from genrun.budget import check_max_minutes
from genrun.errors import GenrunError


@dataclass(frozen=True)
class SampleRequest:
    mode: str = "prior"
    num_samples: int = 64
    temperature: float = 1.0
    seed: int = 0
    steps: int = 10
    interpolation: str = "slerp"
    between: str = "latents"
    truncation: float | None = None
    label: int | None = None
    prompt: str | None = None
    max_new_tokens: int = 500
    top_k: int | None = None
    top_p: float | None = None
    temperatures: tuple[float, ...] = (0.2, 0.5, 1.0, 1.2)
    nrow: int | None = None
    # GAN latent arithmetic: indices (into mode=prior's samples) of groups a, b, c for mean(a) - mean(b) + mean(c).
    arithmetic: tuple[tuple[int, ...], ...] = ((0, 1, 2), (3, 4, 5), (6, 7, 8))
    # Refuse up front a draw estimated to take longer than this (None: no limit).
    max_minutes: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "max_minutes", check_max_minutes(self.max_minutes))

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(int(self.seed))


@dataclass
class SampleContext:
    """Where to write, which device to use, and the training data on demand (loaded only if asked).

    A family appends to `notes` what the reader of the output must know that the file names do not say
    (a picture showing fewer samples than were drawn); `genrun sample` prints them and records them.
    """

    out_dir: Path
    device: torch.device
    data_info: dict
    load_split: Callable[[str], tuple[torch.Tensor, torch.Tensor]]
    notes: list[str] = field(default_factory=list)


@dataclass
class EvalContext:
    out_dir: Path
    device: torch.device
    data_info: dict
    load_split: Callable[[str], tuple[torch.Tensor, torch.Tensor]]
    settings: dict = field(default_factory=dict)


def instantiate_net(net_config: dict, source: str = "checkpoint") -> nn.Module:
    """The net a stored config describes; only genrun's own classes may be named (genrun.trust)."""
    from genrun.trust import build_stored

    return build_stored(net_config, source, "net")


def load_weights(net: nn.Module, state_dict: dict, prefix: str) -> nn.Module:
    """Load the entries of a LightningModule's state_dict that start with `prefix` into `net`."""
    weights = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not weights:
        raise GenrunError(f"checkpoint holds no weights under '{prefix}'")
    missing, unexpected = net.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise GenrunError(f"checkpoint does not match the network: missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}")
    return net.eval()


def check_mode(request: SampleRequest, modes: tuple[str, ...], family: str) -> None:
    if request.mode not in modes:
        raise GenrunError(f"mode={request.mode}: {family} models support {', '.join(modes)}")
