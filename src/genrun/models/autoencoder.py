"""Autoencoders and (β-)VAEs: ELBO training, IWAE test likelihood, sample and reconstruction grids."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from genrun.errors import GenrunError
from genrun.images import interleave_rows
from genrun.metrics.likelihood import bits_per_dim, elbo_terms, iwae_nll
from genrun.models.lean_module import LeanLightningModule
from genrun.models.optim import build_optimizer
from genrun.models.train_scalars import TrainScalars
from genrun.nets.autoencoder import Autoencoder


class AutoencoderModule(LeanLightningModule):
    """Trains an `Autoencoder` net. β=1 gives the VAE's ELBO, β≠1 the β-VAE, a deterministic net the AE.

    Every loss is per image, in nats: `recon` = −log p(x|z), `kl` = KL(q(z|x) || p(z)),
    `loss` = recon + β·kl, and `neg_elbo` = recon + kl (the bound itself, whatever β).
    """

    family = "autoencoder"

    def __init__(self, net: Autoencoder, optimizer: Callable, scheduler: Callable | None = None,
                 beta: float = 1.0, iwae_k: int = 100, num_log_images: int = 64):
        super().__init__()
        if float(beta) < 0:
            raise GenrunError(f"model.beta={beta}: must be non-negative (1 is the VAE, 0 ignores the KL term)")
        if int(iwae_k) < 0:
            raise GenrunError(f"model.iwae_k={iwae_k}: must be 0 (no IWAE bound) or more")
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.beta, self.iwae_k, self.num_log_images = float(beta), int(iwae_k), int(num_log_images)
        # Fixed noise: the sample grid of every epoch shows the same latents, so progress is comparable.
        self.register_buffer("fixed_noise", torch.randn(self.num_log_images, net.latent_dim,
                                                        generator=torch.Generator().manual_seed(0)),
                             persistent=False)
        self._val_batch: torch.Tensor | None = None
        self._code_sum = self._code_sq = None
        self._code_count = 0
        self.train_scalars = TrainScalars(prog_bar=["train/loss"])

    def inference_net(self) -> Autoencoder:
        """The network that sampling and evaluation use."""
        return self.net

    def _step(self, batch, stage: str) -> dict[str, torch.Tensor]:
        x = batch[0]
        terms = elbo_terms(self.net, x, self.beta)
        scalars = {f"{stage}/{name}": terms[name] for name in ("loss", "recon", "kl", "neg_elbo")}
        if stage == "train":
            self.train_scalars.update(self, scalars, len(x))
        else:
            for name, value in scalars.items():
                self.log(name, value, on_epoch=True, prog_bar=name.endswith("/loss"), batch_size=len(x),
                         sync_dist=True)
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

    def test_step(self, batch, batch_idx):
        x = batch[0]
        terms = self._step(batch, "test")
        if self.net.variational and self.iwae_k > 0:
            nll = iwae_nll(self.net, x, k=self.iwae_k).mean()
            self.log("test/nll_iwae", nll, on_epoch=True, batch_size=len(x), sync_dist=True)
            self.log("test/bits_per_dim", bits_per_dim(nll, math.prod(x.shape[1:])), on_epoch=True,
                     batch_size=len(x), sync_dist=True)
        return terms["loss"]

    # A plain autoencoder has no prior: fit a diagonal Gaussian to its training codes, epoch by epoch.
    def _accumulate_codes(self, codes: torch.Tensor) -> None:
        if self._code_sum is None:
            self._code_sum, self._code_sq = codes.sum(0), codes.pow(2).sum(0)
        else:
            self._code_sum, self._code_sq = self._code_sum + codes.sum(0), self._code_sq + codes.pow(2).sum(0)
        self._code_count += len(codes)

    def on_train_epoch_end(self) -> None:
        self.train_scalars.log_epoch(self)
        if self._code_count:
            mean = self._code_sum / self._code_count
            var = (self._code_sq / self._code_count - mean.pow(2)).clamp_min(1e-8)
            self.net.prior_mean.copy_(mean)
            self.net.prior_std.copy_(var.sqrt())
            self._code_sum = self._code_sq = None
            self._code_count = 0

    @torch.no_grad()
    def sample_images(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None):
        z = self.net.sample_latents(n, temperature, generator)
        return self.net.mean_image(self.net.decode(z))

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or self.trainer.sanity_checking:
            return
        from torchvision.utils import make_grid

        z = self.net.prior_mean + self.net.prior_std * self.fixed_noise
        samples = self.net.mean_image(self.net.decode(z))
        experiment.add_image("samples/prior", make_grid(samples.float().cpu(), nrow=8), self.current_epoch)
        if self._val_batch is not None:
            x = self._val_batch
            mean, _ = self.net.encode(x)
            recon = self.net.mean_image(self.net.decode(mean))
            pairs = interleave_rows(x, recon, nrow=8)
            experiment.add_image("samples/reconstructions", make_grid(pairs.float().cpu(), nrow=8),
                                 self.current_epoch)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.optimizer_factory, self.parameters(), self._trainer)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
