"""Sweeps, DDP, exact resume and unique run directories."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from conftest import MINI, check_ok, read_metrics, run_dirs, run_genrun

SHORT = [MINI, "trainer.limit_train_batches=4", "trainer.limit_val_batches=2", "test=false", "num_samples=4"]


def test_ddp_on_two_cpu_processes_shares_one_run(workdir):
    check_ok(run_genrun(["train", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", *SHORT,
                         "trainer.max_epochs=1"], workdir, timeout=400))
    [run_dir] = run_dirs(workdir)  # the worker re-entered the same job and directory
    assert (run_dir / "train_ddp_worker.log").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed"
    # 4 batches per epoch were split across two ranks: each took 2 optimizer steps... per rank
    assert metrics["global_step"] == 4
    # Each rank draws its own noise (seed_everything alone gives both the same stream), and the checkpoint
    # keeps both ranks' generator states for an exact resume.
    ranks = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["RNGState"]["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])


def test_ddp_under_multirun_runs_each_job_once_and_trains_a_gan_too(workdir):
    # The GAN steps its own two optimisers: each backward leaves one network's parameters unused,
    # which plain DDP refuses; genrun must pick the strategy that allows it.
    check_ok(run_genrun(["train", "-m", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", *SHORT,
                         "trainer.max_epochs=1", "model=vae,gan"], workdir, timeout=500))
    [sweep] = list((workdir / "outputs" / "multirun" / "train").iterdir())
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0_vae_mnist", "1_gan_mnist"]
    assert len(list((workdir / "outputs" / "multirun" / "train").iterdir())) == 1
    gan = read_metrics(sweep / "1_gan_mnist")
    assert gan["status"] == "completed" and gan["global_step"] == 8  # 4 batches per rank, 2 optimisers each
    assert (sweep / "1_gan_mnist" / "train_ddp_worker.log").is_file()


def _weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(workdir):
    full, part = workdir / "outputs" / "full", workdir / "outputs" / "part"
    check_ok(run_genrun(["train", *SHORT, "trainer.max_epochs=3", f"hydra.run.dir={full}"], workdir))
    check_ok(run_genrun(["train", *SHORT, "trainer.max_epochs=1", f"hydra.run.dir={part}"], workdir))
    check_ok(run_genrun(["train", f"resume={part}", "trainer.max_epochs=3"], workdir))
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert read_metrics(part)["epochs"] == read_metrics(full)["epochs"]
    assert len(list((workdir / "outputs").iterdir())) == 2  # resumed in place, no new run directory
    # run.json says from which step the new setting applied
    (resumed,) = json.loads((part / "run.json").read_text())["resumes"]
    assert resumed["from_epoch"] == 1 and resumed["overrides"][-1] == "trainer.max_epochs=3"


def test_resume_without_checkpoint_is_an_error(workdir):
    empty = workdir / "outputs" / "train" / "vae_mnist" / "empty"
    (empty / ".hydra").mkdir(parents=True)
    result = run_genrun(["train", f"resume={empty}"], workdir)
    assert result.returncode == 1 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr
    result = run_genrun(["train", f"resume={workdir / 'nope'}"], workdir)
    assert result.returncode == 1 and "no such run directory" in result.stderr


def test_run_ids_differ_when_started_in_the_same_second():
    code = "from genrun.resolvers import _run_id; print(_run_id())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    ids = [p.communicate()[0].strip() for p in procs]
    assert len(set(ids)) == 4, ids
    assert all(len(i.split("_")[0]) == 10 for i in ids)


def test_failed_job_is_recorded(workdir):
    result = run_genrun(["train", "dataset=image_folder", f"dataset.path={workdir / 'missing'}"], workdir)
    assert result.returncode == 1
    [run_dir] = run_dirs(workdir)
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert recorded["status"] == "failed" and "missing" in recorded["error"]
