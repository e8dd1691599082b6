"""Inception FID and Inception Score through torchmetrics, when the weights are on this machine.

torchmetrics computes them with torch-fidelity's InceptionV3 (the TensorFlow FID network). genrun never
downloads it: pass `inception_weights=FILE` (or set GENRUN_INCEPTION_WEIGHTS), or leave torch-fidelity's
file in torch hub's cache. Otherwise `inception_scorer` returns a one-line notice instead of a scorer.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from genrun.progress import track

WEIGHTS_ENV = "GENRUN_INCEPTION_WEIGHTS"
WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"  # torch-fidelity's release file name
# What torchmetrics' Inception Score keeps per sample until it computes: one logit per Inception class.
SCORE_BYTES_PER_SAMPLE = 4 * 1008


def find_weights(setting: str | None = None) -> Path | None:
    candidates = [setting, os.environ.get(WEIGHTS_ENV)]
    candidates.append(str(Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE))
    for candidate in candidates:
        if candidate and Path(candidate).expanduser().is_file():
            return Path(candidate).expanduser()
    return None


def _rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    images = images.clamp(0, 1)
    if images.shape[1] == 1:
        images = images.repeat(1, 3, 1, 1)
    return (images * 255).round().to(torch.uint8)


class InceptionScorer:
    """Inception FID and IS fed batch by batch: FID keeps running sums, IS one row of logits per sample."""

    def __init__(self, weights: Path, device, batch_size: int = 100):
        from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
        from torchmetrics.image.inception import InceptionScore

        self.device, self.batch_size = device, batch_size
        self.fid = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(weights)).to(device)
        logits_net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["logits_unbiased"],
                                        feature_extractor_weights_path=str(weights))
        self.score = InceptionScore(feature=logits_net, splits=10).to(device)

    def update(self, images: torch.Tensor, real: bool, description: str | None = None) -> None:
        """Score `images` batch by batch; with a `description`, on a progress bar."""
        starts = range(0, len(images), self.batch_size)
        for start in starts if description is None else track(starts, description):
            batch = _rgb_uint8(images[start : start + self.batch_size]).to(self.device)
            self.fid.update(batch, real=real)
            if not real:
                self.score.update(batch)

    def compute(self) -> dict[str, float]:
        mean, std = self.score.compute()
        return {"eval/inception_fid": float(self.fid.compute()), "eval/inception_score": float(mean),
                "eval/inception_score_std": float(std)}


def inception_scorer(setting: str | None, device) -> InceptionScorer | str:
    """A scorer, or the reason there is none."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        return "Inception FID/IS skipped: torch-fidelity is not installed (pip install torch-fidelity)"
    weights = find_weights(setting)
    if weights is None:
        return (f"Inception FID/IS skipped: no local Inception weights (set inception_weights=FILE or "
                f"{WEIGHTS_ENV} to torch-fidelity's {WEIGHTS_FILE})")
    return InceptionScorer(weights, device)


def inception_metrics(real: torch.Tensor, fake: torch.Tensor, setting: str | None, device,
                      batch_size: int = 100) -> dict[str, float] | str:
    """{'eval/inception_fid', 'eval/inception_score', ...}, or the reason they are missing."""
    scorer = inception_scorer(setting, device)
    if isinstance(scorer, str):
        return scorer
    scorer.batch_size = batch_size
    scorer.update(real, real=True, description=f"Inception features of {len(real):,} real images")
    scorer.update(fake, real=False, description=f"Inception features of {len(fake):,} samples")
    return scorer.compute()
