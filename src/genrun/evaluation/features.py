"""Domain features: a trained classifier's penultimate layer, always computed in eval mode.

Batch norm in train mode would make each image's features depend on the rest of its batch (and dropout
would make them random), so FID would change with the batch size: the wrapper refuses train mode.
"""

from __future__ import annotations

import torch
from torch import nn

from genrun.nets.classifier import ConvClassifier


class FrozenFeatures(nn.Module):
    """Wraps a classifier: no gradients, and `train()` leaves it in eval mode."""

    def __init__(self, classifier: ConvClassifier):
        super().__init__()
        self.classifier = classifier
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FrozenFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, class logits) of images in [0, 1]."""
        feats = self.classifier.features(x)
        return feats, self.classifier.head(feats)

    @torch.no_grad()
    def extract(self, images: torch.Tensor, device: torch.device | str = "cpu", batch_size: int = 500
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of many images, batch by batch, returned on the CPU in float64."""
        self.to(device)
        feats, logits = [], []
        for start in range(0, len(images), batch_size):
            f, lg = self(images[start : start + batch_size].to(device).float())
            feats.append(f.double().cpu())
            logits.append(lg.double().cpu())
        return torch.cat(feats), torch.cat(logits)


class DomainFeatureNet(nn.Module):
    """The domain features as torchmetrics' FID and KID take them: images in, float64 features out.

    Several metrics read each batch (FID, KID, precision/recall, coverage): the last batch's features and
    logits are kept, so the classifier runs once per batch however many metrics ask.
    """

    def __init__(self, frozen: FrozenFeatures):
        super().__init__()
        self.frozen = frozen
        self.num_features = frozen.classifier.feature_dim  # torchmetrics reads it instead of a dummy forward
        self._last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def train(self, mode: bool = True) -> DomainFeatureNet:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._last is None or self._last[0] is not images:
            feats, logits = self.frozen(images.float())
            self._last = (images, feats.double(), logits)
        return self._last[1], self._last[2]
