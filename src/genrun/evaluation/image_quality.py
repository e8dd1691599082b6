"""One sample-quality report for every image model: domain FID, precision/recall, memorization, coverage,
and Inception FID/IS when the weights are on this machine.

Families call `evaluate_images(generate, context)` from their `evaluate`; `generate(n, generator)` returns
n images in [0, 1] shaped like the data (class-conditional models: `generate(n, generator, labels)`).
"""

from __future__ import annotations

import logging

import torch

from genrun.errors import GenrunError
from genrun.evaluation.coverage import class_distribution, coverage
from genrun.evaluation.domain_classifier import accuracy, domain_classifier, has_classes
from genrun.evaluation.features import FrozenFeatures
from genrun.evaluation.frechet import frechet_distance
from genrun.evaluation.inception import inception_metrics
from genrun.evaluation.memorization import memorization, nearest_neighbour_grid
from genrun.evaluation.precision_recall import precision_recall

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
    generator = torch.Generator().manual_seed(int(settings.get("seed", 0)))
    train_x, train_y = (t.cpu() for t in context.load_split("train"))
    test_x, test_y = (t.cpu() for t in context.load_split("test"))
    train_x, test_x = train_x.float(), test_x.float()
    if conditional and labels is None:
        labels = train_y[torch.randint(len(train_y), (n,), generator=generator)]
    fake = _draw(generate, n, generator, labels if conditional else None, train_x.shape[1:])
    real = _subset(test_x, n, generator)
    metrics = {"eval/n_fake": float(n), "eval/n_real": float(len(real)), "eval/n_train": float(len(train_x))}

    mem, dists, index = memorization(fake, train_x, real)
    metrics |= mem
    context.out_dir.mkdir(parents=True, exist_ok=True)
    nearest_neighbour_grid(fake, train_x, dists, index, context.out_dir / NEIGHBOURS_PNG)

    if has_classes(context.data_info):
        metrics |= _domain_metrics(fake, real, train_x, train_y, test_x, test_y, labels if conditional else None,
                                   context, generator)
    else:
        log.warning("domain FID, precision/recall and coverage skipped: the data has no class labels to train "
                    "a domain classifier on")
    inception = inception_metrics(real, fake, settings.get("inception_weights"), context.device)
    if isinstance(inception, str):
        log.warning(inception)
    else:
        metrics |= inception
    return metrics


def _domain_metrics(fake, real, train_x, train_y, test_x, test_y, labels, context, generator) -> dict[str, float]:
    classifier = domain_classifier(context)
    features = FrozenFeatures(classifier.net)
    device = context.device
    fake_f, fake_logits = features.extract(fake, device)
    real_f, _ = features.extract(real, device)
    # What a perfect model would score with these n: training images in place of samples.
    reference_f, _ = features.extract(_subset(train_x, len(fake), generator), device)
    num_classes = int(context.data_info["num_classes"])
    predicted = fake_logits.argmax(1)
    metrics = {
        "eval/classifier_test_acc": accuracy(classifier.net, test_x, test_y, device),
        "eval/classifier_n_test": float(len(test_x)),
        "eval/domain_fid": frechet_distance(real_f, fake_f),
        "eval/domain_fid_train_vs_test": frechet_distance(real_f, reference_f),
    }
    metrics |= {f"eval/{k}": v for k, v in precision_recall(real_f.float(), fake_f.float(), K_NEAREST).items()}
    metrics |= coverage(predicted, train_y, num_classes)
    if labels is not None:
        metrics["eval/conditional_acc"] = (predicted == labels.cpu()).double().mean().item()
    top = class_distribution(predicted, num_classes).max().item()
    log.info("domain classifier (%s, %s): test accuracy %.4f; the most frequent class holds %.1f%% of samples",
             classifier.origin, classifier.path, metrics["eval/classifier_test_acc"], 100 * top)
    return metrics
