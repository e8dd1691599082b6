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
