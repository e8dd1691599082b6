"""`genrun evaluate` end to end on a VAE checkpoint, and `model=classifier` as a model of its own."""

from __future__ import annotations

import json

from conftest import MINI, check_ok, read_metrics, run_dirs, run_genrun
from genrun.checkpoint import load_checkpoint

FAST_CLASSIFIER = "classifier.epochs=1"


def test_genrun_evaluate_reports_sample_quality_of_a_vae(workdir):
    check_ok(run_genrun(["train", "model=vae", MINI, "debug=fast_dev_run", "model.iwae_k=2"], workdir))
    result = check_ok(run_genrun(["evaluate", "model=vae", "num_samples=200", "iwae_k=2", FAST_CLASSIFIER], workdir))
    [eval_dir] = run_dirs(workdir, "evaluate")
    recorded = read_metrics(eval_dir)
    metrics = recorded["metrics"]
    assert recorded["status"] == "completed"
    for key in ("test/nll_iwae", "eval/domain_fid", "eval/precision", "eval/recall", "eval/memorization_ratio",
                "eval/coverage_kl", "eval/classifier_test_acc"):
        assert key in metrics, key
    assert metrics["eval/n_fake"] == 200 and metrics["eval/n_real"] == 200
    assert (eval_dir / "nearest_training_images.png").is_file()
    assert list((eval_dir / "tensorboard").glob("events.out.tfevents.*"))
    out = result.stdout + result.stderr
    assert "eval/domain_fid" in result.stdout and "n fake 200, n real 200" in result.stdout
    assert "Inception FID/IS skipped" in out  # no Inception weights on a test machine: a notice, not a failure
    # The domain classifier was trained once and cached with its recorded accuracy.
    [cached] = (workdir / "outputs" / ".cache" / "classifiers").glob("*/classifier.ckpt")
    info = load_checkpoint(cached)["genrun"]
    assert info["family"] == "classifier" and 0 <= info["test_accuracy"] <= 1
    # A second evaluation reuses it (and the cached file is itself a classifier users can evaluate).
    again = check_ok(run_genrun(["evaluate", "model=vae", "num_samples=50", "iwae_k=2", FAST_CLASSIFIER,
                                 "image_metrics=false"], workdir))
    assert "eval/domain_fid" not in again.stdout
    direct = check_ok(run_genrun(["evaluate", f"ckpt={cached}"], workdir))
    assert "test/acc" in direct.stdout


def test_classifier_trains_samples_predictions_and_serves_as_feature_network(workdir):
    check_ok(run_genrun(["train", "model=classifier", MINI, "debug=fast_dev_run"], workdir))
    [run_dir] = run_dirs(workdir)
    assert "test/acc" in read_metrics(run_dir)["metrics"]
    assert (run_dir / "samples" / "predictions.png").is_file()
    result = check_ok(run_genrun(["sample", "model=classifier", "num_samples=12", "seed=1"], workdir))
    [sample_dir] = run_dirs(workdir, "sample")
    predictions = json.loads((sample_dir / "predictions.json").read_text())["predictions"]
    assert len(predictions) == 12 and all(0 <= p["predicted"] < 10 for p in predictions)
    assert "predictions.png" in result.stdout
    # A trained classifier run can replace the cached domain classifier.
    check_ok(run_genrun(["train", "model=ae", MINI, "debug=fast_dev_run"], workdir))
    check_ok(run_genrun(["evaluate", "model=ae", "num_samples=50", f"classifier.ckpt={run_dir}"], workdir))
    evaluated = read_metrics(run_dirs(workdir, "evaluate")[0])["metrics"]
    assert "eval/domain_fid" in evaluated
    assert not (workdir / "outputs" / ".cache").exists()  # nothing was trained behind the user's back
    wrong = run_genrun(["evaluate", "model=ae", "num_samples=50", "classifier.ckpt=nowhere"], workdir)
    assert wrong.returncode == 1 and "ckpt=nowhere" in wrong.stderr
