"""Latent diffusion training: DDPM's objective on the scaled latents of a frozen autoencoder run.

`model.autoencoder=RUN_DIR` (or a checkpoint file) names the autoencoder; it is loaded as a frozen
reference, checked against the dataset's image shape before training, and never updated. A VQ-VAE run
serves too: its latent is the encoder's grid before quantization, and decoding quantizes it first (the
VQ-regularised autoencoders of Rombach et al. 2022). The latent scale
factor (one over the spread of the training latents) is measured once at the start of fitting from up to
SCALE_IMAGES training images and kept in a buffer, so a resumed run and every sample use the same number.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from genrun.errors import GenrunError
from genrun.families.latent_diffusion import LatentDiffusionPipeline, encode_latents
from genrun.models.ddpm import DDPMModule

SCALE_IMAGES = 2000


def load_autoencoder(where: str | None, channels: int, image_size: int):
    """The autoencoder component of the run (or checkpoint) `where`, frozen, or a one-line error."""
    from genrun.nets.autoencoder import Autoencoder
    from genrun.nets.vq import VQVAE
    from genrun.pipeline import frozen_reference
    from genrun.runs import choose_checkpoint

    if not where:
        raise GenrunError("model.autoencoder: required: a run directory (or checkpoint) of an autoencoder, e.g. "
                          "genrun train model=latent_ddpm model.autoencoder=outputs/train/conv_vae_mnist/<id>")
    path, _why = choose_checkpoint(str(Path(str(where)).expanduser().resolve()), ".")
    net = frozen_reference(path, "net")
    if not isinstance(net, (Autoencoder, VQVAE)):  # a VQ-VAE's latent: its grid before quantization
        raise GenrunError(f"model.autoencoder={where}: its checkpoint holds a {type(net).__name__}, not an "
                          "autoencoder (train one with model=conv_vae, vae, ae or vqvae)")
    trained = (int(net.init_config["channels"]), int(net.init_config["image_size"]))
    if trained != (int(channels), int(image_size)):
        raise GenrunError(f"model.autoencoder={where}: it was trained on {trained[0]}-channel {trained[1]}px "
                          f"images; this dataset has {channels}-channel {image_size}px images")
    return net


class LatentDDPMModule(DDPMModule):
    def __init__(self, autoencoder: str | None, denoiser: Callable, optimizer: Callable, channels: int,
                 image_size: int, scheduler: Callable | None = None, timesteps: int = 1000,
                 schedule: str = "linear", prediction: str = "eps", cond_drop: float = 0.1, ema: bool = True,
                 ema_decay: float = 0.999, num_log_images: int = 16, log_steps: int = 20):
        frozen = load_autoencoder(autoencoder, channels, image_size)
        super().__init__(denoiser(latent_dim=frozen.latent_dim), optimizer, scheduler, timesteps, schedule,
                         prediction, cond_drop, ema, ema_decay, num_log_images, log_steps)
        self.autoencoder = frozen
        self.register_buffer("latent_scale", torch.zeros(()))  # 0: not measured yet

    def pipeline(self, data_info: dict | None = None) -> LatentDiffusionPipeline:
        settings = {**self.settings, "latent_scale": float(self.latent_scale) or 1.0}
        return LatentDiffusionPipeline({"denoiser": self.averaged("unet"), "autoencoder": self.autoencoder},
                                       settings, data_info)

    def to_chain(self, images: torch.Tensor) -> torch.Tensor:
        return encode_latents(self.autoencoder, images) * self.latent_scale

    def on_fit_start(self) -> None:
        self.autoencoder.eval()  # frozen: no dropout or batch-norm updates, ever
        if float(self.latent_scale) == 0.0:
            self.latent_scale.fill_(self.measure_scale())

    def on_train_epoch_start(self) -> None:
        self.autoencoder.eval()  # Lightning puts every submodule in train mode at each epoch

    @torch.no_grad()
    def measure_scale(self) -> float:
        """One over the standard deviation of the training latents (every dimension pooled)."""
        data = getattr(self.trainer.datamodule, "data", None)
        images = data.splits["train"][0][:SCALE_IMAGES] if data is not None else None
        if images is None or len(images) < 2:
            raise GenrunError("model=latent_ddpm: needs at least two training images to measure the latent scale")
        latents = torch.cat([encode_latents(self.autoencoder, images[s : s + 500].to(self.device))
                             for s in range(0, len(images), 500)])
        return float(1.0 / latents.float().std().clamp_min(1e-8))
