"""VQ-VAE training: reconstruction + beta · commitment (+ the codebook loss when the codebook is not learnt by
moving averages), with the codebook's health logged beside the loss.

Logged: `recon` (per pixel: binary cross-entropy for bernoulli pixels, squared error for gaussian),
`commitment`, `loss`; per epoch from the histogram of every code chosen in it, `perplexity` (exp of the
codes' entropy: K when all are used equally) and `codes_used` (the fraction of the codebook chosen at least
once), for the training and the validation split.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genrun.errors import GenrunError
from genrun.models.base import GenrunModule
from genrun.nets.vq import VQVAE, fraction_used, perplexity


class VQVAEModule(GenrunModule):
    def __init__(self, net: VQVAE, optimizer: Callable, scheduler: Callable | None = None, beta: float = 0.25,
                 num_log_images: int = 32):
        super().__init__(optimizer, scheduler, scheduler_interval="epoch")
        if float(beta) < 0:
            raise GenrunError(f"model.beta={beta}: the commitment weight must be non-negative (the paper's 0.25)")
        self.net, self.beta, self.num_log_images = net, float(beta), int(num_log_images)
        self._counts = {"train": None, "val": None}
        self._val_batch: torch.Tensor | None = None

    def pipeline(self, data_info: dict | None = None):
        from genrun.families.vqvae import VQVAEPipeline

        return VQVAEPipeline({"net": self.net}, data_info=data_info)

    def _step(self, x: torch.Tensor, stage: str) -> torch.Tensor:
        decoded, q = self.net(x)
        recon = self.net.recon_loss(x, decoded).mean()
        loss = recon + self.beta * q.commitment + q.codebook_loss
        counts = self._counts[stage]
        self._counts[stage] = q.counts.detach() if counts is None else counts + q.counts.detach()
        scalars = {f"{stage}/loss": loss, f"{stage}/recon": recon, f"{stage}/commitment": q.commitment}
        self.log_stage(stage, scalars, len(x))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch[0], "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch[0], "val")
        if batch_idx == 0:
            self._val_batch = batch[0][: self.num_log_images]

    def _log_codebook(self, stage: str) -> None:
        counts = self._counts[stage]
        self._counts[stage] = None
        if counts is None:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        self.log(f"{stage}/perplexity", perplexity(counts))
        self.log(f"{stage}/codes_used", fraction_used(counts))

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self._log_codebook("train")

    def on_validation_epoch_start(self) -> None:
        self._counts["val"] = None

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self._counts["val"] = None
            return
        self._log_codebook("val")
        if self._val_batch is not None and self.draws_pictures():
            self.log_images("samples/reconstructions", self.pipeline().reconstruction_pairs(self._val_batch), nrow=8)
