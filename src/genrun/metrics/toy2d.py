"""Exact sample-quality measures for the 2-D toy data, where the true distribution is known.

High quality (VEEGAN, Srivastava et al. 2017): a sample within 3 standard deviations of a mode (for the
continuous kinds, of the noiseless curve). A mode counts as covered when at least a fifth of the samples
it would get under the data distribution land on it with high quality (PacGAN's threshold, Lin et al.
2018), so a handful of stray points does not count as coverage. Continuous kinds are cut into 20 equal
segments of their curve, which then play the role of modes.
"""

from __future__ import annotations

import torch

from genrun.data.toy2d import mode_centres, reference_curve

CURVE_SEGMENTS = 20


def toy_metrics(samples: torch.Tensor, kind: str, std: float) -> dict[str, float]:
    samples = samples.detach().float().cpu()
    centres = mode_centres(kind)
    if centres is not None:
        distance, nearest = torch.cdist(samples, centres).min(1)
        num_modes = len(centres)
    else:
        reference = reference_curve(kind)
        distance, index = torch.cdist(samples, reference).min(1)
        nearest = index * CURVE_SEGMENTS // len(reference)
        num_modes = CURVE_SEGMENTS
    good = distance <= 3 * std
    counts = torch.bincount(nearest[good], minlength=num_modes).float()
    threshold = max(1.0, 0.2 * len(samples) / num_modes)
    share = counts / counts.sum().clamp_min(1)
    kl = (share[share > 0] * (share[share > 0] * num_modes).log()).sum()
    return {
        "toy/modes_covered": float((counts >= threshold).sum()),
        "toy/num_modes": float(num_modes),
        "toy/hq_fraction": float(good.float().mean()),
        "toy/mode_kl": float(kl),
        "toy/n_samples": float(len(samples)),
    }


def scatter_plot(samples: torch.Tensor, data: torch.Tensor, path, title: str = "") -> None:
    """Samples under the data as a PNG: the samples as small translucent orange dots, the data drawn over them
    as tiny translucent dark dots, so thousands of samples cannot hide where the data lies (a mode the samples
    miss shows grey with no orange under it) and the data cannot hide the samples. A legend names both, with
    their counts."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.8), dpi=100)
    ax.scatter(samples[:, 0].cpu(), samples[:, 1].cpu(), s=4, c="tab:orange", alpha=0.4, linewidths=0,
               label=f"samples ({len(samples):,})", zorder=1)
    ax.scatter(data[:, 0].cpu(), data[:, 1].cpu(), s=1, c="black", alpha=0.15, linewidths=0,
               label=f"training data ({len(data):,})", zorder=2)
    ax.set_aspect("equal")
    legend = ax.legend(loc="upper right", markerscale=4, framealpha=0.9)
    for handle in legend.legend_handles:  # the legend's dots opaque, whatever the points' transparency
        handle.set_alpha(1)
    ax.set(xlabel="x1", ylabel="x2")
    if title:
        ax.set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
