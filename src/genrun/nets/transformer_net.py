"""Johnson et al. 2016's image transformation network: a feed-forward stylizer for images of any size.

Reflection-padded convolutions with instance normalisation (Ulyanov et al. 2016), two stride-2 downsamplings,
residual blocks, and upsample-then-convolve (nearest-neighbour 2x, then a 3x3 conv) instead of transposed
convolutions, which leave checkerboard artefacts (Odena et al. 2016). An image whose sides are not multiples
of 4 (or under 8) is padded to them and the output cropped back, so every size (odd ones too) comes out as
it went in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genrun.errors import GenrunError
from genrun.nets.base import Net
from genrun.nets.checks import require_positive


class ConvLayer(nn.Sequential):
    """Reflection padding, a convolution, instance norm (affine) and ReLU (no norm/ReLU for the output layer)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, upsample: bool = False,
                 last: bool = False):
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")] if upsample else []
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(c_in, c_out, kernel, stride)]
        if not last:
            layers += [nn.InstanceNorm2d(c_out, affine=True), nn.ReLU()]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(ConvLayer(channels, channels, 3), nn.ReflectionPad2d(1),
                                  nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels, affine=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TransformerNet(Net):
    """Images in [0, 1] to stylised images (about [0, 1]; clamp to show them). `width` is the first layer's
    channels (Johnson et al.: 32, doubling twice), `residual_blocks` the blocks at a quarter resolution (5)."""

    def __init__(self, width: int = 32, residual_blocks: int = 5, channels: int = 3):
        super().__init__()
        if channels != 3:
            raise GenrunError(f"dataset.channels={channels}: fast style stylises RGB images (VGG19 sees colour); "
                              "use dataset=photo_crops or dataset=image_folder dataset.path=DIR")
        require_positive(width=width, residual_blocks=residual_blocks)
        w = int(width)
        self.down = nn.Sequential(ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, stride=2),
                                  ConvLayer(2 * w, 4 * w, 3, stride=2))
        self.res = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(int(residual_blocks))])
        self.up = nn.Sequential(ConvLayer(4 * w, 2 * w, 3, upsample=True), ConvLayer(2 * w, w, 3, upsample=True),
                                ConvLayer(w, 3, 9, last=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Sides a multiple of 4 (two halvings), and at least 8 (the reflection pads need 2 pixels at a quarter).
        pad_h, pad_w = max(8, h + (-h) % 4) - h, max(8, w + (-w) % 4) - w
        if pad_h or pad_w:  # reflection needs the pad smaller than the side: replicate for tiny images
            mode = "reflect" if pad_h < h and pad_w < w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        out = self.up(self.res(self.down(x)))
        return out[..., :h, :w]
