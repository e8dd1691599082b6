"""Hydra launchers through genrun (joblib, submitit), composable callbacks and the profiler."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import check_ok, genrun_in_process, read_metrics, run_dirs, run_genrun
from genrun.errors import GenrunError

TINY_GAN = ["model=gan", "dataset=toy2d", "dataset.n_train=512", "trainer.max_epochs=1", "test=false",
            "num_samples=0", "trainer.accelerator=cpu"]


def _sweep_jobs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "outputs" / "multirun" / "train").glob("*/*_gan_toy2d") if p.is_dir())


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _composed(*overrides: str):
    """The train config with Hydra's node, as a run composes it (genrun's configs, Hydra's plugins)."""
    from hydra.types import RunMode

    from genrun.overrides import _load, _loader

    return _load(_loader(), "train", list(overrides), RunMode.RUN, set())[0]


def test_joblib_jobs_share_the_cores_out_and_threads_overrides_the_share():
    from genrun.distributed import Launch, thread_budget

    launcher = _composed("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert thread_budget(None, launcher, Launch()) == max(1, _cores() // 2)  # two jobs on two cores: one each
    assert thread_budget(3, launcher, Launch()) == 3
    assert thread_budget(None, _composed().hydra.launcher, Launch()) is None  # one job: torch's default


@pytest.mark.slow
def test_joblib_runs_two_jobs_side_by_side_each_with_its_share_of_the_cores(workdir):
    check_ok(run_genrun(["train", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *TINY_GAN,
                         "trainer.limit_val_batches=1", "seed=0,1"], workdir))
    jobs = _sweep_jobs(workdir)
    assert len(jobs) == 2 and all(read_metrics(job)["status"] == "completed" for job in jobs)
    for job in jobs:
        assert f"torch threads: {max(1, _cores() // 2)}" in (job / "train.log").read_text()


@pytest.mark.slow
def test_submitit_local_runs_a_two_task_ddp_job_in_one_run_directory(workdir):
    """Two submitit tasks, each a whole genrun process: one DDP job (world size 2, gloo on CPU)."""
    check_ok(run_genrun(["train", "-m", "hydra/launcher=submitit_local", "trainer.devices=2", "trainer.strategy=ddp",
                         *TINY_GAN], workdir, timeout=500))
    [job] = _sweep_jobs(workdir)  # both tasks trained in the job's one directory
    assert read_metrics(job)["status"] == "completed"
    assert (job / "train_rank1.log").is_file()
    checkpoint = torch.load(job / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(checkpoint["callbacks"]["RNGState"]["ranks"]) == 2
    sums = {}
    for log in job.glob("train*.log"):
        sums.update(re.findall(r"weights checksum on rank (\d+): (\S+)", log.read_text()))
    assert set(sums) == {"0", "1"} and sums["0"] == sums["1"]


def test_the_submitit_launchers_take_their_layout_from_the_trainer():
    cfg = _composed("hydra/launcher=submitit_slurm", "trainer.devices=4", "trainer.num_nodes=2")
    launcher = cfg.hydra.launcher
    assert (launcher.tasks_per_node, launcher.nodes, launcher.gpus_per_node) == (4, 2, 4)
    assert launcher.timeout_min > 0 and launcher.max_num_timeout > 0  # requeued on its time limit
    assert _composed("hydra/launcher=submitit_local", "trainer=ddp").hydra.launcher.tasks_per_node == 2


def test_a_launcher_whose_plugin_is_missing_is_one_line(workdir, monkeypatch, capsys):
    from genrun.overrides import _check_launcher

    launchers = workdir / "my_configs" / "hydra" / "launcher"
    launchers.mkdir(parents=True)
    (launchers / "faraway.yaml").write_text("_target_: hydra_plugins.no_such_launcher.Launcher\n")
    code, _out, err = genrun_in_process(["train", "-cd", "my_configs", "-m", "hydra/launcher=faraway", "seed=0,1"],
                                        workdir, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert "hydra/launcher=faraway: hydra_plugins.no_such_launcher.Launcher cannot be imported" in lines[0]
    # genrun's own submitit configs compose without the plugin: the line names the package and the extra
    master = OmegaConf.create({"hydra": {"launcher": {"_target_": "hydra_plugins.not_here.SlurmLauncher"},
                                         "runtime": {"choices": {"hydra/launcher": "submitit_slurm"}}}})
    with pytest.raises(GenrunError, match=r"^hydra/launcher=submitit_slurm: not installed; pip install "
                                          r"hydra-submitit-launcher \(or the genrun\[cluster\] extra\)$"):
        _check_launcher(master)


# --- callbacks and the profiler ---------------------------------------------------------------------------


def test_callbacks_compose_and_default_keeps_genruns_four(workdir, monkeypatch, capsys):
    def callbacks(*args):
        code, out, err = genrun_in_process(["train", *args, "--cfg", "job", "-p", "callbacks"], workdir, monkeypatch,
                                           capsys)
        assert code == 0, err
        return OmegaConf.create(out)

    default = callbacks()
    assert list(default) == ["model_checkpoint", "progress_bar", "learning_rate_monitor", "throughput"]
    both = callbacks("callbacks=[default,early_stopping]")
    assert list(both) == [*default, "early_stopping"] and both.early_stopping.monitor == "val/loss"
    assert OmegaConf.to_container(both.model_checkpoint) == OmegaConf.to_container(default.model_checkpoint)


def test_early_stopping_stops_a_run_and_is_kept_in_its_checkpoint(workdir, monkeypatch, capsys):
    # min_delta no loss can meet: the run stops after patience+1 validations instead of running 20 epochs
    code, _out, err = genrun_in_process(["train", *TINY_GAN, "trainer.max_epochs=20", "trainer.limit_val_batches=1",
                                         "callbacks=[default,early_stopping]", "callbacks.early_stopping.patience=1",
                                         "callbacks.early_stopping.min_delta=1000"], workdir, monkeypatch, capsys)
    assert code == 0, err
    [run_dir] = run_dirs(workdir)
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(key.startswith("EarlyStopping") for key in checkpoint["callbacks"])
    assert read_metrics(run_dir)["epochs"] == 2


def test_early_stopping_without_a_validation_split_is_one_line(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["train", *TINY_GAN, "dataset.n_val=0", "callbacks=[default,early_stopping]"],
                                        workdir, monkeypatch, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1, err
    assert "callbacks.early_stopping watches val/loss, but this run has no validation split" in lines[0]


def test_debug_profiler_writes_its_report_into_the_run_directory(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["train", *TINY_GAN, "debug=profiler", "trainer.limit_train_batches=2",
                                         "trainer.limit_val_batches=1"], workdir, monkeypatch, capsys)
    assert code == 0, err
    [run_dir] = run_dirs(workdir)
    report = (run_dir / "fit-profile.txt").read_text()
    assert "Action" in report and "run_training_epoch" in report


def test_without_debug_profiler_the_trainer_gets_genruns_no_profiler(tmp_path):
    """Lightning opens a profiler region around every hook; genrun's default one opens nothing, and a real
    profiler still replaces it when asked for."""
    from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

    from genrun.callbacks.lean import NoProfiler
    from genrun.tasks.train import profiler_for

    default = profiler_for(OmegaConf.create({"profiler": None}), tmp_path)["profiler"]
    assert isinstance(default, NoProfiler) and isinstance(default, PassThroughProfiler)
    region = default.profile("[Callback]Throughput.on_train_batch_end")
    with region:
        pass
    assert region is default.profile("run_training_batch")  # one shared region, nothing built per hook
    assert isinstance(profiler_for(OmegaConf.create({"profiler": "simple"}), tmp_path)["profiler"], SimpleProfiler)
