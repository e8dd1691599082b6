"""Adversarial examples: FGSM is the closed-form step on a linear model, attacks lower accuracy more as eps grows,
targeted attacks pull towards the target, PGD stays in its ball, adversarial training makes FGSM fail, and
`genrun evaluate attack=...` writes its table, plot and picture or refuses bad input in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import genrun_in_process, read_metrics
from genrun.data.base import InMemoryDataModule
from genrun.data.mnist import MNISTDataModule
from genrun.errors import GenrunError
from genrun.evaluation.adversarial import AttackSpec, fgsm, iterative, perturb, run_attack
from genrun.evaluation.domain_classifier import domain_classifier, model_config
from genrun.families.base import EvalContext

FORMAT1 = Path(__file__).parent / "data" / "format1"
EPS = (0.05, 0.1, 0.2, 0.3)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The bundled digits (test = the 500 validation digits), training cut to 2,000 to keep the tests quick."""
    data_dir = tmp_path_factory.mktemp("data")
    data = MNISTDataModule(data_dir=str(data_dir), source="mini")
    info, splits = data.info(), dict(data.splits)
    splits["train"] = tuple(t[:2000] for t in splits["train"])
    config = {"_target_": "genrun.data.mnist.MNISTDataModule", "source": "mini", "data_dir": str(data_dir),
              "batch_size": 128, "val_fraction": 0.1, "split_seed": 0, "binarize": False}
    return info, splits, config


@pytest.fixture(scope="module")
def classifier(digits, tmp_path_factory):
    """genrun's classifier recipe trained for two epochs by the real Trainer, saved as a classifier checkpoint."""
    info, splits, config = digits
    context = EvalContext(out_dir=tmp_path_factory.mktemp("eval"), device=torch.device("cpu"), data_info=info,
                          load_split=splits.__getitem__,
                          settings={"classifier_dir": str(tmp_path_factory.mktemp("cache")), "classifier_epochs": 2,
                                    "dataset_config": config})
    return domain_classifier(context)


def linear_pair(w: torch.Tensor) -> nn.Linear:
    """Two-class logistic regression: logits (w.x, -w.x)."""
    model = nn.Linear(len(w), 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.stack([w, -w]))
    return model


def test_fgsm_on_a_linear_model_is_the_closed_form_eps_sign_w_step():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, generator=g)
    model = linear_pair(w)
    x = torch.rand(6, 50, generator=g)  # some pixels near 0 or 1: the step is clamped there
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    # The loss of class 1 grows along +w (its logit is -w.x); of class 0 along -w.
    away = torch.where(y[:, None] == 1, 1.0, -1.0) * w.sign()
    for eps in (0.0, 0.1, 0.25):
        expected = (x + eps * away).clamp(0, 1)
        assert torch.equal(fgsm(model, x, y, eps), expected)
    assert fgsm(model, x, y, 0.25).sub(x).abs().max() <= 0.25 + 1e-7
    # Targeted at class 0: every image moves along +w, raising w.x (class 0's logit), whatever its label.
    assert torch.equal(fgsm(model, x, y, 0.25, target=0), (x + 0.25 * w.sign()).clamp(0, 1))


def test_accuracy_under_attack_never_exceeds_clean_and_falls_as_eps_grows(classifier, digits):
    _info, splits, _config = digits
    x, y = (t[:250] for t in splits["test"])
    fgsm_report = run_attack(classifier.net, x, y, AttackSpec("fgsm", EPS), "cpu", batch_size=125)
    bim_report = run_attack(classifier.net, x, y, AttackSpec("bim", EPS, steps=3), "cpu", batch_size=125)
    assert fgsm_report.clean_accuracy > 0.85  # a classifier worth attacking
    for report in (fgsm_report, bim_report):
        accuracy = [report.clean_accuracy, *(row.accuracy for row in report.rows)]
        assert all(later <= earlier for earlier, later in zip(accuracy, accuracy[1:], strict=False)), accuracy
        assert accuracy[-1] < accuracy[0] - 0.3, accuracy
    # The iterated attack is the stronger one at every budget.
    for one_step, iterated in zip(fgsm_report.rows, bim_report.rows, strict=True):
        assert iterated.accuracy <= one_step.accuracy, (one_step, iterated)
    metrics = fgsm_report.metrics()
    assert metrics["test/fgsm/acc_eps0.3"] == fgsm_report.rows[-1].accuracy and metrics["test/fgsm/n_images"] == 250


def test_a_targeted_attack_raises_the_targets_probability(classifier, digits):
    _info, splits, _config = digits
    x, y = splits["test"]
    x, y = x[y != 3][:150], y[y != 3][:150]
    net = classifier.net.eval()
    with torch.no_grad():
        before = net(x).softmax(1)[:, 3]
        after = net(fgsm(net, x, y, 0.2, target=3)).softmax(1)[:, 3]
    assert after.mean() > before.mean() + 0.1 and (after > before).float().mean() > 0.9
    report = run_attack(net, x, y, AttackSpec("pgd", (0.1, 0.3), target=3, steps=5), "cpu")
    assert report.rows[1].target_rate > 0.5 and report.rows[1].target_rate > report.rows[0].target_rate
    assert set(report.metrics()) >= {"test/pgd_target3/target_rate_eps0.3", "test/pgd_target3/acc_eps0.1"}


def test_pgd_stays_in_the_eps_ball_and_the_pixel_range(classifier, digits):
    _info, splits, _config = digits
    x, y = splits["test"][0][:32], splits["test"][1][:32]  # MNIST: most pixels exactly 0, many near 1
    net = classifier.net.eval()
    for seed in (0, 1):
        adv = iterative(net, x, y, 0.1, steps=5, step_size=0.08, random_start=True,
                        generator=torch.Generator().manual_seed(seed))
        assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        assert (adv - x).abs().max() > 0.09  # it does move, to the ball's surface
    first, second = (perturb(net, x, y, "pgd", 0.1, steps=2, generator=torch.Generator().manual_seed(s))
                     for s in (0, 1))
    assert not torch.equal(first, second)  # a random start
    assert torch.equal(perturb(net, x, y, "bim", 0.1, steps=2), perturb(net, x, y, "bim", 0.1, steps=2))  # none


class _Digits(InMemoryDataModule):
    def __init__(self, x, y):
        super().__init__(batch_size=128, shuffle_seed=0)
        self.tensors = (x, y)

    def load(self):
        x, y = self.tensors
        return {"train": (x, y), "val": (x[:0], y[:0]), "test": (x[:0], y[:0])}


def test_adversarial_training_runs_through_the_real_trainer_and_resists_fgsm(classifier, digits):
    import lightning as L

    from genrun.data.lightning import LightningData
    from genrun.trust import build_stored

    info, splits, _config = digits
    module_config = model_config(info)["module"] | {"adversarial_eps": 0.25}
    L.seed_everything(0, verbose=False)
    module = build_stored(module_config, "test", "model.module")
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        num_sanity_val_steps=0)
    trainer.fit(module, datamodule=LightningData(_Digits(*splits["train"])))
    assert {"train/adv_loss", "train/adv_acc", "train/clean_loss"} <= set(trainer.callback_metrics)
    assert module.pipeline().settings == {"adversarial_eps": 0.25}  # recorded in the checkpoint
    x, y = (t[:250] for t in splits["test"])
    spec = AttackSpec("fgsm", (0.25,))
    robust = run_attack(module.net, x, y, spec, "cpu")
    plain = run_attack(classifier.net, x, y, spec, "cpu")  # same recipe, images and epochs, clean objective
    assert robust.clean_accuracy > 0.8
    assert robust.rows[0].accuracy > plain.rows[0].accuracy + 0.2, (robust, plain)


def test_genrun_evaluate_attack_writes_table_plot_picture_and_metrics(tmp_path, monkeypatch, capsys):
    """On a small checkpoint of the previous format (no adversarial setting recorded: trained on clean images)."""
    code, out, err = genrun_in_process(["evaluate", f"ckpt={FORMAT1 / 'classifier.ckpt'}", "attack=fgsm",
                                        "eps=[0.1,0.3]", "attack_images=200"], tmp_path, monkeypatch, capsys)
    assert code == 0, err
    (run,) = (tmp_path / "outputs" / "evaluate").glob("*/*")
    metrics = read_metrics(run)["metrics"]
    assert {"test/acc", "test/fgsm/acc_eps0.1", "test/fgsm/acc_eps0.3"} <= set(metrics)
    assert metrics["test/fgsm/n_images"] == 200 and metrics["test/n_images"] == 500  # clean: the whole split
    assert max(metrics["test/fgsm/acc_eps0.1"], metrics["test/fgsm/acc_eps0.3"]) <= metrics["test/fgsm/acc_eps0"]
    assert {"attack_fgsm_accuracy.png", "attack_fgsm_examples.png"} <= {p.name for p in run.iterdir()}
    table = " ".join(out.split())
    assert "FGSM, untargeted: trained on clean images, 200 validation images" in table
    assert "0 (clean)" in table and "val/fgsm/acc_eps0.3" in table


@pytest.mark.parametrize(("args", "message"), [
    (["attack=fgsm", "eps=1.5"], "eps=1.5: must be in [0, 1], the data's pixel range"),
    (["attack=fgsm", "eps=[0.1,-0.2]"], "eps=-0.2: must be in [0, 1]"),
    (["attack=deepfool"], "attack=deepfool: choose fgsm, bim, pgd"),
    (["eps=0.1"], "eps=[0.1]: a setting of an attack; add attack=fgsm, bim or pgd"),
    (["attack=fgsm", "attack_steps=5"], "attack_steps=5: FGSM takes one step of eps"),
    (["attack=pgd", "target=10"], "target=10: this classifier has classes 0 to 9"),
    (["attack=fgsm", "attack_images=0"], "attack_images=0: must be at least 1"),
    (["attack=pgd", "batch_size=50", "max_minutes=0.0001"], "on 500 test images: ~"),
])
def test_bad_attack_settings_are_one_line_errors(args, message, tmp_path, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["evaluate", f"ckpt={FORMAT1 / 'classifier.ckpt'}", *args], tmp_path,
                                        monkeypatch, capsys)
    assert code == 1 and message in err and err.count("\n") == 1, err


def test_an_attack_on_a_model_that_is_not_a_classifier_is_refused(tmp_path, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["evaluate", f"ckpt={FORMAT1 / 'vae.ckpt'}", "attack=fgsm"], tmp_path,
                                        monkeypatch, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert "attack=fgsm: adversarial attacks need a model=classifier checkpoint" in err and "model=vae" in err


def test_an_adversarial_training_budget_outside_the_pixel_range_is_refused():
    from genrun.models.classifier import ClassifierModule
    from genrun.nets.classifier import ConvClassifier

    net = ConvClassifier(1, 28, 10)
    with pytest.raises(GenrunError, match=r"^model\.adversarial\.eps=1\.5: must be in \[0, 1\]"):
        ClassifierModule(net, torch.optim.AdamW, adversarial_eps=1.5)
    with pytest.raises(GenrunError, match=r"^model\.adversarial\.eps=-0\.1"):
        ClassifierModule(net, torch.optim.AdamW, adversarial_eps=-0.1)
