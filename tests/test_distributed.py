"""Several processes, one run: torchrun, the launch a process belongs to, preemption and exact resume."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from conftest import MINI, check_ok, genrun_in_process, read_metrics, run_dirs, run_genrun
from genrun import distributed
from genrun.callbacks.preemption import Preempted, Preemption
from genrun.callbacks.run_state import RNGState
from genrun.data.lightning import LightningData
from genrun.data.toy2d import Toy2DDataModule
from genrun.errors import GenrunError
from genrun.models.gan import GANModule
from genrun.nets.gan import MLPDiscriminator, MLPGenerator

TINY_GAN = ["model=gan", "dataset=toy2d", "dataset.n_train=512", "trainer.max_epochs=1", "test=false",
            "num_samples=0", "trainer.accelerator=cpu"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "genrun"]
LAUNCH_VARIABLES = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE", "TORCHELASTIC_RUN_ID",
                    "TORCHELASTIC_RESTART_COUNT", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_JOB_ID", "SLURM_PROCID",
                    "SLURM_LOCALID", "SLURM_JOB_NAME", "SLURM_RESTART_COUNT", "SUBMITIT_EXECUTOR", "GENRUN_RUN_ID",
                    "NODE_RANK", "MASTER_ADDR")


def _checksums(run_dir: Path) -> dict[int, str]:
    found = {}
    for log in run_dir.glob("train*.log"):
        for rank, value in re.findall(r"weights checksum on rank (\d+): (\S+)", log.read_text()):
            found[int(rank)] = value
    return found


# --- torchrun: a real 2-process DDP run ----------------------------------------------------------------------


def test_torchrun_with_two_processes_trains_one_run_that_rank_zero_writes(workdir):
    check_ok(run_genrun(["train", *TINY_GAN], workdir, command=TORCHRUN, timeout=400))
    [run_dir] = run_dirs(workdir)  # both processes chose the same run directory
    assert "torchrun" in run_dir.name
    assert (run_dir / "train_rank1.log").is_file()  # rank 1 logs beside rank 0, into its own file
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert len(checkpoint["callbacks"]["RNGState"]["ranks"]) == 2  # world size 2
    sums = _checksums(run_dir)
    assert set(sums) == {0, 1} and sums[0] == sums[1]  # the two processes end with the same weights
    assert checkpoint["genrun"]["config"]["trainer"]["devices"] == 2  # trainer.devices followed torchrun


# --- the launch a process belongs to -------------------------------------------------------------------------


@pytest.fixture
def clean_launch_env(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _torchrun_env(monkeypatch, rank: int, world: int = 2, per_node: int = 2) -> None:
    for name, value in {"RANK": rank, "GROUP_RANK": rank // per_node, "LOCAL_RANK": rank % per_node,
                        "LOCAL_WORLD_SIZE": per_node, "WORLD_SIZE": world, "TORCHELASTIC_RUN_ID": "none"}.items():
        monkeypatch.setenv(name, str(value))


def test_every_process_of_a_launch_computes_the_same_run_id(clean_launch_env):
    monkeypatch = clean_launch_env
    assert distributed.shared_run_id() is None  # a plain command keeps genrun's unique timestamped id
    ids = set()
    for rank in (0, 1):
        _torchrun_env(monkeypatch, rank)
        ids.add(distributed.shared_run_id())
    assert len(ids) == 1 and str(os.getppid()) in ids.pop()  # torchrun's agent is every worker's parent
    _torchrun_env(monkeypatch, 0, world=4, per_node=2)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job42")
    assert distributed.shared_run_id() == "torchrun-job42"  # over nodes: the rendezvous id they all know
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {"SLURM_JOB_ID": "123", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "4", "SLURM_PROCID": "3",
                        "SLURM_JOB_NAME": "train"}.items():
        monkeypatch.setenv(name, value)
    assert distributed.shared_run_id() == "slurm123.0"  # a requeued job gets the same job and step ids
    launch = distributed.detect()
    assert (launch.launcher, launch.rank, launch.world_size, launch.restarted) == ("srun", 3, 4, False)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert distributed.detect().restarted


def test_the_trainer_follows_a_launch_it_was_left_out_of_and_a_clash_is_one_line(clean_launch_env):
    _torchrun_env(clean_launch_env, 1)
    trainer = OmegaConf.create({"devices": 1, "num_nodes": 1, "strategy": "auto"})
    launch = distributed.prepare(trainer)
    assert (launch.rank, trainer.devices, trainer.num_nodes, trainer.strategy) == (1, 2, 1, "ddp")
    with pytest.raises(GenrunError, match=r"^trainer.devices=4 trainer.num_nodes=1: torchrun started 1 node\(s\) "
                                          r"x 2 process\(es\); set trainer.devices=2 trainer.num_nodes=1$"):
        distributed.prepare(OmegaConf.create({"devices": 4, "num_nodes": 1, "strategy": "ddp"}))


def test_num_nodes_above_one_with_no_cluster_is_one_line_before_anything_starts(workdir, clean_launch_env, capsys):
    code, _out, err = genrun_in_process(["train", *TINY_GAN, "trainer.num_nodes=2"], workdir, clean_launch_env,
                                        capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("genrun: error: trainer.num_nodes=2: no cluster environment found")
    [run_dir] = run_dirs(workdir)
    assert not (run_dir / "checkpoints").exists()  # nothing was trained


# --- preemption ------------------------------------------------------------------------------------------------


class SignalAt(L.Callback):
    """Sends this process a real signal once training reaches `step` (test scaffolding: the scheduler's part)."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def _gan_fit(max_epochs: int, checkpoint: Path, extra=(), ckpt_path=None):
    L.seed_everything(0, verbose=False)
    opt = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.9))
    module = GANModule(MLPGenerator(latent_dim=4, shape=[2], hidden_dims=[16]),
                       MLPDiscriminator(shape=[2], hidden_dims=[16]), opt, opt, loss="hinge")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, max_epochs=max_epochs,
                        callbacks=[RNGState(0), Preemption(checkpoint), *extra])
    try:
        trainer.fit(module, LightningData(Toy2DDataModule(n_train=320, n_val=64, batch_size=32)),
                    ckpt_path=ckpt_path, weights_only=True)
    finally:
        for callback in trainer.callbacks:
            if isinstance(callback, Preemption):
                callback.restore()
    return module


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_a_signal_mid_epoch_checkpoints_and_the_resumed_run_is_bit_exact(tmp_path, signum):
    """10 batches an epoch, 2 optimiser steps a batch (a GAN): a signal at step 26 lands in epoch 2 (batch 3)."""
    straight = _gan_fit(2, tmp_path / "unused.ckpt")
    checkpoint = tmp_path / "last.ckpt"
    with pytest.raises(Preempted, match=signal.Signals(signum).name):
        _gan_fit(2, checkpoint, extra=[SignalAt(26, signum)])
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 28)  # the batch in flight finished, mid-epoch
    assert signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler)  # handlers given back
    resumed = _gan_fit(2, tmp_path / "unused.ckpt", ckpt_path=checkpoint)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_sigusr1_stops_a_genrun_run_with_a_checkpoint_and_resume_matches_the_straight_run(workdir):
    """The whole command: a real signal from outside, the line it ends with, and `resume=` to the same weights."""
    args = ["train", MINI, "trainer.limit_train_batches=30", "trainer.limit_val_batches=2", "test=false",
            "num_samples=0", "trainer.max_epochs=3", "dataset.batch_size=16"]
    full, part = workdir / "outputs" / "full", workdir / "outputs" / "part"
    check_ok(run_genrun([*args, f"hydra.run.dir={full}"], workdir))
    env = {**os.environ, "GENRUN_DATA_DIR": str(workdir / "data"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "genrun", *args, f"hydra.run.dir={part}"], cwd=workdir,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = part / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the end of epoch 1: the signal arrives during epoch 2
    process.send_signal(signal.SIGUSR1)
    _out, err = process.communicate(timeout=300)
    assert process.returncode == 130, err
    assert f"continue with: genrun train resume={part}" in err and "preempted by SIGUSR1" in err
    assert read_metrics(part)["status"] == "interrupted"
    assert torch.load(last, weights_only=True)["global_step"] < 90
    check_ok(run_genrun(["train", f"resume={part}"], workdir))
    a = torch.load(full / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    shutil.rmtree(full)


def test_a_restarted_launch_continues_its_run_from_the_last_checkpoint(workdir, clean_launch_env, capsys):
    """torchrun --max-restarts (or a requeued SLURM job) runs the same command again: it resumes in place."""
    monkeypatch = clean_launch_env
    run_dir = workdir / "outputs" / "restarted"
    command = ["train", *TINY_GAN, "trainer.limit_val_batches=1", f"hydra.run.dir={run_dir}"]
    code, _out, err = genrun_in_process(command, workdir, monkeypatch, capsys)
    assert code == 0, err
    first = read_metrics(run_dir)["global_step"]
    # What torchrun sets in a worker after a restart (one process: no process group to start)
    for name in ("GENRUN_DDP_TASK", "GENRUN_DDP_ARGS"):  # left by the first run for DDP workers it never had
        monkeypatch.delenv(name, raising=False)
    _torchrun_env(monkeypatch, 0, world=1, per_node=1)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    code, _out, err = genrun_in_process([*command, "trainer.max_epochs=2"], workdir, monkeypatch, capsys)
    assert code == 0, err
    assert read_metrics(run_dir)["global_step"] == 2 * first  # one more epoch on top of the first
    assert "torchrun restarted this job: resuming from" in (run_dir / "train.log").read_text()
