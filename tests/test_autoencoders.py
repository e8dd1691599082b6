"""The autoencoder family end to end through the real CLI: train, outputs, sample, evaluate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import MINI, check_ok, genrun_in_process, read_metrics, run_dirs, run_genrun
from genrun.checkpoint import load_checkpoint

MODELS = ["ae", "vae", "conv_vae", "beta_vae"]


def test_each_model_trains_fast_dev_run_in_a_sweep_and_samples(workdir, monkeypatch, capsys):
    """One `-m` sweep trains every autoencoder (one job directory each); then each one samples."""
    check_ok(run_genrun(["train", "-m", f"model={','.join(MODELS)}", MINI, "debug=fast_dev_run", "model.iwae_k=3"],
                        workdir))
    [sweep] = list((workdir / "outputs" / "multirun" / "train").iterdir())
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == [f"{i}_{m}_mnist" for i, m in enumerate(MODELS)]
    for job, model in zip(jobs, MODELS, strict=True):
        assert f"model={model}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert (job / "checkpoints" / "last.ckpt").is_file()
        metrics = read_metrics(job)["metrics"]
        assert math.isfinite(metrics["test/neg_elbo"]) and metrics["test/neg_elbo"] > 0
        if model != "ae":
            assert metrics["test/nll_iwae"] <= metrics["test/neg_elbo"] + 5.0  # the IWAE bound is the tighter one
        code, out, err = genrun_in_process(["sample", f"model={model}", f"ckpt={job}", "num_samples=9", "seed=3"],
                                           workdir, monkeypatch, capsys)
        assert code == 0, err
        sample_dir = max(run_dirs(workdir, "sample"), key=lambda p: p.stat().st_mtime)
        assert sample_dir.parent.name.startswith(f"{model}_")
        images = torch.from_numpy(np.load(sample_dir / "samples.npy"))
        assert images.shape == (9, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
        assert sample_dir.name.startswith("prior_") and str(sample_dir / "prior.png") in out
        # fast_dev_run keeps no best.ckpt: the run's final weights, and the console says so
        assert str(job / "checkpoints" / "last.ckpt") in out and "the run's final weights" in out
    # Without ckpt=, debug runs are never picked: the error says how many were skipped and how to name one.
    code, _, err = genrun_in_process(["sample", "model=ae"], workdir, monkeypatch, capsys)
    assert code == 1 and "1 debug run skipped: name one with ckpt=RUN_DIR" in err


def test_run_directory_holds_everything(trained_vae):
    [run_dir] = run_dirs(trained_vae)
    assert run_dir.parent.name == "vae_mnist"
    for path in (".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
                 "samples/prior.png", "samples/samples.npy", "metrics.json"):
        assert (run_dir / path).is_file(), path
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    payload = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    info = payload["genrun"]
    assert info["pipeline"]["class"].endswith("AutoencoderPipeline") and info["data"]["source"] == "mini"
    assert info["config"]["model"]["latent_dim"] == 20 and info["data"]["split_seed"] == 0
    recorded = read_metrics(run_dir)
    assert recorded["status"] == "completed" and recorded["data"]["split_sizes"]["train"] == 4500
    # A VAE ends with the same sample-quality figures as a GAN, so a sweep compares them on it.
    assert {"eval/domain_fid", "eval/precision", "eval/recall"} <= set(recorded["metrics"])


def test_tensorboard_has_scalars_images_hparams_and_config(trained_vae):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [run_dir] = run_dirs(trained_vae)
    tags = {"scalars": set(), "images": set(), "tensors": set()}
    for event_file in (run_dir / "tensorboard").glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(event_file), size_guidance={"tensors": 0, "images": 0})
        acc.Reload()
        for kind in tags:
            tags[kind] |= set(acc.Tags().get(kind, []))
    assert {"train/loss_step", "val/loss", "val/kl", "val/recon"} <= tags["scalars"]
    # end-of-run figures as ordinary scalars (constants left out), the learning rate under its role
    assert {"test/nll_iwae", "eval/domain_fid", "lr/model", "perf/train_images_per_sec"} <= tags["scalars"]
    assert "test/iwae_k" not in tags["scalars"]
    assert {"samples/prior", "samples/reconstructions"} <= tags["images"]
    assert any(tag.startswith("config") for tag in tags["tensors"])
    plugin_dir = run_dir / "tensorboard"
    raw = b"".join(p.read_bytes() for p in plugin_dir.glob("events.out.tfevents.*"))
    assert b"hparams" in raw and b"model.latent_dim" in raw


def test_sampling_is_reproducible_and_temperature_scales_spread(trained_vae, monkeypatch, capsys):
    def draw(*extra):
        code, _, err = genrun_in_process(["sample", "model=vae", "num_samples=32", *extra], trained_vae, monkeypatch,
                                         capsys)
        assert code == 0, err
        newest = max(run_dirs(trained_vae, "sample"), key=lambda p: p.stat().st_mtime)
        return torch.from_numpy(np.load(newest / "samples.npy"))

    a, b = draw("seed=7"), draw("seed=7")
    assert torch.equal(a, b)
    assert not torch.equal(a, draw("seed=8"))
    cold, hot = draw("seed=7", "temperature=0"), draw("seed=7", "temperature=2.0")
    assert cold.std(0).mean() < 1e-6 < hot.std(0).mean()  # T=0: every sample is the prior mean's decoding


def test_interpolate_and_reconstruct_modes(trained_vae, monkeypatch, capsys):
    for mode, extra in (("interpolate", ["steps=5", "interpolation=linear"]),
                        ("interpolate", ["steps=4", "between=images"]),
                        ("reconstruct", [])):
        code, _, err = genrun_in_process(["sample", "model=vae", f"mode={mode}", "num_samples=8", *extra],
                                         trained_vae, monkeypatch, capsys)
        assert code == 0, err
        newest = max(run_dirs(trained_vae, "sample"), key=lambda p: p.stat().st_mtime)
        images = torch.from_numpy(np.load(newest / "samples.npy"))
        if mode == "interpolate" and "interpolation=linear" in extra:
            assert images.shape[0] == 5 * (8 // 5)
            # a linear path in latent space: the middle decodes between the ends, and ends differ
            assert not torch.equal(images[0], images[4])
        if mode == "reconstruct":
            assert images.shape[0] == 2 * 8  # inputs above their reconstructions
    # fewer than two steps is no path: refused, not silently widened to two
    code, _, err = genrun_in_process(["sample", "model=vae", "mode=interpolate", "steps=1"], trained_vae,
                                     monkeypatch, capsys)
    assert code == 1 and err.strip().splitlines() == [
        "genrun: error: steps=1: an interpolation needs at least 2 steps (its two ends)"]
    code, _, err = genrun_in_process(["sample", "model=vae", "nrow=0"], trained_vae, monkeypatch, capsys)
    assert code == 1 and "nrow=0: must be at least 1" in err


def test_sample_without_checkpoint_says_how_to_train(workdir):
    result = run_genrun(["sample", "model=conv_vae"], workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "genrun train model=conv_vae" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sample_ckpt_accepts_run_dir_and_file(trained_vae, monkeypatch, capsys):
    [run_dir] = run_dirs(trained_vae)
    for ckpt in (run_dir, run_dir / "checkpoints" / "best.ckpt"):
        code, out, err = genrun_in_process(["sample", f"ckpt={ckpt}", "num_samples=4"], trained_vae, monkeypatch,
                                           capsys)
        assert code == 0 and "prior.png" in out, err


def test_evaluate_reports_iwae_likelihood(trained_vae):
    result = check_ok(run_genrun(["evaluate", "model=vae", "iwae_k=5", "image_metrics=false"], trained_vae))
    [eval_dir] = run_dirs(trained_vae, "evaluate")
    metrics = read_metrics(eval_dir)["metrics"]
    assert metrics["test/iwae_k"] == 5 and metrics["test/nll_iwae"] > 0
    assert "nll_iwae" in result.stdout


@pytest.mark.slow  # a whole training process under bf16; kept out of the 10-minute suite
def test_mixed_precision_with_gradient_clipping_trains(workdir):
    """bf16 autocast plus Trainer clipping: genrun must not pick the fused Adam that Lightning cannot clip for,
    and an explicit `fused=true` there is refused in one line naming the key."""
    args = ["train", "model=vae", MINI, "debug=fast_dev_run", "test=false", "trainer.accelerator=cpu",
            "trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0"]
    check_ok(run_genrun(args, workdir))
    result = run_genrun([*args, "model.module.optimizer.fused=true"], workdir)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "model.module.optimizer.fused=true" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("variational,beta", [(True, 1.0), (True, 0.25), (False, 1.0)])
def test_elbo_terms_are_the_per_image_definitions_averaged(likelihood, variational, beta):
    """The training step's batch totals (fewer tensor ops) equal the per-image terms averaged over the batch."""
    from genrun.metrics.likelihood import elbo_terms, gaussian_kl
    from genrun.nets.autoencoder import Autoencoder

    torch.manual_seed(0)
    net = Autoencoder(1, 28, latent_dim=4, hidden_dims=[32], variational=variational, likelihood=likelihood)
    x = torch.rand(6, 1, 28, 28)
    torch.manual_seed(1)
    terms = elbo_terms(net, x, beta)
    torch.manual_seed(1)
    mean, logvar = net.encode(x)
    if variational:
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        kl = gaussian_kl(mean, logvar)
    else:
        z, kl = mean, torch.zeros(len(x))
    recon = -net.log_likelihood(x, net.decode(z))
    expected = {"recon": recon.mean(), "kl": kl.mean(), "neg_elbo": (recon + kl).mean(),
                "loss": (recon + beta * kl).mean()}
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, rtol=1e-5, atol=1e-4, msg=name)
    assert terms["kl"].item() > 0 if variational else terms["kl"].item() == 0
