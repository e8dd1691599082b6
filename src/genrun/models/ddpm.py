"""Denoising diffusion training (Ho et al. 2020): the simple loss, E‖target − net(x_t, t)‖², where x_t is a
training image noised to a uniformly drawn timestep and the target is the noise, the clean image or v
(model.prediction). Labels are dropped with probability `cond_drop` so one network learns the conditional
and the unconditional model that classifier-free guidance mixes. The U-Net's weights are averaged (EMA, on
by default: DDPM's samples come from the average) and the average is what samples and is evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genrun.errors import GenrunError
from genrun.families.diffusion import DiffusionKnobs, DiffusionPipeline, UNet
from genrun.models.base import GenrunModule


class DDPMModule(GenrunModule):
    ema_of = "unet"
    compiled_step = "_loss"

    def __init__(self, unet: UNet, optimizer: Callable, scheduler: Callable | None = None, timesteps: int = 1000,
                 schedule: str = "linear", prediction: str = "eps", cond_drop: float = 0.1, ema: bool = True,
                 ema_decay: float = 0.999, num_log_images: int = 16, log_steps: int = 20):
        super().__init__(optimizer, scheduler, scheduler_interval="step", ema=ema, ema_decay=ema_decay)
        if not 0.0 <= float(cond_drop) < 1.0:
            raise GenrunError(f"model.cond_drop={cond_drop}: must be in [0, 1)")
        self.unet = unet
        self.settings = {"timesteps": int(timesteps), "schedule": str(schedule), "prediction": str(prediction)}
        self.cond_drop, self.num_log_images, self.log_steps = float(cond_drop), int(num_log_images), int(log_steps)
        self.noise_schedule = DiffusionPipeline({"unet": unet}, self.settings).schedule  # checks the settings
        self.setup_ema()

    def pipeline(self, data_info: dict | None = None) -> DiffusionPipeline:
        return DiffusionPipeline({"unet": self.averaged("unet")}, self.settings, data_info)

    def to_chain(self, images: torch.Tensor) -> torch.Tensor:
        """Training images in [0, 1] to the space the diffusion runs in ([-1, 1] pixels)."""
        return images * 2 - 1

    def _loss(self, batch, generator: torch.Generator | None = None) -> torch.Tensor:
        x, y = batch
        x0 = self.to_chain(x)
        n = len(x0)
        t = torch.randint(self.noise_schedule.steps, (n,), device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, generator=generator)
        labels = None
        if self.unet.num_classes:
            drop = torch.rand(n, device=x0.device, generator=generator) < self.cond_drop
            labels = torch.where(drop, torch.full_like(y, self.unet.num_classes), y.long())
        out = self.unet(self.noise_schedule.add_noise(x0, noise, t), t, labels)
        return F.mse_loss(out.float(), self.noise_schedule.target(x0, noise, t).float())

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.train_scalars.update(self, {"train/loss": loss}, len(batch[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        # The same timesteps and noise every validation (seeded by batch): the curve follows the model.
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        self.log("val/loss", self._loss(batch, generator), on_epoch=True, prog_bar=True, batch_size=len(batch[0]),
                 sync_dist=True)

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if not self.draws_pictures():
            return
        pipeline = self.pipeline()
        classes = self.unet.num_classes
        labels = torch.arange(self.num_log_images) % classes if classes else None
        knobs = DiffusionKnobs(steps=min(self.log_steps, self.noise_schedule.steps))
        images = pipeline.images(self.num_log_images, knobs, generator=torch.Generator().manual_seed(0),
                                 labels=labels)
        self.log_images(f"samples/ddim_{knobs.steps}_steps", images, nrow=classes if classes else None)
