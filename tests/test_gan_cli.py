"""The real `genrun` command on GANs: train (dcgan, cgan, gan on toy2d), sample in every mode, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MINI, check_ok, read_metrics, run_dirs, run_genrun

FAST = "debug=fast_dev_run"


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _sample_runs(root: Path, key: str = "mode") -> dict:
    """Completed `genrun sample` run directories by a request value (run names need not sort by time)."""
    runs = {}
    for run in (root / "outputs" / "sample").glob("*/*"):
        metrics = read_metrics(run)
        if metrics["status"] == "completed":
            runs[metrics["request"][key]] = run
    return runs


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dcgan")
    (root / "data").mkdir()
    # test=false: the sample-quality report is exercised once, by test_evaluate_reports_image_quality.
    check_ok(run_genrun(["train", "model=dcgan", MINI, FAST, "model.width=8", "test=false"], cwd=root))
    return run_dirs(root)[0]


def test_dcgan_trains_and_leaves_checkpoint_samples_and_metrics(dcgan_run):
    metrics = read_metrics(dcgan_run)
    assert metrics["status"] == "completed"
    assert {"train/d_loss", "train/g_loss", "val/swd", "val/loss"} <= set(metrics["metrics"])
    assert (dcgan_run / "checkpoints" / "last.ckpt").is_file()
    samples = np.load(dcgan_run / "samples" / "samples.npy")
    assert samples.shape == (16, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1


def test_sample_modes_without_lightning(dcgan_run, tmp_path):
    """temperature, truncation, interpolation and arithmetic through `genrun sample`, in one process that
    must never import Lightning."""
    code = (
        "import sys\nfrom genrun.cli import main\n"
        f"base = ['sample', 'ckpt={dcgan_run}', 'num_samples=20']\n"
        "for extra in (['temperature=0.5', 'truncation=0.7'], ['mode=interpolate', 'steps=5'],\n"
        "              ['mode=arithmetic']):\n"
        "    assert main(base + extra) == 0, extra\n"
        "assert main(base + ['label=3']) == 1\n"
        "assert 'lightning' not in sys.modules, 'genrun sample imported lightning'\n"
    )
    result = check_ok(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                                     env={"GENRUN_OUTPUT_DIR": str(tmp_path / "outputs"), "PATH": ""}))
    assert "label=3: this model is not class-conditional" in result.stderr
    runs = _sample_runs(tmp_path)
    prior, interp, arith = runs["prior"], runs["interpolate"], runs["arithmetic"]
    assert np.load(prior / "samples.npy").shape[0] == 20
    assert np.load(interp / "samples.npy").shape[0] == 20  # 4 rows of 5 steps
    recipe = json.loads((arith / "arithmetic.json").read_text())
    assert recipe["a"] == [0, 1, 2] and recipe["expression"] == "mean(a) - mean(b) + mean(c)"
    assert np.load(arith / "samples.npy").shape[0] == 4 * 9  # three operand rows and the result row


def test_evaluate_reports_image_quality(dcgan_run, tmp_path):
    check_ok(run_genrun(["evaluate", f"ckpt={dcgan_run}", "num_samples=50"], cwd=tmp_path,
                        env={"GENRUN_CLASSIFIER_EPOCHS": "1"}))
    metrics = read_metrics(run_dirs(tmp_path, "evaluate")[0])["metrics"]
    assert metrics["test/swd_n"] == 50 and metrics["test/swd"] > 0
    assert {"eval/domain_fid", "eval/n_fake", "eval/n_real"} <= set(metrics)


def test_cgan_label_and_one_row_per_class(tmp_path):
    (tmp_path / "data").mkdir()
    check_ok(run_genrun(["train", "model=cgan", MINI, FAST, "model.width=8", "test=false"], cwd=tmp_path))
    run = run_dirs(tmp_path)[0]
    saved = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["genrun"]["config"]["model"]["num_classes"] == 10
    check_ok(run_genrun(["sample", f"ckpt={run}", "num_samples=30"], cwd=tmp_path))
    check_ok(run_genrun(["sample", f"ckpt={run}", "label=3", "num_samples=8", "nrow=8"], cwd=tmp_path))
    runs = _sample_runs(tmp_path, key="label")
    grid, single = runs[None], runs[3]
    assert np.load(grid / "samples.npy").shape[0] == 30  # 10 classes x 3 columns
    width, height = _png_size(grid / "prior.png")
    assert width > 3 * 28 * 3 and height > 10 * 28 * 3  # 10 class rows of 3 upscaled columns
    assert np.load(single / "samples.npy").shape[0] == 8
    bad = run_genrun(["sample", f"ckpt={run}", "label=10"], cwd=tmp_path)
    assert bad.returncode == 1 and "classes 0..9" in bad.stderr


def test_gan_on_toy2d_reports_modes_and_scatter_and_evaluates_again(tmp_path):
    check_ok(run_genrun(["train", "model=gan", "dataset=toy2d", "dataset.kind=grid25", "trainer.max_epochs=1",
                         "trainer.limit_train_batches=5", "trainer.limit_val_batches=1", "model.loss=hinge",
                         "model.spectral_norm=true"], cwd=tmp_path))
    run = run_dirs(tmp_path)[0]
    metrics = read_metrics(run)["metrics"]
    assert metrics["toy/num_modes"] == 25 and 0 <= metrics["toy/hq_fraction"] <= 1
    assert (run / "toy_scatter.png").is_file() and (run / "samples" / "prior.png").is_file()
    check_ok(run_genrun(["evaluate", f"ckpt={run}", "num_samples=500"], cwd=tmp_path))
    evaluation = read_metrics(run_dirs(tmp_path, "evaluate")[0])["metrics"]
    assert evaluation["toy/n_samples"] == 500 and evaluation["toy/num_modes"] == 25


def test_dcgan_on_points_is_a_one_line_error(tmp_path):
    result = run_genrun(["train", "model=dcgan", "dataset=toy2d", FAST], cwd=tmp_path)
    assert result.returncode == 1
    assert "needs image data" in result.stderr and "Traceback" not in result.stderr
