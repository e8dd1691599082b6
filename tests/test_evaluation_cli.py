"""`genrun evaluate` end to end on a VAE checkpoint, and `model=classifier` as a model of its own; the figures
in the evaluated run's own TensorBoard, one HPARAMS row per run.

Few processes: each `genrun` start costs seconds on a shared 2-core machine.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from conftest import MINI, check_ok, read_metrics, run_dirs, run_genrun
from genrun.checkpoint import load_checkpoint
from genrun.evaluation.run_tensorboard import hparam_metric_names, write_evaluation, write_hparams
from genrun.tasks.train import flat_hparams


def hparams_table(logdir: Path) -> tuple[list[str], list[dict[str, float]]]:
    """What TensorBoard's HPARAMS tab shows for `logdir`: its metric columns and one row per session group,
    computed by TensorBoard's own hparams backend."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment, list_session_groups

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), data_provider=provider,
                                                            multiplexer=multiplexer))
    ctx = context.RequestContext()
    experiment = get_experiment.Handler(ctx, backend, "", api_pb2.GetExperimentRequest()).run()
    statuses = [api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING]
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=100, allowed_statuses=statuses,
                                               aggregation_type=api_pb2.AGGREGATION_AVG)
    groups = list_session_groups.Handler(ctx, backend, "", request).run().session_groups
    return ([m.name.tag for m in experiment.metric_infos],
            [{m.name.tag: m.value for m in group.metric_values} for group in groups])


def session_hparams(event_file: Path) -> dict:
    """The hyperparameters of the HPARAMS session record in one event file."""
    events = EventAccumulator(str(event_file))
    events.Reload()
    try:
        content = events.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    except KeyError:  # an event file without a session record
        return {}
    start = hparams_metadata.parse_session_start_info_plugin_data(content)
    return {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
            for name, value in start.hparams.items()}


def test_evaluate_a_vae_with_cached_or_given_domain_classifier_and_use_the_classifier(workdir):
    # Not debug=limit: sample and evaluate never pick a debug run by themselves. image_metrics=false: the
    # classifier is first trained by the evaluation below.
    check_ok(run_genrun(["train", "-m", "model=vae,classifier", MINI, "trainer.limit_train_batches=5",
                         "trainer.limit_val_batches=2", "trainer.limit_test_batches=2", "trainer.max_epochs=1",
                         "image_metrics=false"], workdir))
    [classifier_run] = (workdir / "outputs" / "multirun" / "train").glob("*/*_classifier_mnist")
    [vae_run] = (workdir / "outputs" / "multirun" / "train").glob("*/*_vae_mnist")
    assert "test/acc" in read_metrics(classifier_run)["metrics"]
    assert (classifier_run / "samples" / "predict.png").is_file()
    training_events = set((vae_run / "tensorboard").glob("events.out.tfevents.*"))

    # 1. The domain classifier is trained on first use (fast setting for the test) and cached; stderr is not a
    # terminal here: each stage says what it does in one line, and no bar is drawn.
    result = check_ok(run_genrun(["evaluate", "model=vae", "num_samples=200", "iwae_k=2", "classifier.epochs=1"],
                                 workdir))
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr, result.stderr
    stages = [line for line in result.stderr.splitlines() if line.endswith(" ...")]
    assert stages[0].startswith("training the domain classifier on 4,500 images for 1 epoch (once per dataset: "
                                "cached for next time in "), result.stderr
    assert any(line.startswith("drawing 200 samples") for line in stages)
    assert any(line.startswith("FID, KID (1 subset of 200) and precision/recall") for line in stages)
    [eval_dir] = run_dirs(workdir, "evaluate")
    recorded = read_metrics(eval_dir)
    metrics = recorded["metrics"]
    assert recorded["status"] == "completed"
    for key in ("test/nll_iwae", "eval/domain_fid", "eval/precision", "eval/recall", "eval/memorization_ratio",
                "eval/coverage_kl", "eval/classifier_test_acc"):
        assert key in metrics, key
    assert metrics["eval/n_fake"] == 200 and metrics["eval/n_real"] == 200
    assert (eval_dir / "nearest_training_images.png").is_file()
    assert metrics["eval/kid_subset_size"] == 200 and "eval/kid" in metrics
    # The figures are in the VAE run's own TensorBoard, at the step of the checkpoint, in the run's HPARAMS row.
    assert not (eval_dir / "tensorboard").exists()
    events = EventAccumulator(str(vae_run / "tensorboard"))
    events.Reload()
    step = read_metrics(vae_run)["global_step"]
    assert step > 0
    written = {"eval/domain_fid": "eval/domain_fid", "eval/kid": "eval/kid", "eval/test/nll_iwae": "test/nll_iwae",
               "hparams/eval/domain_fid": "eval/domain_fid"}
    for tag, name in written.items():
        [point] = events.Scalars(tag)
        assert point.step == step and math.isclose(point.value, metrics[name], rel_tol=1e-6, abs_tol=1e-9), tag
    assert events.Scalars("hparams/test/nll_iwae")  # training's own HPARAMS figure is still there, apart
    [evaluation_events] = set((vae_run / "tensorboard").glob("events.out.tfevents.*")) - training_events
    [training_session] = [session_hparams(f) for f in training_events if session_hparams(f)]
    assert session_hparams(evaluation_events) == training_session  # the same session: one row
    columns, rows = hparams_table(vae_run / "tensorboard")
    assert len(rows) == 1 and "hparams/test/nll_iwae" in columns and "hparams/test/nll_iwae" in rows[0]
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
    # the bundled digits have no test split: the accuracy is on the validation split, and named so
    assert "val/acc" in direct.stdout and "test/acc" not in direct.stdout and "no separate test split" in direct.stdout
    # That checkpoint is in no run directory: its figures go to the evaluation's own TensorBoard.
    newest = max(run_dirs(workdir, "evaluate"), key=lambda p: p.stat().st_mtime)
    events = EventAccumulator(str(newest / "tensorboard"))
    events.Reload()
    assert math.isclose(events.Scalars("eval/test/acc")[0].value, read_metrics(newest)["metrics"]["test/acc"],
                        rel_tol=1e-6)
    assert "not inside a genrun train run directory" in direct.stdout


def test_a_training_record_that_names_the_evaluation_columns_gets_them_in_its_one_hparams_row(tmp_path):
    """The layout training writes with write_hparams (Lightning's, plus the evaluation's column names), then an
    evaluation: TensorBoard's hparams backend shows one row holding training and evaluation figures."""
    from torch.utils.tensorboard import SummaryWriter

    config = {"model": {"lr": 1e-3, "module": {"_target_": "x.Y", "width": 16}}, "dataset": {"name": "mnist"},
              "trainer": {"max_epochs": 2}, "seed": 0}
    tb_dir = tmp_path / "run" / "tensorboard"
    with SummaryWriter(str(tb_dir)) as writer:
        writer.add_scalar("train/loss", 1.5, 40)
        write_hparams(writer, flat_hparams(config), {"hparams/test/nll_iwae": 99.0}, hparam_metric_names())
    write_evaluation(tb_dir, {"eval/domain_fid": 12.5, "eval/kid": 0.25, "test/nll_iwae": 98.0}, 40,
                     flat_hparams(config))
    columns, rows = hparams_table(tmp_path / "run")
    assert {"hparams/test/nll_iwae", "hparams/eval/domain_fid", "hparams/eval/kid"} <= set(columns)
    assert rows == [{"hparams/test/nll_iwae": 99.0, "hparams/eval/domain_fid": 12.5, "hparams/eval/kid": 0.25,
                     "hparams/eval/test/nll_iwae": 98.0}], rows
