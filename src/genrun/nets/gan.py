"""GAN generators and discriminators: MLPs (Goodfellow et al. 2014) and DCGAN (Radford et al. 2015).

Generators map latents (and, when `num_classes` > 0, class labels) to data in the network's own range:
tanh images in [-1, 1], or unbounded points for 2-D toy data; `to_data` maps that back to the dataset's
range. Discriminators return one logit (or critic score) per item. A conditional discriminator uses the
projection of Miyato & Koyama (2018): score = ψ(h) + <embed(y), h>, which trains more stably than
concatenating one-hot labels to the input.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genrun.errors import GenrunError
from genrun.nets.base import Net
from genrun.nets.checks import require_positive
from genrun.nets.conv import downsampling_plan
from genrun.nets.mlp import mlp

D_NORMS = ("auto", "batch", "layer", "none")
NOT_IMAGES = ("model=dcgan/cgan needs image data, but dataset.channels/image_size are null "
              "(dataset=toy2d holds 2-D points: use model=gan)")


def data_shape(shape: list[int] | None, channels: int | None, image_size: int | None) -> tuple[int, ...]:
    """The shape of one data item: `shape` when the dataset gives one (toy points), else C×S×S."""
    if shape is not None:
        return tuple(int(s) for s in shape)
    if channels is None or image_size is None:
        raise ValueError("a GAN network needs the data's shape, or its channels and image_size")
    return int(channels), int(image_size), int(image_size)


def _maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(layer) if enabled else layer


class Generator(Net):
    """What sampling and evaluation rely on: latent_dim, num_classes, forward(z, y), to_data, sample_latents."""

    latent_dim: int
    num_classes: int
    images: bool

    def to_data(self, out: torch.Tensor) -> torch.Tensor:
        """Network output → the dataset's range ([0, 1] for images; unchanged for points)."""
        return out.add(1).div(2).clamp(0, 1) if self.images else out

    def from_data(self, x: torch.Tensor) -> torch.Tensor:
        """Dataset items → the range the generator produces, which the discriminator sees."""
        return x.mul(2).sub(1) if self.images else x

    def _check_labels(self, y: torch.Tensor | None) -> torch.Tensor | None:
        if self.num_classes and y is None:
            raise ValueError("this generator is class-conditional: pass labels")
        return y if self.num_classes else None


def _one_hot(y: torch.Tensor | None, num_classes: int, like: torch.Tensor) -> torch.Tensor | None:
    if not num_classes:
        return None
    return nn.functional.one_hot(y.long(), num_classes).to(like.dtype)


class MLPGenerator(Generator):
    def __init__(self, latent_dim: int = 64, shape: list[int] | None = None, channels: int | None = None,
                 image_size: int | None = None, hidden_dims: list[int] = (256, 256), num_classes: int = 0,
                 activation: str = "relu"):
        super().__init__()
        require_positive(latent_dim=latent_dim, hidden_dims=list(hidden_dims))
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes or 0)
        self.shape = data_shape(shape, channels, image_size)
        self.images = len(self.shape) == 3
        sizes = [self.latent_dim + self.num_classes, *[int(h) for h in hidden_dims], math.prod(self.shape)]
        self.body = mlp(sizes, activation)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._check_labels(y)
        h = z if y is None else torch.cat([z, _one_hot(y, self.num_classes, z)], 1)
        out = self.body(h).view(len(z), *self.shape)
        return torch.tanh(out) if self.images else out


class MLPDiscriminator(Net):
    """`pack` > 1 is PacGAN (Lin et al. 2018): the network scores `pack` items of one kind (all real or all
    generated) concatenated, one score per pack, so it can see how varied a small set is and penalises a
    generator that drops modes. A batch that `pack` does not divide loses its last few items."""

    def __init__(self, shape: list[int] | None = None, channels: int | None = None, image_size: int | None = None,
                 hidden_dims: list[int] = (256, 256), num_classes: int = 0, spectral_norm: bool = False,
                 activation: str = "leaky_relu", pack: int = 1):
        super().__init__()
        require_positive(hidden_dims=list(hidden_dims))
        self.num_classes, self.pack = int(num_classes or 0), int(pack)
        if self.pack < 1:
            raise GenrunError(f"model.pack={pack}: must be 1 (off) or more")
        if self.pack > 1 and self.num_classes:
            raise GenrunError(f"model.pack={pack} (PacGAN) is unconditional only: set model.num_classes=0 or pack=1")
        sizes = [self.pack * math.prod(data_shape(shape, channels, image_size)), *[int(h) for h in hidden_dims]]
        body = mlp(sizes, activation, final_activation=True)
        for module in body:
            if isinstance(module, nn.Linear) and spectral_norm:
                _spectral_norm(module)
        self.body = body
        self.head = _maybe_sn(nn.Linear(sizes[-1], 1), spectral_norm)
        self.embed = _maybe_sn(nn.Embedding(self.num_classes, sizes[-1]), spectral_norm) if self.num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.pack > 1:
            if len(h) < self.pack:
                raise ValueError(f"a PacGAN discriminator with pack={self.pack} needs at least {self.pack} items")
            h = h[: len(h) // self.pack * self.pack].reshape(len(h) // self.pack, -1)
        h = self.body(h)
        return _project(self.head(h).squeeze(1), self.embed, h, y)


def _project(score: torch.Tensor, embed: nn.Module | None, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    if embed is None:
        return score
    if y is None:
        raise ValueError("this discriminator is class-conditional: pass labels")
    return score + (embed(y.long()) * h).sum(1)


class DCGANGenerator(Generator):
    """z → (width·2^(k-1))×s×s → ... → C×S×S with stride-2 transposed convolutions, batch norm and ReLU,
    tanh at the end (Radford et al. 2015). s is 7 for 28-pixel images and 4 for 32 and 64."""

    def __init__(self, channels: int, image_size: int, latent_dim: int = 100, width: int = 64,
                 num_classes: int = 0):
        super().__init__()
        if channels is None or image_size is None:
            raise GenrunError(NOT_IMAGES)
        require_positive(latent_dim=latent_dim, width=width)
        stages, start = _plan(image_size)
        self.latent_dim, self.num_classes, self.images = int(latent_dim), int(num_classes or 0), True
        self.shape = (int(channels), int(image_size), int(image_size))
        c = width * 2 ** (stages - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(self.latent_dim + self.num_classes, c, start, 1, 0, bias=False),
                                   nn.BatchNorm2d(c), nn.ReLU(True)]
        for i in reversed(range(stages)):
            out = int(channels) if i == 0 else width * 2 ** (i - 1)
            layers.append(nn.ConvTranspose2d(c, out, 4, 2, 1, bias=i == 0))
            layers += [nn.Tanh()] if i == 0 else [nn.BatchNorm2d(out), nn.ReLU(True)]
            c = out
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        y = self._check_labels(y)
        h = z if y is None else torch.cat([z, _one_hot(y, self.num_classes, z)], 1)
        return self.net(h[:, :, None, None])


def resolve_norm(norm: str, loss: str, spectral_norm: bool) -> str:
    """`auto`: batch norm as in DCGAN, except with a gradient penalty (it needs per-item gradients, so
    layer norm, as Gulrajani et al. 2017 advise) or spectral norm (Miyato et al. 2018 use none)."""
    if norm not in D_NORMS:
        raise GenrunError(f"model.d_norm={norm!r}: choose one of {', '.join(D_NORMS)}")
    if norm != "auto":
        return norm
    if loss == "wgan-gp":
        return "layer"
    return "none" if spectral_norm else "batch"


class DCGANDiscriminator(Net):
    """C×S×S → one score: stride-2 convolutions with LeakyReLU(0.2), normalisation after the first,
    a final convolution over the remaining s×s map."""

    def __init__(self, channels: int, image_size: int, width: int = 64, num_classes: int = 0,
                 spectral_norm: bool = False, norm: str = "auto", loss: str = "ns"):
        super().__init__()
        if channels is None or image_size is None:
            raise GenrunError(NOT_IMAGES)
        require_positive(width=width)
        stages, final = _plan(image_size)
        self.norm = resolve_norm(norm, loss, spectral_norm)
        self.num_classes = int(num_classes or 0)
        layers: list[nn.Module] = []
        c = int(channels)
        for i in range(stages):
            out = width * 2**i
            layers.append(_maybe_sn(nn.Conv2d(c, out, 4, 2, 1, bias=i == 0 or self.norm == "none"), spectral_norm))
            if i > 0 and self.norm == "batch":
                layers.append(nn.BatchNorm2d(out))
            elif i > 0 and self.norm == "layer":
                layers.append(nn.GroupNorm(1, out))
            layers.append(nn.LeakyReLU(0.2, True))
            c = out
        self.features = nn.Sequential(*layers)
        self.head = _maybe_sn(nn.Conv2d(c, 1, final, 1, 0), spectral_norm)
        self.embed = _maybe_sn(nn.Embedding(self.num_classes, c), spectral_norm) if self.num_classes else None
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        score = self.head(h).flatten(1).squeeze(1)
        if self.embed is None:
            return score
        return _project(score, self.embed, h.sum((2, 3)), y)


def _plan(image_size: int) -> tuple[int, int]:
    try:
        return downsampling_plan(int(image_size))
    except ValueError:
        raise GenrunError(f"dataset.image_size={image_size}: DCGAN needs a size that halves down to 7 or 4 "
                          "(28, 32, 64, ...)") from None


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: weights from N(0, 0.02); batch-norm scales from N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        weight = getattr(module, "parametrizations", None)
        target = weight.weight.original if weight is not None else module.weight
        nn.init.normal_(target, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
