"""Which metrics a person reads first, and which are bookkeeping.

Summaries and `genrun report` lead with the figures that judge a model (sample quality, likelihood,
held-out loss) in the order below; constants of the evaluation itself (how many images, the IWAE k, each
class's share of the samples) go to metrics.json only. One list for every family: their metric names do
not overlap, so a family's headline is whatever of this list it logs.
"""

from __future__ import annotations

import re

# The order a person reads them in: sample quality, then likelihood, then held-out losses.
HEADLINE_ORDER = (
    "eval/domain_fid", "eval/kid", "eval/inception_fid", "eval/precision", "eval/recall",
    "eval/conditional_acc", "eval/near_copy_fraction", "eval/coverage_kl", "eval/inception_score",
    "toy/modes_covered", "toy/hq_fraction", "toy/mode_kl",
    "test/fid", "test/kid", "test/precision", "test/recall",
    "test/nll_iwae", "test/bits_per_dim", "test/vlb_bits_per_dim", "test/bits_per_char", "test/bits_per_byte",
    "test/perplexity",
    "test/acc", "test/denoising_mse", "test/swd", "test/loss",
    "val/fid", "val/kid", "val/perplexity", "val/swd", "val/acc", "val/loss",
)

# Bookkeeping: counts and settings of the measurement, not results.
_CONSTANT = re.compile(
    r"(^|/)(iwae_k|n_images|n_fake|n_real|n_train|n_test|num_classes|swd_n|tokens|classifier_n_test"
    r"|kid_subset_size|kid_subsets|num_modes|n_samples|vlb_images)$|/class_fraction/"
)


def is_constant(name: str) -> bool:
    """Whether `name` records how a measurement was made (a count, a setting) rather than a result."""
    return bool(_CONSTANT.search(name))


def headline(names) -> list[str]:
    """The names among `names` that lead a summary, in reading order."""
    present = set(names)
    return [name for name in HEADLINE_ORDER if name in present]


def reading_order(names) -> list[str]:
    """Every non-constant name: the headline first, then the rest by split (test, val, eval, train) and name."""
    lead = headline(names)
    rank = {"test": 0, "val": 1, "eval": 2, "train": 3}
    rest = sorted((n for n in set(names) if n not in lead and not is_constant(n)),
                  key=lambda n: (rank.get(n.split("/", 1)[0], 4), n))
    return [*lead, *rest]
