"""A small convolutional image classifier, and the augmentation it is trained with.

It is a model users can train (`model=classifier`) and the domain feature network of the sample-quality
metrics: `features(x)` is the penultimate layer that domain FID, precision/recall compare.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genrun.nets.base import Net
from genrun.nets.checks import require_positive
from genrun.nets.conv import downsampling_plan


def _stages(image_size: int) -> int:
    """Number of 2x poolings: halve while the map stays at least 7 pixels wide (28 → 7, 32 → 8, 64 → 8)."""
    try:
        return downsampling_plan(image_size, smallest=7)[0]
    except ValueError:  # an odd or small size: one pooling all the same
        return 1


class ConvClassifier(Net):
    """3x3 conv + batch norm + ReLU + 2x max-pooling stages (widths doubling from `width`), one more conv at
    the smallest size, a `feature_dim` hidden layer, the class logits. Inputs are images in [0, 1].

    Sized for two CPU cores: evaluating thousands of samples takes seconds.
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 16,
                 feature_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        if not num_classes or num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        require_positive(width=width, feature_dim=feature_dim)
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.feature_dim = feature_dim
        layers: list[nn.Module] = []
        c_in, size = channels, image_size
        stages = _stages(image_size)
        for i in range(stages + 1):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
            if i < stages:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.body = nn.Sequential(*layers, nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(c_in * size * size, feature_dim), nn.BatchNorm1d(feature_dim),
                                    nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations (N × feature_dim): the domain feature space."""
        return self.hidden(self.body(x * 2 - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def random_affine(x: torch.Tensor, generator: torch.Generator | None = None, degrees: float = 10.0,
                  shift: float = 0.1, scale: float = 0.1) -> torch.Tensor:
    """Each image rotated by up to ±`degrees`, shifted by up to ±`shift` of its size, scaled by 1 ± `scale`:
    with a few thousand digits, augmentation is what the classifier's test accuracy depends on most."""
    n = len(x)

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * bound

    angle = uniform(math.radians(degrees))
    factor = 1 + uniform(scale)
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    theta = torch.stack([torch.stack([cos, -sin, uniform(2 * shift)], 1),
                         torch.stack([sin, cos, uniform(2 * shift)], 1)], 1).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)
