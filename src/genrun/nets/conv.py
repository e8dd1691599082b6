"""Strided convolutional encoders and decoders for square images of 28, 32, 64 (any size that halves
down to 7 or 4 pixels)."""

from __future__ import annotations

import torch
from torch import nn


def downsampling_plan(image_size: int, smallest: int = 4) -> tuple[int, int]:
    """(number of 2x downsamplings, final spatial size): halve while the size is even and the half is at
    least `smallest` (4: 28 → 7, 32 → 4, 64 → 4 for the conv autoencoders and DCGAN; the classifier keeps
    7 so its maps stay at least 7 wide). The one plan every genrun convnet uses."""
    size, stages = int(image_size), 0
    while size % 2 == 0 and size // 2 >= smallest:
        size, stages = size // 2, stages + 1
    if stages == 0:
        raise ValueError(f"image_size {image_size} cannot be halved; use 28, 32, 64, ...")
    return stages, size


class ConvEncoder(nn.Module):
    """Image → feature vector: stride-2 conv stages, channel widths doubling from `width`."""

    def __init__(self, channels: int, image_size: int, out_features: int, width: int = 32,
                 batch_norm: bool = False):
        super().__init__()
        stages, self.final_size = downsampling_plan(image_size)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(stages):
            c_out = width * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1)]
            layers += [nn.BatchNorm2d(c_out)] if batch_norm and i > 0 else []
            layers += [nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * self.final_size**2, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class ConvDecoder(nn.Module):
    """Feature vector → image-shaped output: the mirror of ConvEncoder with transposed convolutions."""

    def __init__(self, in_features: int, channels: int, image_size: int, width: int = 32,
                 batch_norm: bool = False):
        super().__init__()
        stages, self.final_size = downsampling_plan(image_size)
        self.top_channels = width * 2 ** (stages - 1)
        self.project = nn.Linear(in_features, self.top_channels * self.final_size**2)
        layers: list[nn.Module] = [nn.ReLU()]
        c_in = self.top_channels
        for i in reversed(range(stages)):
            last = i == 0
            c_out = channels if last else width * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1))
            if not last:
                layers += ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [nn.ReLU()]
            c_in = c_out
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(-1, self.top_channels, self.final_size, self.final_size)
        return self.layers(h)
