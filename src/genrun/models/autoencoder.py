"""Autoencoders and (β-)VAEs: ELBO training, IWAE test likelihood, sample and reconstruction grids."""

from __future__ import annotations

from collections.abc import Callable

import torch

from genrun.errors import GenrunError
from genrun.metrics.likelihood import elbo_terms
from genrun.models.base import GenrunModule
from genrun.nets.autoencoder import Autoencoder


class AutoencoderModule(GenrunModule):
    """Trains an `Autoencoder` net. β=1 gives the VAE's ELBO, β≠1 the β-VAE, a deterministic net the AE.

    Every loss is per image, in nats: `recon` = −log p(x|z), `kl` = KL(q(z|x) || p(z)),
    `loss` = recon + β·kl, and `neg_elbo` = recon + kl (the bound itself, whatever β).
    """

    ema_of = "net"
    compiled_step = "_terms"

    def __init__(self, net: Autoencoder, optimizer: Callable, scheduler: Callable | None = None,
                 beta: float = 1.0, iwae_k: int = 100, num_log_images: int = 64, ema: bool = False,
                 ema_decay: float = 0.999):
        super().__init__(optimizer, scheduler, scheduler_interval="epoch", ema=ema, ema_decay=ema_decay)
        if float(beta) < 0:
            raise GenrunError(f"model.beta={beta}: must be non-negative (1 is the VAE, 0 ignores the KL term)")
        if int(iwae_k) < 0:
            raise GenrunError(f"model.iwae_k={iwae_k}: must be 0 (no IWAE bound) or more")
        self.net = net
        self.beta, self.iwae_k, self.num_log_images = float(beta), int(iwae_k), int(num_log_images)
        self._val_batch: torch.Tensor | None = None
        self._code_sum = self._code_sq = None
        self._code_count = 0
        self.setup_ema()

    def pipeline(self, data_info: dict | None = None):
        from genrun.families.autoencoder import AutoencoderPipeline

        return AutoencoderPipeline({"net": self.averaged("net")}, data_info=data_info)

    def _terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return elbo_terms(self.net, x, self.beta)

    def _step(self, batch, stage: str) -> dict[str, torch.Tensor]:
        x = batch[0]
        terms = self._terms(x)
        scalars = {f"{stage}/{name}": terms[name] for name in ("loss", "recon", "kl", "neg_elbo")}
        self.log_stage(stage, scalars, len(x))
        return terms

    def training_step(self, batch, batch_idx):
        terms = self._step(batch, "train")
        if not self.net.variational:
            self._accumulate_codes(terms["codes"].detach())
        return terms["loss"]

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")
        if batch_idx == 0:
            self._val_batch = batch[0][: min(32, self.num_log_images)]

    # A plain autoencoder has no prior: fit a diagonal Gaussian to its training codes, epoch by epoch.
    def _accumulate_codes(self, codes: torch.Tensor) -> None:
        if self._code_sum is None:
            self._code_sum, self._code_sq = codes.sum(0), codes.pow(2).sum(0)
        else:
            self._code_sum, self._code_sq = self._code_sum + codes.sum(0), self._code_sq + codes.pow(2).sum(0)
        self._code_count += len(codes)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self._code_count:
            mean = self._code_sum / self._code_count
            var = (self._code_sq / self._code_count - mean.pow(2)).clamp_min(1e-8)
            for net in {id(n): n for n in (self.net, self.averaged("net"))}.values():
                net.prior_mean.copy_(mean)
                net.prior_std.copy_(var.sqrt())
            self._code_sum = self._code_sq = None
            self._code_count = 0

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if not self.draws_pictures():
            return
        pipeline = self.pipeline()
        fixed = torch.Generator().manual_seed(0)  # the same latents every time, so progress is comparable
        self.log_images("samples/prior", pipeline.prior_images(self.num_log_images, 1.0, fixed), nrow=8)
        if self._val_batch is not None:
            self.log_images("samples/reconstructions", pipeline.reconstruction_pairs(self._val_batch), nrow=8)
