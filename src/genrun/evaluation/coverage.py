"""Mode coverage: the classes the domain classifier sees in the samples, against the data's labels."""

from __future__ import annotations

import torch

# A class counts as covered when it gets at least this share of its expected number of samples.
COVERED_SHARE = 0.1
EPS = 1e-6


def class_distribution(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.bincount(labels.long().cpu(), minlength=num_classes)[:num_classes].double()
    return counts / counts.sum().clamp_min(1)


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """KL(p || q) in nats, both smoothed by EPS so that a class missing from q stays finite."""
    p, q = (p + EPS) / (p + EPS).sum(), (q + EPS) / (q + EPS).sum()
    return float((p * (p / q).log()).sum())


def class_counts(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """How often each class occurs in `labels`: what coverage needs of a batch of samples."""
    return torch.bincount(labels.long().cpu(), minlength=num_classes)[:num_classes]


def coverage(predicted: torch.Tensor, data_labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """KL(predicted classes of the samples || labels of the training data), classes covered, the histogram."""
    return coverage_of_counts(class_counts(predicted, num_classes), data_labels, num_classes)


def coverage_of_counts(counts: torch.Tensor, data_labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """`coverage` from the samples' predicted-class counts, summed over batches."""
    p_fake = counts.double() / counts.sum().clamp_min(1)
    p_data = class_distribution(data_labels, num_classes)
    covered = int((p_fake >= COVERED_SHARE * p_data).logical_and(p_data > 0).sum())
    metrics = {"eval/coverage_kl": kl_divergence(p_fake, p_data), "eval/classes_covered": float(covered),
               "eval/num_classes": float(num_classes)}
    metrics |= {f"eval/class_fraction/{k}": float(p_fake[k]) for k in range(num_classes)}
    return metrics
