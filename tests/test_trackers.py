"""Experiment trackers: MLflow's store read back after real runs (metrics, parameters, artifacts), TensorBoard
beside it, and a tracker whose package is missing as one line naming the extra."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow  # in the dev extra: a missing mlflow fails here, it does not skip
import pytest

from conftest import genrun_in_process

# A GAN on 256 generated points for two one-batch epochs: scalars at two validations, a sample picture.
TINY = ["train", "model=gan", "dataset=toy2d", "dataset.n_train=256", "dataset.n_val=128", "dataset.n_test=128",
        "model.hidden_dims=[16]", "model.latent_dim=4", "trainer.max_epochs=2", "trainer.limit_val_batches=1",
        "trainer.enable_model_summary=false", "num_samples=16", "threads=1"]


def _run(workdir, monkeypatch, capsys, *extra) -> str:
    code, _out, err = genrun_in_process([*TINY, *extra], workdir, monkeypatch, capsys)
    assert code == 0, err
    (run,) = (workdir / "outputs" / "train" / "gan_toy2d").iterdir()
    return run


def _only_run(client, experiment: str):
    found = client.get_experiment_by_name(experiment)
    assert found is not None, [e.name for e in client.search_experiments()]
    (run,) = client.search_runs([found.experiment_id])
    return run


def test_mlflow_beside_tensorboard_records_scalars_params_config_and_samples(workdir, monkeypatch, capsys):
    run_dir = _run(workdir, monkeypatch, capsys, "logger=[tensorboard,mlflow]")
    store = workdir / "outputs" / "mlflow"
    client = mlflow.MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    run = _only_run(client, "gan_toy2d")
    assert run.info.run_name == run_dir.name and run.data.tags["genrun.run_dir"] == str(run_dir)
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert len(history) == 2  # one value per validation, as TensorBoard got them
    assert {"train/g_loss", "train/d_loss", "val/swd"} <= set(run.data.metrics)
    assert run.data.params["model.latent_dim"] == "4" and run.data.params["dataset.n_train"] == "256"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert "config.yaml" in artifacts and samples == {f"samples/{p.name}" for p in (run_dir / "samples").glob("*.png")}
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config.yaml",
                                                tracking_uri=client.tracking_uri, dst_path=str(workdir / "got"))
    assert "latent_dim: 4" in Path(local).read_text()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))  # TensorBoard wrote its own record
    # The pictures drawn while training reach both trackers, at the same steps.
    pictures = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
    mlflow_steps = sorted(int(p.split("+step+")[1].split("+")[0]) for p in pictures if "samples~scatter" in p)
    assert len(mlflow_steps) == len(pictures) == 2, pictures  # one scatter plot per epoch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [image.step for image in events.Images("samples/scatter")] == mlflow_steps


def test_a_given_tracking_uri_is_used_instead_of_the_local_store(workdir, monkeypatch, capsys):
    uri = (workdir / "elsewhere").as_uri()  # MLflow's plain file store, named by the user
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    _run(workdir, monkeypatch, capsys, "logger=mlflow", f"logger.mlflow.tracking_uri='{uri}'")
    run = _only_run(mlflow.MlflowClient(uri), "gan_toy2d")
    assert "val/loss" in run.data.metrics and not (workdir / "outputs" / "mlflow").exists()


@pytest.mark.parametrize(("logger", "module"), [("mlflow", "mlflow"), ("wandb", "wandb"), ("many", "mlflow")])
def test_a_tracker_whose_package_is_missing_is_one_line_naming_the_extra(workdir, monkeypatch, capsys, logger,
                                                                         module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails, as where the package is not installed
    code, _out, err = genrun_in_process([*TINY, f"logger={logger}"], workdir, monkeypatch, capsys)
    lines = [line for line in err.strip().splitlines() if line.startswith("genrun")]
    assert code == 1 and "Traceback" not in err, err
    extra = "mlflow" if module == "mlflow" else "wandb"
    assert lines == [f"genrun: error: logger={extra} needs {module}, which is not installed: "
                     f"pip install 'genrun[{extra}]'"], err
    assert not list((workdir / "outputs" / "train" / "gan_toy2d").glob("*/checkpoints/*"))  # before training


@pytest.mark.slow
def test_wandb_offline_keeps_scalars_config_and_samples_in_the_run_directory(workdir, monkeypatch, capsys):
    """Runs where wandb is installed (it is not in the dev extra: a 20 MB wheel with a service binary)."""
    pytest.importorskip("wandb", reason="wandb is an optional extra (genrun[wandb]), not in dev")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(workdir / "no-netrc"))  # no key anywhere: offline, no network needed
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = _run(workdir, monkeypatch, capsys, "logger=[tensorboard,wandb]")
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    files = offline / "files"
    assert "latent_dim: 4" in (files / "genrun_config.yaml").read_text()
    assert list((files / "media" / "images" / "samples").glob("final_*.png"))
    # The pictures drawn while training: one scatter plot per validation, as MLflow and TensorBoard get them.
    assert len(list((files / "media" / "images" / "samples").glob("scatter_*.png"))) == 2
    assert list(offline.glob("run-*.wandb"))  # the scalars' record, for `wandb sync`
