"""The sample-quality metrics discriminate: real vs noise, copies vs fresh samples, one class vs all."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genrun.data.mnist import MNISTDataModule
from genrun.errors import GenrunError
from genrun.evaluation.domain_classifier import domain_classifier
from genrun.evaluation.features import DomainFeatureNet, FrozenFeatures
from genrun.evaluation.frechet import FeatureDistances, feature_distances, frechet_distance, kid_plan
from genrun.evaluation.image_quality import NEIGHBOURS_PNG, evaluate_images
from genrun.evaluation.inception import inception_metrics
from genrun.evaluation.precision_recall import precision_recall
from genrun.families.base import EvalContext


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The bundled MNIST digits as `genrun` splits them (test = the 500 validation digits), training split
    cut to 2,000 to keep the tests quick."""
    data = MNISTDataModule(data_dir=str(tmp_path_factory.mktemp("data")), source="mini")
    info, splits = data.info(), dict(data.splits)
    splits["train"] = tuple(t[:2000] for t in splits["train"])
    return info, splits


@pytest.fixture(scope="module")
def classifier_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("classifiers")


def make_context(digits, out_dir, cache, **settings) -> EvalContext:
    info, splits = digits
    base = {"num_samples": 300, "seed": 0, "classifier_dir": str(cache), "classifier_epochs": 3}
    return EvalContext(out_dir=out_dir, device=torch.device("cpu"), data_info=info, load_split=splits.__getitem__,
                       settings=base | settings)


@pytest.fixture(scope="module")
def features(digits, classifier_cache, tmp_path_factory):
    """The domain feature network, trained for three quick epochs (enough to separate digits from noise)."""
    context = make_context(digits, tmp_path_factory.mktemp("eval"), classifier_cache)
    classifier = domain_classifier(context)
    assert classifier.origin == "trained" and classifier.path.is_file()
    assert domain_classifier(context).origin == "cached"  # trained once per dataset
    return FrozenFeatures(classifier.net)


def test_frechet_distance_of_gaussians_matches_closed_form():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(20000, 4, generator=g), torch.randn(20000, 4, generator=g)
    assert frechet_distance(a, b) < 0.01
    shifted = b + torch.tensor([3.0, 0, 0, 0])  # ||mu||^2 = 9, equal covariances
    assert frechet_distance(a, shifted) == pytest.approx(9.0, abs=0.1)
    scaled = b * 2  # Tr(I + 4I - 2*2I) = 4 * 1
    assert frechet_distance(a, scaled) == pytest.approx(4.0, abs=0.15)


def eigen_frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance as genrun computed it before torchmetrics, by an independent route: two-pass
    covariances in float64 and Tr (S_a S_b)^(1/2) as the trace of the symmetric (S_a^(1/2) S_b S_a^(1/2))^(1/2)."""
    a, b = a.double().numpy(), b.double().numpy()
    sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sigma_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ sigma_b @ root_a)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.sqrt(inner.clip(min=0)).sum())


def test_torchmetrics_fid_on_domain_features_matches_the_eigen_formula(digits, features):
    _info, splits = digits
    train, test = splits["train"][0][:1000], splits["test"][0]
    train_f, _ = features.extract(train)
    test_f, _ = features.extract(test)
    expected = eigen_frechet(test_f, train_f)
    assert frechet_distance(test_f, train_f) == pytest.approx(expected, rel=1e-8)
    # The evaluation's path: images batch by batch through the classifier, which runs once per batch for FID,
    # KID and the features precision/recall reads.
    net = DomainFeatureNet(features)
    calls = []
    net.frozen.classifier.body.register_forward_hook(lambda *_: calls.append(1))
    distances = FeatureDistances(net)
    for start in range(0, len(train), 300):
        batch = train[start : start + 300]
        distances.update(batch, real=False)
        assert torch.equal(net.features_and_logits(batch)[0], features(batch)[0].double())
    distances.update(test, real=True)
    assert len(calls) == 4 + 1 + 4  # the hook also saw the check's own forward passes
    measured = distances.compute()
    assert measured["fid"] == pytest.approx(expected, rel=1e-8), (measured, expected)
    assert measured["kid_subset_size"] == 500 and measured["kid_subsets"] == 100


def test_kid_is_near_zero_for_one_distribution_and_plans_its_subsets():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 16, generator=g), torch.randn(1200, 16, generator=g)
    same, shifted = feature_distances(a, b), feature_distances(a, b + 1.0)
    assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3 and same["kid_subset_size"] == 1000
    assert shifted["kid"] > 100 * abs(same["kid"]) and shifted["kid"] > 10 * shifted["kid_std"]
    assert feature_distances(a, b) == same  # the subsets are drawn from the seed
    assert kid_plan(300, 300) == (300, 1)  # one subset holding every sample: repeating it adds nothing
    assert kid_plan(500, 1000) == (500, 100) and kid_plan(20000, 5000) == (1000, 100)


def test_domain_fid_small_between_halves_of_real_data_and_large_against_noise(digits, features):
    _info, splits = digits
    x = splits["train"][0]
    half = 1000
    first, _ = features.extract(x[:half])
    second, _ = features.extract(x[half : 2 * half])
    noise, _ = features.extract(torch.rand(half, *x.shape[1:], generator=torch.Generator().manual_seed(1)))
    real_vs_real = frechet_distance(first, second)
    real_vs_noise = frechet_distance(first, noise)
    assert real_vs_noise > 20 * real_vs_real, (real_vs_real, real_vs_noise)


def test_feature_network_stays_in_eval_mode(digits, features):
    assert not features.training and not features.classifier.training
    features.train()  # as a Lightning loop or a careless caller would
    assert not any(m.training for m in features.modules())
    assert not any(p.requires_grad for p in features.parameters())
    # In eval mode batch norm uses its running statistics: an image's features do not depend on its batch.
    x = digits[1]["test"][0][:64]
    alone, _ = features.extract(x[:1])
    in_batch, _ = features.extract(x, batch_size=64)
    torch.testing.assert_close(alone[0], in_batch[0], rtol=1e-4, atol=1e-5)


def test_precision_recall_sanity():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(600, 8, generator=g)
    same = torch.randn(600, 8, generator=g)
    pr = precision_recall(real, same)
    assert pr["precision"] > 0.8 and pr["recall"] > 0.8
    far = precision_recall(real, same + 20)
    assert far["precision"] == 0 and far["recall"] == 0
    # All samples at one point of the data: perfect quality, no diversity.
    collapsed = real[:1].repeat(600, 1) + 1e-3 * torch.randn(600, 8, generator=g)
    pr = precision_recall(real, collapsed)
    assert pr["precision"] == 1.0 and pr["recall"] < 0.05


def test_a_generator_repeating_one_training_image_is_flagged(digits, features, classifier_cache, tmp_path):
    _info, splits = digits
    train_x, test_x = splits["train"][0], splits["test"][0]

    def copier(n, generator):
        return train_x[7:8].repeat(n, 1, 1, 1)

    def fresh(n, generator):  # unseen real digits: what a model that generalises would draw
        return test_x[torch.randint(len(test_x), (n,), generator=generator)]

    copied = evaluate_images(copier, make_context(digits, tmp_path / "copy", classifier_cache))
    honest = evaluate_images(fresh, make_context(digits, tmp_path / "fresh", classifier_cache))
    assert copied["eval/memorization_flag"] == 1.0 and copied["eval/near_copy_fraction"] == 1.0
    assert copied["eval/memorization_ratio"] < 0.01
    assert honest["eval/memorization_flag"] == 0.0 and 0.7 < honest["eval/memorization_ratio"] < 1.3
    assert copied["eval/classes_covered"] == 1 and honest["eval/classes_covered"] == 10, (copied, honest)
    assert copied["eval/coverage_kl"] > 1.5 > 0.1 > honest["eval/coverage_kl"]  # log(10) = 2.3 for one class
    assert copied["eval/domain_fid"] > 10 * honest["eval/domain_fid"]
    assert copied["eval/recall"] < 0.05 < 0.5 < honest["eval/recall"]
    assert copied["eval/kid"] > 10 * max(honest["eval/kid"], 1e-3)
    for metrics in (copied, honest):
        assert metrics["eval/n_fake"] == 300 and metrics["eval/n_real"] == 300 and metrics["eval/n_train"] == 2000
        assert math.isfinite(metrics["eval/domain_fid_train_vs_test"])
        assert math.isfinite(metrics["eval/kid"]) and metrics["eval/kid_std"] == 0
        assert metrics["eval/kid_subset_size"] == 300 and metrics["eval/kid_subsets"] == 1
        assert 0.5 < metrics["eval/classifier_test_acc"] <= 1
        assert sum(metrics[f"eval/class_fraction/{k}"] for k in range(10)) == pytest.approx(1.0)
    assert (tmp_path / "copy" / NEIGHBOURS_PNG).is_file()


def test_conditional_accuracy_tells_obeying_from_ignoring_labels(digits, features, classifier_cache, tmp_path):
    _info, splits = digits
    train_x, train_y = splits["train"]
    by_class = [train_x[train_y == k] for k in range(10)]

    def obeys(n, generator, labels):
        return torch.stack([by_class[int(k)][torch.randint(len(by_class[int(k)]), (1,), generator=generator)][0]
                            for k in labels])

    def ignores(n, generator, labels):
        return by_class[3][:n] if n <= len(by_class[3]) else by_class[3][torch.arange(n) % len(by_class[3])]

    good = evaluate_images(obeys, make_context(digits, tmp_path / "a", classifier_cache), conditional=True)
    bad = evaluate_images(ignores, make_context(digits, tmp_path / "b", classifier_cache), conditional=True)
    assert good["eval/conditional_acc"] > 0.7 and bad["eval/conditional_acc"] < 0.3


def test_wrong_image_shape_is_a_user_error(digits, features, classifier_cache, tmp_path):
    with pytest.raises(GenrunError, match="shape"):
        evaluate_images(lambda n, g: torch.rand(n, 3, 32, 32), make_context(digits, tmp_path, classifier_cache))


def test_inception_metrics_give_a_notice_without_local_weights(monkeypatch, tmp_path):
    monkeypatch.delenv("GENRUN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    images = torch.rand(8, 1, 28, 28)
    notice = inception_metrics(images, images, None, "cpu")
    assert isinstance(notice, str) and "\n" not in notice and notice.startswith("Inception FID/IS skipped")


def test_a_missing_or_foreign_classifier_checkpoint_is_a_user_error(digits, classifier_cache, tmp_path):
    with pytest.raises(GenrunError, match=r"^classifier\.ckpt=nowhere"):
        domain_classifier(make_context(digits, tmp_path, classifier_cache, classifier_ckpt="nowhere"))
    foreign = Path(__file__).parent / "data" / "format1" / "vae.ckpt"  # a real autoencoder checkpoint
    with pytest.raises(GenrunError, match="not a model=classifier checkpoint .its pipeline is AutoencoderPipeline"):
        domain_classifier(make_context(digits, tmp_path, classifier_cache, classifier_ckpt=str(foreign)))
