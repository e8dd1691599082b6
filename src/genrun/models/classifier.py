"""An image classifier trained with Lightning: `genrun train model=classifier dataset=mnist`.

The same network and augmentation as the domain classifier that `genrun evaluate` trains for itself, so a
run of this model can stand in for it (`classifier.ckpt=RUN_DIR`). With `model.adversarial.eps` above 0 it
trains on Goodfellow et al.'s (2015) mixed objective, alpha * clean loss + (1 - alpha) * the loss on the
FGSM images of the current weights, which makes it far harder to fool with FGSM.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genrun.errors import GenrunError
from genrun.evaluation.adversarial import fgsm
from genrun.models.base import GenrunModule
from genrun.nets.classifier import ConvClassifier, random_affine


class ClassifierModule(GenrunModule):
    """Cross-entropy on (optionally) randomly rotated, shifted and scaled images; one-cycle learning rate;
    optionally adversarial training (`adversarial_eps` > 0, in the data's [0, 1] units)."""

    ema_of = "net"

    def __init__(self, net: ConvClassifier, optimizer: Callable, augment: bool = True, one_cycle: bool = True,
                 ema: bool = False, ema_decay: float = 0.999, adversarial_eps: float = 0.0,
                 adversarial_alpha: float = 0.5):
        super().__init__(optimizer, ema=ema, ema_decay=ema_decay)
        if not 0.0 <= float(adversarial_eps) <= 1.0:
            raise GenrunError(f"model.adversarial.eps={adversarial_eps}: must be in [0, 1], the data's pixel range "
                              "(0: no adversarial training)")
        if not 0.0 <= float(adversarial_alpha) <= 1.0:
            raise GenrunError(f"model.adversarial.alpha={adversarial_alpha}: the clean loss's weight, in [0, 1]")
        self.net = net
        self.augment, self.one_cycle = bool(augment), bool(one_cycle)
        self.adversarial_eps, self.adversarial_alpha = float(adversarial_eps), float(adversarial_alpha)
        self.setup_ema()

    def pipeline(self, data_info: dict | None = None):
        from genrun.families.classifier import ClassifierPipeline

        return ClassifierPipeline({"net": self.averaged("net")}, {"adversarial_eps": self.adversarial_eps},
                                  data_info=data_info)

    def _step(self, batch, stage: str) -> torch.Tensor:
        x, y = batch
        if stage == "train" and self.augment:
            x = random_affine(x)
        if stage == "train" and self.adversarial_eps > 0:
            return self._adversarial_step(x, y)
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        if stage == "train":
            self.train_scalars.update(self, {"train/loss": loss, "train/acc": acc}, len(x))
        else:
            self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
            self.log(f"{stage}/acc", acc, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def _adversarial_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Goodfellow et al.'s objective. The FGSM images come from the current weights in eval mode (the attack
        a test meets, with no dropout noise in its gradient) and are a constant of the step. Clean and
        adversarial images then pass as one batch, so that batch norm normalises with statistics of both, as
        its running averages will at test time: in separate passes each adversarial batch normalises its own
        shift away, and the net learns to resist attacks it will not meet (bench/results/fgsm_mnist.md)."""
        training = self.net.training
        self.net.eval()
        adv = fgsm(self.net, x, y, self.adversarial_eps)
        self.net.train(training)
        logits = self.net(torch.cat([x, adv]))
        clean_logits, adv_logits = logits[: len(x)], logits[len(x) :]
        clean_loss, adv_loss = F.cross_entropy(clean_logits, y), F.cross_entropy(adv_logits, y)
        loss = self.adversarial_alpha * clean_loss + (1 - self.adversarial_alpha) * adv_loss
        self.train_scalars.update(self, {"train/loss": loss, "train/acc": (clean_logits.argmax(1) == y).float().mean(),
                                         "train/clean_loss": clean_loss, "train/adv_loss": adv_loss,
                                         "train/adv_acc": (adv_logits.argmax(1) == y).float().mean()}, len(x))
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        if not self.one_cycle:
            return optimizer
        lr = optimizer.param_groups[0]["lr"]
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
