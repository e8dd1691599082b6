"""Gated PixelCNN training: maximum likelihood, the cross-entropy of every position's grey level given the
positions before it. `train/loss` and `val/loss` are in nats per dimension (the mean over positions, so the
learning rate does not depend on the image size); each validation also logs the exact NLL in nats per image
(`val/nll`) and bits per dimension (`val/bits_per_dim`).

`binarize=true` models two levels and draws each training pixel afresh as Bernoulli(intensity) every time it
is seen (dynamic binarization, the setting of the binarized-MNIST literature); validation images are
binarized with a seed fixed per batch, so the curve follows the model and not the draw.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from genrun.errors import GenrunError
from genrun.families.pixelcnn import PixelCNNPipeline, check_images, to_levels
from genrun.metrics.likelihood import LOG_2
from genrun.models.base import GenrunModule
from genrun.nets.pixelcnn import GatedPixelCNN


class PixelCNNModule(GenrunModule):
    ema_of = "net"
    compiled_step = "_nll"

    def __init__(self, net: Callable[..., GatedPixelCNN], optimizer: Callable, image_size: int,
                 scheduler: Callable | None = None, levels: int = 256, binarize: bool = False,
                 num_log_images: int = 8, ema: bool = False, ema_decay: float = 0.999):
        super().__init__(optimizer, scheduler, scheduler_interval="step", ema=ema, ema_decay=ema_decay)
        if image_size is None:
            raise GenrunError("model=pixelcnn needs images (dataset.channels and dataset.image_size); this dataset "
                              "has none: use mnist, fashion_mnist or image_folder")
        if int(levels) < 2:
            raise GenrunError(f"model.levels={levels}: must be at least 2")
        if int(num_log_images) < 0:
            raise GenrunError(f"model.num_log_images={num_log_images}: must be 0 (none) or more")
        self.binarize = bool(binarize)
        # The net is given unbuilt (a partial): binarize decides how many levels it models.
        self.net = net if isinstance(net, GatedPixelCNN) else net(levels=2 if self.binarize else int(levels))
        if self.binarize and self.net.levels != 2:
            raise GenrunError(f"model.binarize=true models 2 levels; the net given models {self.net.levels}")
        self.settings = {"image_size": int(image_size), "binarize": self.binarize}
        self.num_log_images = int(num_log_images)
        self.setup_ema()

    def pipeline(self, data_info: dict | None = None) -> PixelCNNPipeline:
        return PixelCNNPipeline({"net": self.averaged("net")}, self.settings, data_info)

    def on_fit_start(self) -> None:
        from genrun.data.lightning import dataset_of

        data = dataset_of(getattr(self.trainer, "datamodule", None))
        splits = getattr(data, "splits", None)
        if splits is not None:
            check_images(self.net, splits["train"][0][:1], self.settings["image_size"], "the training data")

    def _grid(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return to_levels(x, self.net.levels, self.binarize, generator)

    def _nll(self, grid: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy per position, in nats."""
        logits = self.net(grid, labels.long() if self.net.num_classes else None)
        return F.cross_entropy(logits.float(), grid)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self._nll(self._grid(x), y)
        self.train_scalars.update(self, {"train/loss": loss, "train/bits_per_dim": loss / LOG_2}, len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        generator = torch.Generator(device=x.device).manual_seed(batch_idx) if self.binarize else None
        grid = self._grid(x, generator)
        loss = self._nll(grid, y)
        dims = grid[0].numel()
        for name, value in (("val/loss", loss), ("val/nll", loss * dims), ("val/bits_per_dim", loss / LOG_2)):
            self.log(name, value, on_epoch=True, prog_bar=name != "val/nll", batch_size=len(x), sync_dist=True)

    @torch.no_grad()
    def on_validation_epoch_end(self) -> None:
        if not self.num_log_images or not self.draws_pictures():
            return
        pipeline = self.pipeline()
        classes = self.net.num_classes
        labels = torch.arange(self.num_log_images) % classes if classes else None
        images = pipeline.images(self.num_log_images, generator=torch.Generator().manual_seed(0), labels=labels)
        self.log_images("samples/temperature_1", images, nrow=classes if classes else None)
