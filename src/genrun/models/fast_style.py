"""Fast style transfer (Johnson et al. 2016): a feed-forward net trained with Gatys et al.'s perceptual loss.

`genrun train model=fast_style model.style=FILE dataset=image_folder dataset.path=DIR` (offline:
dataset=photo_crops) trains a TransformerNet so that its output keeps each content image's VGG19 features
and takes the style image's Gram matrices; `genrun sample model=fast_style image=FILE` then stylises in one
forward pass. The frozen feature net is rebuilt from the config (it is not part of the checkpoint: the
stylizer alone is what sampling needs); which net it was is recorded with the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from genrun.data import photos
from genrun.families.style import FastStylePipeline, PerceptualLoss
from genrun.models.base import GenrunModule
from genrun.nets.feature_nets import vgg19_features
from genrun.nets.transformer_net import TransformerNet


class FastStyleModule(GenrunModule):
    """Perceptual loss of TransformerNet(x) against x (content) and the style image (Gram matrices)."""

    def __init__(self, transformer: TransformerNet, optimizer: Callable, style: str | None = None,
                 style_size: int = 256, weights: str = "auto", feature_width: float = 1.0, pooling: str = "avg",
                 content_weight: float = 1.0, style_weight: float = 5.0, tv_weight: float = 0.01,
                 style_layers: dict | None = None, content_layer: str | None = None, seed: int = 0):
        super().__init__(optimizer, prog_bar=("train/loss", "train/style"))
        self.transformer = transformer
        self.style_image, self.style_name = photos.load_photo(style, "model.style", "flower", int(style_size))
        net = vgg19_features(str(weights), str(pooling), float(feature_width), int(seed), "model.feature_width")
        style_layers = dict(style_layers) if style_layers else None
        # Not a submodule: the frozen VGG stays out of the checkpoint (sampling needs the stylizer alone).
        self.__dict__["perceptual"] = PerceptualLoss(net, style_layers, content_layer, content_weight,
                                                     style_weight, tv_weight)
        self.feature_source = net.source

    def on_fit_start(self) -> None:
        self.perceptual.to(self.device)
        self.perceptual.set_style([self.style_image[None].to(self.device)], [1.0])

    def _step(self, batch, stage: str) -> torch.Tensor:
        x = batch[0].float()
        terms = self.perceptual(self.transformer(x), self.perceptual.content_target(x))
        if stage == "train":
            self.train_scalars.update(self, {f"train/{k}": v for k, v in terms.items()}, len(x))
        else:
            for key, value in terms.items():
                self.log(f"{stage}/{key}", value, on_epoch=True, prog_bar=key == "loss", batch_size=len(x),
                         sync_dist=True)
        return terms["loss"]

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def pipeline(self, data_info: dict | None = None):
        return FastStylePipeline({"transformer": self.transformer},
                                 settings={"style": self.style_name, "feature_network": self.feature_source},
                                 data_info=data_info)
