"""The prior over a VQ-VAE's codes: raster-order sampling that agrees with the training objective, codes in
range, temperature 0 deterministic, a tiny VQ-VAE -> vq_prior -> sample run through the real CLI (sampling
without Lightning), the cached code grids, and bad input refused in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import MINI, check_ok, genrun_in_process, read_metrics, run_dirs
from genrun.checkpoint import load_checkpoint
from genrun.errors import GenrunError
from genrun.families.vq_prior import VQPriorPipeline, code_logits, transformer_vocabulary
from genrun.nets.gpt import GPT
from genrun.nets.pixelcnn import GatedPixelCNN
from genrun.nets.vq import VQVAE
from genrun.pipeline import load_pipeline

SHORT = [MINI, "dataset.batch_size=32", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "image_metrics=false", "num_samples=4",
         "logger=csv"]
TINY_VQVAE = ["model.codebook_size=16", "model.code_dim=4", "model.width=8", "model.res_blocks=1"]
TINY_PRIOR = ["model.transformer.n_layer=1", "model.transformer.n_head=2", "model.transformer.n_embd=16"]


def tiny_pipeline(kind: str, num_classes: int = 0) -> VQPriorPipeline:
    torch.manual_seed(0)
    vqvae = VQVAE(channels=1, image_size=8, codebook_size=6, code_dim=2, width=4, downsamples=1, res_blocks=1)
    if kind == "transformer":
        prior = GPT(vocab_size=transformer_vocabulary(6, num_classes), block_size=16, n_layer=1, n_head=2, n_embd=8)
    else:
        prior = GatedPixelCNN(channels=1, levels=6, width=8, layers=2, num_classes=num_classes)
    return VQPriorPipeline({"prior": prior, "vqvae": vqvae}, {"prior": kind, "num_classes": num_classes}).eval()


@pytest.mark.parametrize("kind, num_classes", [("transformer", 0), ("transformer", 3), ("pixelcnn", 3)])
def test_sampled_codes_are_in_range_and_temperature_0_is_the_teacher_forced_argmax(kind, num_classes):
    pipeline = tiny_pipeline(kind, num_classes)
    labels = pipeline.labels(None, 5)
    hot = pipeline.codes(5, 3.0, torch.Generator().manual_seed(1), labels)
    assert hot.shape == (5, 4, 4) and hot.dtype == torch.long and hot.min() >= 0 and hot.max() < 6
    assert len(hot.unique()) > 1
    greedy = pipeline.codes(5, 0.0, torch.Generator().manual_seed(1), labels)
    again = pipeline.codes(5, 0.0, torch.Generator().manual_seed(2), labels)
    assert torch.equal(greedy, again)
    # each drawn code is the arg max of the logits the training loss uses, given the codes before it: the
    # sampler (KV cache or raster cache) and the objective read the grid in the same order
    with torch.no_grad():
        forced = code_logits(pipeline.prior, kind, greedy, labels, 6).argmax(1)
    assert torch.equal(forced, greedy)
    images = pipeline.decode(greedy)
    assert images.shape == (5, 1, 8, 8) and images.min() >= 0 and images.max() <= 1


def test_a_prior_of_another_codebook_size_is_refused():
    pipeline = tiny_pipeline("transformer")
    other = GPT(vocab_size=transformer_vocabulary(9, 0), block_size=16, n_layer=1, n_head=2, n_embd=8)
    with pytest.raises(GenrunError, match="the prior models 9 codes, the VQ-VAE has 6"):
        VQPriorPipeline({"prior": other, "vqvae": pipeline.vqvae}, {"prior": "transformer"})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("vq")
    (root / "data").mkdir()
    monkeypatch = pytest.MonkeyPatch()
    try:
        code, _out, err = genrun_in_process(["train", "model=vqvae", *TINY_VQVAE, *SHORT], root, monkeypatch,
                                            _Capture())
        assert code == 0, err
        [vqvae] = run_dirs(root)
        code, _out, err = genrun_in_process(["train", "model=vq_prior", *TINY_PRIOR, *SHORT], root, monkeypatch,
                                            _Capture())
        assert code == 0, err
    finally:
        monkeypatch.undo()
    [prior] = [run for run in run_dirs(root) if run.parent.name.startswith("vq_prior")]
    return root, vqvae, prior


class _Capture:
    """Just enough of pytest's capsys for genrun_in_process in a module-scoped fixture."""

    def readouterr(self):
        return "", ""


def test_vqvae_run_logs_reconstruction_and_codebook_use(runs):
    _root, vqvae, _prior = runs
    metrics = read_metrics(vqvae)["metrics"]
    assert {"train/recon", "train/perplexity", "train/codes_used", "val/recon", "val/perplexity",
            "val/codes_used", "test/recon_mse", "test/codes_used"} <= set(metrics)
    assert 0 < metrics["test/codes_used"] <= 1 and 1 <= metrics["test/perplexity"] <= 16
    pairs = np.load(vqvae / "samples" / "samples.npy")  # mode=reconstruct: inputs above reconstructions
    assert pairs.shape == (8, 1, 28, 28) and (vqvae / "samples" / "reconstruct.png").is_file()


def test_prior_records_the_vqvae_by_digest_and_trains_on_cached_code_grids(runs):
    root, vqvae, prior = runs
    payload = load_checkpoint(prior / "checkpoints" / "last.ckpt")
    reference = payload["genrun"]["pipeline"]["components"]["vqvae"]["ref"]
    assert reference["path"].startswith(str(vqvae)) and len(reference["digest"]) == 64
    metrics = read_metrics(prior)["metrics"]
    assert metrics["test/bits_per_code"] == pytest.approx(metrics["test/nats_per_code"] / np.log(2))
    assert {"train/bits_per_code", "val/bits_per_code"} <= set(metrics)
    [cache] = (root / "outputs" / ".cache" / "vq_codes").glob("*.pt")
    cached = load_checkpoint(cache)
    assert cached["vqvae"]["digest"] == reference["digest"]
    from genrun.data.mnist import MNISTDataModule

    data = MNISTDataModule(data_dir=str(root / "data"), source="mini", batch_size=32)
    data.setup()
    pipeline = load_pipeline(payload, prior)
    train = data.splits["train"][0]
    assert torch.equal(cached["state_dict"]["train"][:50], pipeline.vqvae.codes(train[:50]))
    assert cached["state_dict"]["train"].shape == (len(train), 7, 7)


def test_two_stage_sampling_from_the_checkpoint_without_lightning(runs):
    """genrun sample on the prior run in a process that must never import Lightning: temperature 0 (the same
    images as the checkpoint's pipeline draws here, whatever the seed), and a label on an unconditional prior
    (refused in one line)."""
    root, _vqvae, prior = runs
    code = (
        "import sys\nfrom genrun.cli import main\n"
        f"base = ['sample', 'ckpt={prior}', 'num_samples=3']\n"
        "assert main(base + ['temperature=0', 'seed=5']) == 0\n"
        "assert main(base + ['label=1']) == 1\n"
        "assert 'lightning' not in sys.modules, 'genrun sample imported lightning'\n"
    )
    result = check_ok(subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                                     env={"GENRUN_OUTPUT_DIR": str(root / "outputs"), "PATH": "",
                                          **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}))
    assert "label=1: this model is not class-conditional" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    [drawn] = [run for run in run_dirs(root, "sample") if (run / "samples.npy").is_file()]
    samples = np.load(drawn / "samples.npy")
    assert samples.shape == (3, 1, 28, 28) and samples.std() > 0
    checkpoint = next((prior / "checkpoints").glob("best.ckpt"), prior / "checkpoints" / "last.ckpt")
    pipeline = load_pipeline(load_checkpoint(checkpoint), checkpoint)
    again = pipeline.images(3, 0.0, torch.Generator().manual_seed(0))
    assert np.allclose(samples, again.numpy(), atol=1e-6)


def test_latent_diffusion_takes_a_vqvae_run_as_its_autoencoder(runs):
    from genrun.families.latent_diffusion import encode_latents
    from genrun.models.latent_ddpm import load_autoencoder

    _root, vqvae, _prior = runs
    net = load_autoencoder(str(vqvae), 1, 28)
    x = torch.rand(3, 1, 28, 28)
    latents = encode_latents(net, x)
    assert latents.shape == (3, net.latent_dim)
    with torch.no_grad():
        assert torch.allclose(net.decode(latents), net.decode_codes(net.codes(x)))


def test_settings_that_do_not_fit_the_vqvae_are_refused(runs):
    from genrun.models.vq_prior import VQPriorModule

    root, vqvae, prior = runs
    base = {"vqvae": str(vqvae), "prior": "transformer", "transformer": {"n_layer": 1, "n_head": 1, "n_embd": 8},
            "pixelcnn": {}, "optimizer": None, "channels": 1, "image_size": 28, "output_root": str(root / "outputs")}
    cases = [({"vqvae": str(prior)}, f"model.vqvae={prior}: {prior}/checkpoints/best.ckpt holds a model=vq_prior "
                                     "run, not a VQ-VAE"),
             ({"vqvae": str(root / "nowhere")}, "no such run directory or checkpoint"),
             ({"codebook_size": 99}, "model.codebook_size=99: the VQ-VAE"),
             ({"prior": "lstm"}, "model.prior=lstm: choose transformer or pixelcnn"),
             ({"image_size": 32}, "it was trained on 1-channel 28px images; this dataset has 1-channel 32px")]
    for change, message in cases:
        with pytest.raises(GenrunError) as caught:
            VQPriorModule(**{**base, **change})
        assert message in str(caught.value) and "\n" not in str(caught.value), change


def test_without_any_vqvae_run_the_prior_asks_for_one(tmp_path, monkeypatch, capsys):
    (tmp_path / "data").mkdir()
    code, _out, err = genrun_in_process(["train", "model=vq_prior", *SHORT], tmp_path, monkeypatch, capsys)
    assert code == 1 and "model.vqvae: required" in err and len(err.strip().splitlines()) == 1
