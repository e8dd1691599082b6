"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN Decoders").

The net maps a grid of discrete values (grey levels, binary pixels or VQ codes) to logits for every position
and channel, each depending only on the positions before it in raster order, channels in order within a
pixel (R, then G, then B). Two stacks remove the blind spot of the masked 3x3 PixelCNN:

- the vertical stack sees whole rows strictly above (its first layer reads rows i-p..i-1, later layers rows
  i-p..i of the stack below, which are themselves strictly above), full kernel width, no masks;
- the horizontal stack sees the current row up to the current column; at the current column a channel
  mask lets output group g read input groups < g in the first layer (mask A) and <= g after (mask B),
  and it takes the vertical stack's features through a 1x1 link.

Each layer is gated (tanh * sigmoid), the horizontal stack is residual, a class embedding adds a bias to
both stacks (`num_classes`). Inputs are embedded (one table row per channel and value, plus the value as a
number in [-1, 1] so grey levels keep their order), so one net serves 256 grey levels, 2 levels and K codes.

`RasterState` evaluates the same layers one row and one column at a time, exactly as the full forward would,
so raster-order sampling (genrun.sampling.raster) reuses the work of earlier pixels instead of running the
whole net per pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genrun.nets.base import Net
from genrun.nets.checks import require_positive


def channel_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, strict: bool) -> torch.Tensor:
    """out×in 0/1: output group g may read input groups < g (strict, mask A) or <= g (mask B)."""
    allowed = out_groups[:, None] > in_groups[None] if strict else out_groups[:, None] >= in_groups[None]
    return allowed.float()


def gate(pre: torch.Tensor) -> torch.Tensor:
    """tanh(a) * sigmoid(b) for the two halves of the channels."""
    a, b = pre.chunk(2, 1)
    return torch.tanh(a) * torch.sigmoid(b)


class MaskedConv2d(nn.Conv2d):
    """A convolution without padding whose weight is multiplied by a fixed 0/1 mask; the mask is rebuilt
    from the net's arguments, so it is not part of the state_dict."""

    def __init__(self, c_in: int, c_out: int, kernel: tuple[int, int], mask: torch.Tensor):
        super().__init__(c_in, c_out, kernel)
        self.register_buffer("mask", mask.reshape(self.weight.shape), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


class GatedLayer(nn.Module):
    """One layer of both stacks. Callers pad and crop; the convolutions themselves pad nothing."""

    def __init__(self, c_in: int, hidden: int, in_groups: torch.Tensor, hidden_groups: torch.Tensor,
                 kernel: int, first: bool, num_classes: int):
        super().__init__()
        self.p, self.first, self.hidden = kernel // 2, first, hidden
        # The first layer's vertical kernel covers rows i-p..i-1 only; later ones rows i-p..i.
        self.v_conv = nn.Conv2d(c_in, 2 * hidden, (self.p + (0 if first else 1), kernel))
        gated_groups = hidden_groups.repeat(2)
        h_mask = torch.ones(2 * hidden, c_in, 1, self.p + 1)
        h_mask[:, :, 0, -1] = channel_mask(gated_groups, in_groups, strict=first)
        self.h_conv = MaskedConv2d(c_in, 2 * hidden, (1, self.p + 1), h_mask)
        self.link = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.h_out = MaskedConv2d(hidden, hidden, (1, 1), channel_mask(hidden_groups, hidden_groups, strict=False))
        self.label = nn.Embedding(num_classes, 4 * hidden) if num_classes else None

    def biases(self, labels: torch.Tensor | None):
        """The class's bias for the vertical and the horizontal pre-activations (None, None without one)."""
        if self.label is None or labels is None:
            return None, None
        v, h = self.label(labels)[:, :, None, None].chunk(2, 1)
        return v, h

    def vertical(self, window: torch.Tensor, bias) -> torch.Tensor:
        """Pre-activations of the vertical stack from a window already padded (rows and columns)."""
        pre = self.v_conv(window)
        return pre if bias is None else pre + bias

    def horizontal(self, window: torch.Tensor, v_pre: torch.Tensor, centre: torch.Tensor | None, bias) -> torch.Tensor:
        """The horizontal stack's output from its left-padded window, the vertical pre-activations at the same
        positions, and the layer's input at those positions (the residual; None in the first layer)."""
        pre = self.h_conv(window) + self.link(v_pre)
        if bias is not None:
            pre = pre + bias
        out = self.h_out(gate(pre))
        return out if centre is None else out + centre


class GatedPixelCNN(Net):
    """Logits N×levels×C×H×W for a grid N×C×H×W of integers in [0, levels), causal in raster order with
    channels in order within a pixel; optionally class-conditional (`labels`, N)."""

    def __init__(self, channels: int, levels: int, width: int = 64, layers: int = 8, kernel: int = 5,
                 embed_dim: int = 16, head_width: int | None = None, num_classes: int = 0):
        super().__init__()
        require_positive(channels=channels, width=width, layers=layers, embed_dim=embed_dim)
        if int(levels) < 2:
            raise ValueError(f"levels must be at least 2, got {levels}")
        if int(kernel) < 3 or int(kernel) % 2 == 0:
            raise ValueError(f"kernel must be odd and at least 3, got {kernel}")
        self.channels, self.levels, self.kernel = int(channels), int(levels), int(kernel)
        self.num_classes = int(num_classes or 0)
        c = self.channels
        group = math.ceil(int(width) / c)  # features per colour channel, so every channel gets a whole group
        self.hidden = hidden = group * c
        self.features = int(embed_dim) + 1  # per channel: its embedding and its value as a number
        self.embedding = nn.Embedding(c * self.levels, int(embed_dim))
        self.register_buffer("offsets", torch.arange(c) * self.levels, persistent=False)
        in_groups = torch.arange(c * self.features) // self.features
        hidden_groups = torch.arange(hidden) // group
        self.layers = nn.ModuleList(
            GatedLayer(c * self.features if index == 0 else hidden, hidden,
                       in_groups if index == 0 else hidden_groups, hidden_groups, self.kernel, index == 0,
                       self.num_classes)
            for index in range(int(layers)))
        head = int(head_width or hidden)
        head_group = math.ceil(head / c)
        head = head_group * c
        head_groups = torch.arange(head) // head_group
        out_groups = torch.arange(c * self.levels) // self.levels
        self.head1 = MaskedConv2d(hidden, head, (1, 1), channel_mask(head_groups, hidden_groups, strict=False))
        self.head2 = MaskedConv2d(head, c * self.levels, (1, 1), channel_mask(out_groups, head_groups, strict=False))

    # --- pieces shared by the full pass and the incremental one ------------------------------------------------

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """N×C×h×w integers to N×(C·features)×h×w, channel-major (channel c's features form group c)."""
        n, c, h, w = x.shape
        table = self.embedding(x + self.offsets.view(1, c, 1, 1))  # N×C×h×w×E
        value = (x.to(table.dtype) / (self.levels - 1) * 2 - 1).unsqueeze(-1)
        return torch.cat([table, value], -1).permute(0, 1, 4, 2, 3).reshape(n, c * self.features, h, w)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits N×levels×C×h×w from the last horizontal features."""
        out = self.head2(F.relu(self.head1(F.relu(h))))
        n, _, height, width = out.shape
        return out.view(n, self.channels, self.levels, height, width).transpose(1, 2)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        height = x.shape[2]
        v = h = self.embed(x)
        for layer in self.layers:
            p = layer.p
            bias_v, bias_h = layer.biases(labels)
            v_pre = layer.vertical(F.pad(v, (p, p, p, 0)), bias_v)[:, :, :height]
            h = layer.horizontal(F.pad(h, (p, 0, 0, 0)), v_pre, None if layer.first else h, bias_h)
            v = gate(v_pre)
        return self.head(h)

    def raster_state(self, grid: torch.Tensor, labels: torch.Tensor | None = None) -> RasterState:
        """Incremental evaluation over `grid`, which the sampler fills in place (see RasterState)."""
        return RasterState(self, grid, labels)


class RasterState:
    """The net evaluated row by row and column by column over a grid being drawn in raster order.

    `begin_row(i)` computes the vertical stack's row i for every layer (it reads only rows above i, and the
    vertical rows kept from earlier calls); `logits_at(i, j)` then computes only column j of the horizontal
    stack from the columns kept to its left, and the head there. Together they do the work of one forward
    pass per image instead of one per pixel, and give the same logits as `net(grid)` at that position.
    Call `logits_at` again after drawing each channel of a pixel (R, then G, then B).
    """

    def __init__(self, net: GatedPixelCNN, grid: torch.Tensor, labels: torch.Tensor | None):
        n, _c, height, width = grid.shape
        param = next(net.parameters())
        self.net, self.grid, self.width = net, grid, width
        self.p = net.kernel // 2
        self.biases = [layer.biases(labels) for layer in net.layers]
        self.v = [param.new_zeros(n, net.hidden, height, width) for _ in net.layers]  # gated vertical rows
        self.link = [None] * len(net.layers)  # vertical pre-activations of the current row
        self.h = [param.new_zeros(n, net.hidden, 1, width + self.p) for _ in net.layers]  # left-padded row

    def _rows(self, source: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows start..stop-1 of `source`, zeros for rows above the image, columns padded by p each side."""
        window = source[:, :, max(start, 0) : stop]
        return F.pad(window, (self.p, self.p, max(0, -start), 0))

    def begin_row(self, i: int) -> None:
        p = self.p
        below = self.net.embed(self.grid[:, :, max(i - p, 0) : i])
        below = F.pad(below, (self.p, self.p, p - below.shape[2], 0))
        for index, layer in enumerate(self.net.layers):
            window = below if layer.first else self._rows(self.v[index - 1], i - p, i + 1)
            v_pre = layer.vertical(window, self.biases[index][0])
            self.v[index][:, :, i : i + 1] = gate(v_pre)
            self.link[index] = v_pre
        for row in self.h:
            row.zero_()

    def logits_at(self, i: int, j: int) -> torch.Tensor:
        """Logits N×levels×C at (i, j) given every earlier position (and earlier channels of this pixel)."""
        p = self.p
        pixels = self.grid[:, :, i : i + 1, max(j - p, 0) : j + 1]
        source = F.pad(self.net.embed(pixels), (p + 1 - pixels.shape[3], 0, 0, 0))
        for index, layer in enumerate(self.net.layers):
            centre = None if layer.first else source[:, :, :, -1:]
            out = layer.horizontal(source, self.link[index][:, :, :, j : j + 1], centre, self.biases[index][1])
            self.h[index][:, :, :, j + p : j + p + 1] = out
            source = self.h[index][:, :, :, j : j + p + 1]
        return self.net.head(source[:, :, :, -1:])[:, :, :, 0, 0]
