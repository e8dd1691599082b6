"""Adversarial training with Lightning's manual optimisation: one LightningModule for gan, dcgan and cgan.

Each batch: a discriminator (critic) step; every `n_critic`-th batch also a generator step, followed by
an update of the generator's exponential moving average (EMA), which sampling and evaluation use.
Losses (logits D(·)):
  ns       D: softplus(-D(x)) + softplus(D(G(z)))     G: softplus(-D(G(z)))   (Goodfellow et al. 2014)
  hinge    D: relu(1 - D(x)) + relu(1 + D(G(z)))      G: -D(G(z))             (Lim & Ye 2017; Miyato 2018)
  wgan-gp  D: D(G(z)) - D(x) + λ (‖∇D(x̂)‖ - 1)²       G: -D(G(z))             (Gulrajani et al. 2017)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from genrun.errors import GenrunError
from genrun.metrics.swd import sliced_wasserstein
from genrun.models.base import GenrunModule
from genrun.models.optim import build_optimizer, trainer_grad_scaler
from genrun.nets.gan import Generator

LOSSES = ("ns", "hinge", "wgan-gp")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "ns":
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean() if kind == "ns" else -fake.mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     labels: torch.Tensor | None) -> torch.Tensor:
    """E[(‖∇D(x̂)‖₂ − 1)²] at random points x̂ between real and generated items."""
    alpha = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    score = discriminator(mixed, labels)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


class GANModule(GenrunModule):
    """Trains `generator` against `discriminator`; batches are (items in the dataset's range, labels)."""

    optimizer_names = ("generator", "discriminator")

    ema_of = "generator"

    def __init__(self, generator: Generator, discriminator: nn.Module, g_optimizer: Callable,
                 d_optimizer: Callable, loss: str = "ns", n_critic: int = 1, gp_weight: float = 10.0,
                 ema: bool = True, ema_decay: float = 0.999, clip_grad_norm: float | None = None,
                 num_log_images: int = 64):
        super().__init__(ema=ema, ema_decay=ema_decay, prog_bar=["train/d_loss", "train/g_loss"])
        self.automatic_optimization = False
        if loss not in LOSSES:
            raise GenrunError(f"model.loss={loss!r}: choose one of {', '.join(LOSSES)}")
        if int(n_critic) < 1:
            raise GenrunError(f"model.n_critic={n_critic}: must be at least 1")
        if clip_grad_norm is not None and float(clip_grad_norm) <= 0:
            raise GenrunError(f"model.clip_grad_norm={clip_grad_norm}: must be positive (or null for none)")
        if loss == "wgan-gp" and any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in discriminator.modules()):
            raise GenrunError("model.d_norm=batch: batch norm mixes items, which breaks WGAN-GP's per-item "
                              "gradient penalty; use model.d_norm=auto or layer")
        if loss == "wgan-gp" and getattr(discriminator, "pack", 1) > 1:
            raise GenrunError(f"model.pack={discriminator.pack} (PacGAN) does not support model.loss=wgan-gp: the "
                              "gradient penalty is defined per item, not per pack")
        if generator.num_classes != getattr(discriminator, "num_classes", 0):
            raise GenrunError("generator and discriminator disagree on model.num_classes")
        self.generator, self.discriminator = generator, discriminator
        self.g_optimizer_factory, self.d_optimizer_factory = g_optimizer, d_optimizer
        self.loss_kind, self.n_critic, self.gp_weight = loss, int(n_critic), float(gp_weight)
        self._stepping: tuple[str, int] = ("discriminator", 0)
        self._last_norm: torch.Tensor | None = None
        self.clip = None if clip_grad_norm is None else float(clip_grad_norm)
        # Step counters live in buffers so that a resumed run continues the same schedule.
        self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("g_steps", torch.zeros((), dtype=torch.long))
        self.num_log_images = int(num_log_images)
        self.setup_ema()

    @property
    def conditional(self) -> bool:
        return self.generator.num_classes > 0

    def pipeline(self, data_info: dict | None = None):
        from genrun.families.gan import GANPipeline

        return GANPipeline({"generator": self.averaged("generator")}, data_info=data_info)

    def _noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.generator.latent_dim, device=self.device)

    def _stop_if_not_finite(self, name: str, value: torch.Tensor, batch_idx: int) -> None:
        if torch.isfinite(value).all():
            return
        where = ""
        callback = getattr(self.trainer, "checkpoint_callback", None)
        if callback is not None and getattr(callback, "dirpath", None):
            where = f"; the last good checkpoint is in {callback.dirpath}"
        raise GenrunError(
            f"non-finite {name} ({value.item()}) at epoch {self.current_epoch}, batch {batch_idx}: training "
            f"stopped before this step's update{where}; try a lower model.lr, model.clip_grad_norm, "
            "or model.loss=hinge")

    def _optimise(self, optimizer, loss: torch.Tensor, name: str, batch_idx: int) -> torch.Tensor | None:
        """One update; returns the gradient norm before clipping when clipping is on."""
        self._stop_if_not_finite(f"{name} loss", loss.detach(), batch_idx)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self._stepping, self._last_norm = (name, batch_idx), None
        optimizer.step()  # clips in on_before_optimizer_step
        return self._last_norm

    def on_before_optimizer_step(self, optimizer) -> None:
        # Manual optimisation ignores Trainer(gradient_clip_val), so clip by hand. Lightning calls this hook
        # inside optimizer.step(), after an fp16 GradScaler has unscaled the gradients: the norm is the true one.
        if self.clip is None:
            return
        name, batch_idx = self._stepping
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.clip)
        if trainer_grad_scaler(self) is None:
            # Under fp16 an overflow is routine: the scaler skips that step and lowers its scale.
            self._stop_if_not_finite(f"{name} gradient norm", norm.detach(), batch_idx)
        self._last_norm = norm

    def training_step(self, batch, batch_idx):
        x, y = batch
        real = self.generator.from_data(x)
        labels = y if self.conditional else None
        g_opt, d_opt = self.optimizers()

        with torch.no_grad():
            fake = self.generator(self._noise(len(real)), labels)
        d_real, d_fake = self.discriminator(real, labels), self.discriminator(fake, labels)
        d_loss = discriminator_loss(self.loss_kind, d_real, d_fake)
        if self.loss_kind == "wgan-gp":
            d_loss = d_loss + self.gp_weight * gradient_penalty(self.discriminator, real, fake, labels)
        d_norm = self._optimise(d_opt, d_loss, "discriminator", batch_idx)
        self.d_steps += 1
        logs = {"train/d_loss": d_loss.detach(), "train/d_real": d_real.detach().mean(),
                "train/d_fake": d_fake.detach().mean()}
        if d_norm is not None:
            logs["train/d_grad_norm"] = d_norm

        if int(self.d_steps) % self.n_critic == 0:
            fake = self.generator(self._noise(len(real)), labels)
            g_loss = generator_loss(self.loss_kind, self.discriminator(fake, labels))
            g_norm = self._optimise(g_opt, g_loss, "generator", batch_idx)
            self.g_steps += 1
            self.update_ema()
            logs["train/g_loss"] = g_loss.detach()
            if g_norm is not None:
                logs["train/g_grad_norm"] = g_norm
        self.train_scalars.update(self, logs, len(x))

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Items in the dataset's range from the averaged generator, in eval mode."""
        return self.pipeline().generate(z, labels if self.conditional else None)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        # The same noise every epoch (seeded by batch), so the curve reflects the generator, not the draw.
        g = torch.Generator().manual_seed(batch_idx)
        z = torch.randn(len(x), self.generator.latent_dim, generator=g).to(self.device)
        swd = sliced_wasserstein(x, self.generate(z, y), seed=0)
        # A GAN has no held-out likelihood: val/loss is the sliced Wasserstein distance, lower is better.
        for name in ("val/swd", "val/loss"):
            self.log(name, swd, on_epoch=True, prog_bar=name == "val/swd", batch_size=len(x), sync_dist=True)

    @torch.no_grad()
    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if not self.draws_pictures():
            return
        pipeline = self.pipeline()
        if self.generator.images:
            self.log_images("samples/fixed_noise", *pipeline.progress_images(self.num_log_images))
        else:
            self.log_figure("samples/scatter", pipeline.progress_figure(self.num_log_images))

    def configure_optimizers(self):
        clipping = self.clip is not None  # by hand, in on_before_optimizer_step
        g_opt = build_optimizer(self.g_optimizer_factory, self.generator.parameters(), self._trainer, clipping,
                                key="model.module.g_optimizer")
        d_opt = build_optimizer(self.d_optimizer_factory, self.discriminator.parameters(), self._trainer, clipping,
                                key="model.module.d_optimizer")
        return [g_opt, d_opt]
