"""`genrun evaluate` end to end on a VAE checkpoint, and `model=classifier` as a model of its own.

One test, few processes: each `genrun` start costs seconds on a shared 2-core machine.
"""

from __future__ import annotations

import json

from conftest import MINI, check_ok, read_metrics, run_dirs, run_genrun
from genrun.checkpoint import load_checkpoint


def test_evaluate_a_vae_with_cached_or_given_domain_classifier_and_use_the_classifier(workdir):
    check_ok(run_genrun(["train", "-m", "model=vae,classifier", MINI, "debug=fast_dev_run"], workdir))
    [classifier_run] = (workdir / "outputs" / "multirun" / "train").glob("*/*_classifier_mnist")
    assert "test/acc" in read_metrics(classifier_run)["metrics"]
    assert (classifier_run / "samples" / "predict.png").is_file()

    # 1. The domain classifier is trained on first use (fast setting for the test) and cached.
    result = check_ok(run_genrun(["evaluate", "model=vae", "num_samples=200", "iwae_k=2", "classifier.epochs=1"],
                                 workdir))
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
    assert "eval/domain_fid" in result.stdout and "n fake 200, n real 200" in result.stdout
    assert "Inception FID/IS skipped" in result.stdout + result.stderr  # a notice, not a failure
    [cached] = (workdir / "outputs" / ".cache" / "classifiers").glob("*/classifier.ckpt")
    info = load_checkpoint(cached)["genrun"]
    assert info["pipeline"]["class"].endswith("ClassifierPipeline") and 0 <= info["test_accuracy"] <= 1

    # 2. A classifier the user trained replaces it.
    check_ok(run_genrun(["evaluate", "model=vae", "num_samples=50", "iwae_k=2", f"classifier.ckpt={classifier_run}"],
                        workdir))
    newest = max(run_dirs(workdir, "evaluate"), key=lambda p: p.stat().st_mtime)
    assert "eval/domain_fid" in read_metrics(newest)["metrics"]
    assert len(list((workdir / "outputs" / ".cache" / "classifiers").iterdir())) == 1  # nothing new trained

    # 3. The classifier's own sample (predictions on test images) and evaluate (test accuracy).
    result = check_ok(run_genrun(["sample", "model=classifier", "num_samples=12", "seed=1"], workdir))
    [sample_dir] = run_dirs(workdir, "sample")
    predictions = json.loads((sample_dir / "predictions.json").read_text())["predictions"]
    assert len(predictions) == 12 and all(0 <= p["predicted"] < 10 for p in predictions)
    assert sample_dir.name.startswith("predict_") and "predict.png" in result.stdout
    direct = check_ok(run_genrun(["evaluate", f"ckpt={cached}"], workdir))
    assert "test/acc" in direct.stdout
