"""Generated 2-D toy data (ring of 8 Gaussians, 5×5 grid, two moons, swiss roll), seeded and exact.

The mixtures follow VEEGAN (Srivastava et al. 2017): ring8 has 8 modes of std 0.02 on a circle of
radius 2; grid25 has 25 modes of std 0.05 on {-4, -2, 0, 2, 4}². Because the generating process is
known, sample quality can be measured exactly (see `toy_metrics`): no feature network needed.
"""

from __future__ import annotations

import math

import torch

from genrun.data.base import InMemoryDataModule
from genrun.errors import GenrunError

KINDS = ("ring8", "grid25", "moons", "swissroll")
MODE_STD = {"ring8": 0.02, "grid25": 0.05}
CURVE_NOISE = {"moons": 0.05, "swissroll": 0.1}


def mode_centres(kind: str) -> torch.Tensor | None:
    """K×2 mixture means, or None for the continuous kinds."""
    if kind == "ring8":
        angles = torch.arange(8) * (2 * math.pi / 8)
        return 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    if kind == "grid25":
        axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
        return torch.cartesian_prod(axis, axis)
    return None


def curve(kind: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Noiseless points of a continuous kind at parameters t ∈ [0, 1), and their labels."""
    if kind == "moons":
        upper = t < 0.5
        s = torch.where(upper, t * 2, t * 2 - 1) * math.pi
        x = torch.where(upper, s.cos(), 1 - s.cos())
        y = torch.where(upper, s.sin(), 0.5 - s.sin())
        return torch.stack([x - 0.5, y - 0.25], 1), (~upper).long()
    if kind == "swissroll":
        s = 1.5 * math.pi * (1 + 2 * t)
        return torch.stack([s * s.cos(), s * s.sin()], 1) / 5.0, torch.zeros(len(t), dtype=torch.long)
    raise ValueError(kind)


def reference_curve(kind: str, n: int = 4000) -> torch.Tensor:
    return curve(kind, torch.arange(n) / n)[0]


def generate(kind: str, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n points and labels (the mode's index for mixtures, the moon for moons, 0 for the swiss roll)."""
    g = torch.Generator().manual_seed(int(seed))
    centres = mode_centres(kind)
    if centres is not None:
        labels = torch.randint(len(centres), (n,), generator=g)
        return centres[labels] + MODE_STD[kind] * torch.randn(n, 2, generator=g), labels
    points, labels = curve(kind, torch.rand(n, generator=g))
    return points + CURVE_NOISE[kind] * torch.randn(n, 2, generator=g), labels


class Toy2DDataModule(InMemoryDataModule):
    """Points of shape (2,); `channels`/`image_size` stay null so image-only models refuse it clearly."""

    def __init__(self, kind: str = "ring8", n_train: int = 20000, n_val: int = 2000, n_test: int = 2500,
                 seed: int = 0, batch_size: int = 256, shape: list[int] = (2,), channels: int | None = None,
                 image_size: int | None = None, num_classes: int | None = None):
        super().__init__(batch_size=batch_size, shuffle_seed=seed)
        if kind not in KINDS:
            raise GenrunError(f"dataset.kind={kind!r}: choose one of {', '.join(KINDS)}")
        if int(n_train) < 1:
            raise GenrunError(f"dataset.n_train={n_train}: must be at least 1")
        if channels is not None or image_size is not None:
            raise GenrunError("dataset=toy2d holds 2-D points: dataset.channels and dataset.image_size must stay null")
        self.kind, self.seed = kind, int(seed)
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}

    def load(self):
        # Different seeds per split: the three splits are independent draws from the same distribution.
        splits = {name: generate(self.kind, n, self.seed * 3 + i) for i, (name, n) in enumerate(self.sizes.items())}
        centres = mode_centres(self.kind)
        self.details = {
            "source": f"toy2d:{self.kind}", "kind": self.kind, "seed": self.seed,
            "num_classes": len(centres) if centres is not None else (2 if self.kind == "moons" else 1),
            "modes": centres.tolist() if centres is not None else None,
            "mode_std": MODE_STD.get(self.kind, CURVE_NOISE.get(self.kind)),
        }
        return splits
