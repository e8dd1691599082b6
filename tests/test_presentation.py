"""What a person sees at the console: library noise kept out, summaries in reading order, the progress bar
counting the way the run is bounded, the checkpoint named with its reason, one fallback notice."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from conftest import MINI, genrun_in_process, read_metrics, run_dirs
from genrun.errors import GenrunError
from genrun.runs import choose_checkpoint, summary_metrics


def test_train_console_leads_with_headlines_and_keeps_library_notices_in_the_log(workdir, monkeypatch, capsys):
    code, out, err = genrun_in_process(
        ["train", "model=vae", MINI, "trainer.max_epochs=1", "trainer.limit_train_batches=3",
         "trainer.limit_val_batches=2", "model.iwae_k=2", "num_samples=4", "image_metrics=false"],
        workdir, monkeypatch, capsys)
    assert code == 0, err
    console = out + err
    for noise in ("GPU available", "Tip:", "val_check_interval", "Total FLOPs", "`Trainer.fit` stopped"):
        assert noise not in console, noise
    [run_dir] = run_dirs(workdir)
    log = (run_dir / "train.log").read_text()
    assert "GPU available" in log and "Total params" in log  # kept, where a person debugging looks
    assert "genrun train: vae on mnist · " in err and "parameters · mini: 4,500 train / 500 val" in err
    rows = [line.split("│")[1].strip() for line in out.splitlines() if line.count("│") == 3]
    rows = [row for row in rows if row]  # a long value wraps onto rows with an empty first column
    assert rows[:4] == ["data", "elapsed", "best checkpoint", "note"]
    figures = rows[4:]
    # the bundled digits have no test split: the end-of-run IWAE bound leads, named for the split it used
    assert figures[0] == "val/nll_iwae" and not any(row.startswith("test/") for row in figures)
    assert "val/iwae_k" not in figures and "test/iwae_k" in read_metrics(run_dir)["metrics"]
    assert figures.index("val/loss") < figures.index("train/loss")


def test_summary_order_without_a_validation_stand_in():
    metrics = {"train/loss": 3.0, "val/loss": 2.0, "test/nll_iwae": 1.0, "test/n_images": 500.0,
               "eval/domain_fid": 9.0, "eval/class_fraction/3": 0.1, "perf/train_images_per_sec": 5.0}
    names = [name for name, _ in summary_metrics(metrics, {"test_split": "test files"})]
    assert names == ["eval/domain_fid", "test/nll_iwae", "val/loss", "train/loss", "perf/train_images_per_sec"]


def _fit(max_epochs: int, max_steps: int):
    import lightning as L

    from genrun.callbacks.lean import LeanRichProgressBar
    from genrun.data.lightning import LightningData
    from genrun.data.toy2d import Toy2DDataModule
    from genrun.models.gan import GANModule
    from genrun.nets.gan import MLPDiscriminator, MLPGenerator

    def opt(params):
        return torch.optim.Adam(params, 1e-3)

    module = GANModule(MLPGenerator(latent_dim=4, shape=[2], hidden_dims=[8]),
                       MLPDiscriminator(shape=[2], hidden_dims=[8]), opt, opt)
    bar = LeanRichProgressBar(leave=True)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
                        limit_val_batches=0, max_epochs=max_epochs, max_steps=max_steps, callbacks=[bar])
    trainer.fit(module, LightningData(Toy2DDataModule(n_train=256, n_val=0, batch_size=64)))
    return bar


def test_progress_bar_counts_epochs_from_one_and_steps_when_steps_end_the_run():
    bar = _fit(max_epochs=2, max_steps=-1)
    assert bar.progress is not None
    assert [task.description.strip() for task in bar.progress.tasks][-1] == "Epoch 2/2"
    # four batches an epoch, two optimiser steps a batch (a GAN): max_steps=10 ends it in the second epoch
    bar = _fit(max_epochs=10, max_steps=10)
    [task] = [task for task in bar.progress.tasks if task.description.startswith("Step")]
    assert (task.total, task.completed) == (10, 10)


def _copy_run(source, target, debug: bool):
    shutil.copytree(source, target)
    run = json.loads((target / "run.json").read_text())
    (target / "run.json").write_text(json.dumps({**run, "debug": debug}))
    for path in (target / "checkpoints").iterdir():  # newer than the source
        path.touch()
    return target


def test_checkpoint_choice_prefers_best_skips_debug_runs_and_says_why(trained_vae, tmp_path):
    [run_dir] = run_dirs(trained_vae)
    root = tmp_path / "outputs"
    real = _copy_run(run_dir, root / "train" / "vae_mnist" / "real", debug=False)
    _copy_run(run_dir, root / "train" / "vae_mnist" / "zdebug", debug=True)  # the newest, but a debug run
    path, why = choose_checkpoint(None, root, "vae", "mnist")
    assert path == real / "checkpoints" / "best.ckpt"
    assert "best.ckpt" in why and "ckpt=last" in why and "1 debug run skipped" in why
    path, why = choose_checkpoint("last", root, "vae", "mnist")
    assert path == real / "checkpoints" / "last.ckpt" and "final weights" in why
    assert choose_checkpoint(str(real), root)[0] == real / "checkpoints" / "best.ckpt"
    shutil.rmtree(real)
    with pytest.raises(GenrunError, match=r"1 debug run skipped: name one with ckpt=RUN_DIR"):
        choose_checkpoint(None, root, "vae", "mnist")


def test_sample_reads_the_checkpoints_dataset_with_the_users_keys(trained_vae, monkeypatch, capsys):
    code, out, err = genrun_in_process(["sample", "model=vae", "mode=reconstruct", "num_samples=4",
                                        "dataset.val_fraction=0.2"], trained_vae, monkeypatch, capsys)
    assert code == 0, err
    assert "checkpoint:" in out and "best.ckpt" in out
    assert "fallback" not in err  # the run trained on the bundled digits: read again, no download, no notice
    code, out, err = genrun_in_process(["sample", "model=vae", "dataset.nope=1"], trained_vae, monkeypatch, capsys)
    assert code == 1 and err.strip().splitlines() == [
        "genrun: error: dataset.nope: not a setting of this checkpoint's dataset (it has: source, data_dir, "
        "batch_size, val_fraction, split_seed, binarize, channels, image_size, num_classes)"]


def test_fallback_notice_is_shown_once_with_the_verb_of_the_task(tmp_path, capsys):
    from genrun.data import mnist

    first = mnist.MNISTDataModule(data_dir=str(tmp_path), source="auto")
    first.setup()
    again = mnist.MNISTDataModule(data_dir=str(tmp_path), source="auto")
    again.purpose = "reading test images from"
    again.setup()
    err = capsys.readouterr().err
    assert err.count("WARNING: fallback dataset") == 1 and "training on the 5,000 MNIST digits" in " ".join(
        err.split())
    other = tmp_path / "elsewhere"
    reader = mnist.MNISTDataModule(data_dir=str(other), source="auto")
    reader.purpose = "reading test images from"
    reader.setup()
    assert "reading test images from the 5,000" in " ".join(capsys.readouterr().err.replace("│", " ").split())


def test_gan_learning_rates_are_named_and_logged_by_step(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(
        ["train", "model=gan", "dataset=toy2d", "dataset.n_train=512", "trainer.max_steps=40", "test=false",
         "num_samples=0", "logger=csv", "trainer.log_every_n_steps=5"], workdir, monkeypatch, capsys)
    assert code == 0, err
    [run_dir] = run_dirs(workdir)
    with open(next(run_dir.rglob("metrics.csv"))) as handle:
        rows = list(csv.DictReader(handle))
    logged = [row for row in rows if row.get("lr/generator")]
    assert {"lr/generator", "lr/discriminator", "perf/train_points_per_sec"} <= set(rows[0])
    assert not any(key.startswith("lr-") for key in rows[0])
    assert len(logged) >= 4  # every five optimiser steps, not once an epoch
