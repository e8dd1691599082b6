"""One sample-quality report for every image model: domain FID, precision/recall, memorization, coverage,
and Inception FID/IS when the weights are on this machine.

Families call `evaluate_images(generate, context)` from their `evaluate`; `generate(n, generator)` returns
n images in [0, 1] shaped like the data (class-conditional models: `generate(n, generator, labels)`). It is
called batch by batch, with n at most `streaming.BATCH`, drawing from the one generator in turn.

Samples are measured as they are drawn and then dropped: what is kept per sample is one distance and, with a
domain classifier, its feature vector (precision/recall compares every sample with every other). An
evaluation whose kept values would not fit in memory, or that is estimated to outlast `max_minutes`, is
refused before the classifier is trained and before the long loop starts.
"""

from __future__ import annotations

import logging
from itertools import chain

import torch

from genrun.budget import Budget, human_duration, human_rate
from genrun.errors import GenrunError
from genrun.evaluation.coverage import class_counts, coverage_of_counts
from genrun.evaluation.domain_classifier import accuracy, domain_classifier, has_classes
from genrun.evaluation.features import DomainFeatureNet, FrozenFeatures
from genrun.evaluation.frechet import FeatureDistances, kid_plan
from genrun.evaluation.inception import SCORE_BYTES_PER_SAMPLE, inception_scorer
from genrun.evaluation.memorization import NearestTraining
from genrun.evaluation.precision_recall import knn_seconds, precision_recall
from genrun.progress import stage, track
from genrun.streaming import BATCH, draw_ahead, steady_heap

log = logging.getLogger(__name__)
NEIGHBOURS_PNG = "nearest_training_images.png"
K_NEAREST = 3


def _draw(generate, n: int, generator: torch.Generator, labels: torch.Tensor | None, shape) -> torch.Tensor:
    fake = generate(n, generator, labels) if labels is not None else generate(n, generator)
    fake = fake.detach().float().cpu()
    if tuple(fake.shape) != (n, *shape):
        raise GenrunError(f"the model generates images of shape {tuple(fake.shape[1:])}, the data has {tuple(shape)}")
    if not torch.isfinite(fake).all():
        raise GenrunError("the model generated non-finite pixel values; it cannot be evaluated")
    return fake.clamp(0, 1)


def _subset(x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    return x[torch.randperm(len(x), generator=generator)[:n]] if n < len(x) else x


def evaluate_images(generate, context, labels: torch.Tensor | None = None, conditional: bool = False
                    ) -> dict[str, float]:
    """Sample-quality metrics of `generate` against the context's data; writes NEIGHBOURS_PNG to out_dir.

    Real images are the test split (held out from training); n real and n fake are in every report.
    A conditional model gets `labels` (default: drawn as often as the training data has each class) and
    is also scored on whether the classifier recognises the class it was asked for.
    """
    settings = context.settings
    n = int(settings.get("num_samples", 1000))
    if n < K_NEAREST + 2:
        raise GenrunError(f"num_samples={n}: sample-quality metrics need at least {K_NEAREST + 2} samples")
    budget = Budget(f"num_samples={n}", settings.get("max_minutes"), "images")
    generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))
    train_x, train_y = (t.cpu() for t in context.load_split("train"))
    test_x, test_y = (t.cpu() for t in context.load_split("test"))
    train_x, test_x = train_x.float(), test_x.float()
    classes = has_classes(context.data_info)
    scorer = inception_scorer(settings.get("inception_weights"), context.device)
    n_real = min(n, len(test_x))
    budget.check_memory(memory_needed(n, n_real, train_x, classes, not isinstance(scorer, str)),
                        "sample features and distances")
    steady_heap()
    nearest = NearestTraining(train_x)
    pool = train_y if conditional and labels is None else None
    stream = _measured_batches(generate, n, generator, labels if conditional else None, pool, train_x.shape[1:],
                               nearest, scorer)
    held, rate = draw_ahead(stream, n, size=lambda item: len(item[0]))
    _check_time(budget, n - sum(len(fake) for fake, _ in held), rate, n_real, n, classes)

    domain = DomainFeatures(context, n) if classes else None
    stage(f"drawing {n:,} samples and measuring each against the {len(train_x):,} training images"
          + (" and in the domain classifier's features" if domain is not None else "") + " ...")
    for fake, fake_labels in chain(held, track(stream, f"evaluating {n:,} samples", total=-(-n // BATCH) - len(held))):
        if domain is not None:
            domain.update(fake, fake_labels)
    real = _subset(test_x, n, generator)
    metrics = {"eval/n_fake": float(n), "eval/n_real": float(len(real)), "eval/n_train": float(len(train_x))}
    metrics |= nearest.metrics(real)
    context.out_dir.mkdir(parents=True, exist_ok=True)
    nearest.grid(context.out_dir / NEIGHBOURS_PNG)
    if domain is not None:
        metrics |= domain.metrics(real, train_x, train_y, test_x, test_y, generator)
    else:
        log.warning("domain FID, precision/recall and coverage skipped: the data has no class labels to train "
                    "a domain classifier on")
    if isinstance(scorer, str):
        log.warning(scorer)
    else:
        stage(f"Inception FID and IS of {n:,} samples against {len(real):,} test images ...")
        scorer.update(real, real=True, description=f"Inception features of {len(real):,} test images")
        metrics |= scorer.compute()
    return metrics


def _measured_batches(generate, n: int, generator: torch.Generator, labels: torch.Tensor | None,
                      label_pool: torch.Tensor | None, shape, nearest: NearestTraining, scorer):
    """(samples, their labels or None) batch by batch, each checked, measured against the training images and
    scored by Inception as it is drawn, so that timing one batch times all the work a sample costs but its
    domain features."""
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        batch_labels = None if labels is None else labels[start : start + count]
        if label_pool is not None:
            batch_labels = label_pool[torch.randint(len(label_pool), (count,), generator=generator)]
        fake = _draw(generate, count, generator, batch_labels, shape)
        nearest.update(fake)
        if not isinstance(scorer, str):
            scorer.update(fake, real=False)
        yield fake, batch_labels


def _recipe_feature_dim() -> int:
    """The feature size of the domain classifier recipe (configs/model/classifier.yaml)."""
    from omegaconf import OmegaConf

    from genrun.configs import config_dir

    return int(OmegaConf.load(config_dir() / "model" / "classifier.yaml").feature_dim)


def memory_needed(n: int, n_real: int, train_x: torch.Tensor, classes: bool, inception: bool) -> int:
    """Bytes an evaluation of n samples holds beyond the data it reads.

    Per sample: its nearest-training distance; with a domain classifier, its features twice (in single
    precision for precision/recall, which compares them all with all, and in double for KID, which keeps them
    for its kernel); with Inception, the logits its score keeps. Fixed: the training images in double precision
    and one batch's distances to them (the nearest-image search), and the features of the real images (for
    precision/recall and KID).
    """
    features = _recipe_feature_dim()
    per_sample = 8 + (12 * features if classes else 0) + (SCORE_BYTES_PER_SAMPLE if inception else 0)
    fixed = 8 * train_x[0].numel() * len(train_x) + 2 * 8 * BATCH * len(train_x)
    if classes:
        fixed += 12 * features * n_real
    return n * per_sample + fixed


def _check_time(budget: Budget, left: int, rate: float | None, n_real: int, n_fake: int, classes: bool) -> None:
    """Refuse when drawing and measuring the samples left, plus precision/recall's all-pairs search, would
    outlast the limit."""
    seconds, parts = 0.0, []
    if rate is not None:
        seconds += left / rate
        parts.append(f"the measured {human_rate(rate)} images/s (drawing, nearest training images)")
    knn = knn_seconds(n_real, n_fake, _recipe_feature_dim()) if classes else 0.0
    if knn:
        seconds += knn
        parts.append(f"~{human_duration(knn)} of precision/recall's nearest-neighbour search")
    if parts:
        budget.check_time(seconds, " plus ".join(parts))


class DomainFeatures:
    """The domain classifier's view of the samples, fed batch by batch: FID and KID (torchmetrics, with the
    classifier as their feature network), the feature vectors for precision/recall, predicted-class counts for
    coverage, and hits for conditional accuracy. The classifier runs once per batch for all of them."""

    def __init__(self, context, n: int):
        self.classifier = domain_classifier(context)
        self.device, self.n = context.device, n
        self.net = DomainFeatureNet(FrozenFeatures(self.classifier.net)).to(self.device)
        seed = int(context.settings.get("seed", 0))
        self.samples = FeatureDistances(self.net, seed).to(self.device)  # test images vs samples
        # Test images vs training images: FID's floor at these n. KID has none to show: it is unbiased (zero in
        # expectation for one distribution), and its kernel over many subsets is the slow part.
        self.floor = FeatureDistances(self.net, seed, kid=False).to(self.device)
        self.num_classes = int(context.data_info["num_classes"])
        self.features: torch.Tensor | None = None
        self.filled, self.hits, self.labelled = 0, 0, 0
        self.counts = torch.zeros(self.num_classes, dtype=torch.long)

    def update(self, fake: torch.Tensor, labels: torch.Tensor | None) -> None:
        fake = fake.to(self.device)
        self.samples.update(fake, real=False)
        feats, logits = self.net.features_and_logits(fake)
        if self.features is None:
            self.features = torch.empty(self.n, feats.shape[1])
        self.features[self.filled : self.filled + len(feats)] = feats.float().cpu()
        self.filled += len(feats)
        predicted = logits.argmax(1).cpu()
        self.counts += class_counts(predicted, self.num_classes)
        if labels is not None:
            self.hits += int((predicted == labels.cpu()).sum())
            self.labelled += len(labels)

    def _feed(self, images: torch.Tensor, what: str, real: bool, into: list[FeatureDistances]) -> torch.Tensor:
        """Features of `images` (float32, CPU), each batch fed to `into` on the way."""
        kept = []
        for start in track(range(0, len(images), BATCH), f"domain features of {len(images):,} {what}"):
            batch = images[start : start + BATCH].to(self.device)
            for distances in into:
                distances.update(batch, real=real)
            kept.append(self.net.features_and_logits(batch)[0].float().cpu())
        return torch.cat(kept)

    def metrics(self, real, train_x, train_y, test_x, test_y, generator) -> dict[str, float]:
        real_f = self._feed(real, "test images", True, [self.samples, self.floor])
        # What a perfect model would score with these n: training images in place of samples.
        self._feed(_subset(train_x, self.n, generator), "training images", False, [self.floor])
        size, subsets = kid_plan(len(real), self.n)
        stage(f"FID, KID ({subsets} subset{'s' * (subsets != 1)} of {size:,}) and precision/recall (k={K_NEAREST}) "
              f"of {self.n:,} samples against {len(real):,} test images ...")
        samples, floor = self.samples.compute(), self.floor.compute()
        metrics = {
            "eval/classifier_test_acc": accuracy(self.classifier.net, test_x, test_y, self.device),
            "eval/classifier_n_test": float(len(test_x)),
            "eval/domain_fid": samples["fid"],
            "eval/domain_fid_train_vs_test": floor["fid"],
            "eval/kid": samples["kid"],
            "eval/kid_std": samples["kid_std"],
            "eval/kid_subset_size": samples["kid_subset_size"],
            "eval/kid_subsets": samples["kid_subsets"],
        }
        pr = precision_recall(real_f, self.features, K_NEAREST)
        metrics |= {f"eval/{k}": v for k, v in pr.items()}
        metrics |= coverage_of_counts(self.counts, train_y, self.num_classes)
        if self.labelled:
            metrics["eval/conditional_acc"] = self.hits / self.labelled
        top = (self.counts.max() / self.counts.sum().clamp_min(1)).item()
        log.info("domain classifier (%s, %s): test accuracy %.4f; the most frequent class holds %.1f%% of samples",
                 self.classifier.origin, self.classifier.path, metrics["eval/classifier_test_acc"], 100 * top)
        return metrics
