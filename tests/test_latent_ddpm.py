"""Latent diffusion: DDPM in a frozen autoencoder run's latent space, with the autoencoder recorded by path
and digest and the latent scale measured from the training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import MINI, genrun_in_process, run_dirs
from genrun.checkpoint import load_checkpoint
from genrun.pipeline import load_pipeline

SHORT = [MINI, "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
         "image_metrics=false", "num_samples=4"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    (root / "data").mkdir()
    monkeypatch = pytest.MonkeyPatch()
    capsys = _Capture()
    try:
        code, _out, err = genrun_in_process(["train", "model=conv_vae", *SHORT, "model.iwae_k=2"], root,
                                            monkeypatch, capsys)
        assert code == 0, err
        [autoencoder] = run_dirs(root)
        code, _out, err = genrun_in_process(["train", "model=latent_ddpm", f"model.autoencoder={autoencoder}",
                                             "model.width=32", "model.depth=2", "model.timesteps=50", *SHORT],
                                            root, monkeypatch, capsys)
        assert code == 0, err
    finally:
        monkeypatch.undo()
    [latent] = [run for run in run_dirs(root) if run.parent.name.startswith("latent_ddpm")]
    return root, autoencoder, latent


class _Capture:
    """Just enough of pytest's capsys for genrun_in_process in a module-scoped fixture."""

    def readouterr(self):
        return "", ""


def test_checkpoint_records_the_autoencoder_by_digest_and_the_measured_scale(runs):
    _root, autoencoder, latent = runs
    payload = load_checkpoint(latent / "checkpoints" / "last.ckpt")
    spec = payload["genrun"]["pipeline"]
    assert spec["class"].endswith("LatentDiffusionPipeline")
    reference = spec["components"]["autoencoder"]["ref"]
    assert reference["path"].startswith(str(autoencoder)) and len(reference["digest"]) == 64
    assert not any(key.startswith("autoencoder.") and key in spec for key in payload["state_dict"])
    # the scale is one over the spread of the training latents, measured again here from the same images
    pipeline = load_pipeline(payload, latent)
    from genrun.data.mnist import MNISTDataModule

    data = MNISTDataModule(data_dir=str(_root / "data"), source="mini")
    data.setup()
    images = data.splits["train"][0][:2000]
    with torch.no_grad():
        spread = pipeline.autoencoder.encode(images)[0].std()
    assert spec["settings"]["latent_scale"] == pytest.approx(float(1 / spread), rel=1e-4)
    # the chain's space and back: the autoencoder's own reconstruction
    with torch.no_grad():
        round_trip = pipeline.to_images(pipeline.to_chain(images[:8]))
        net = pipeline.autoencoder
        direct = net.mean_image(net.decode(net.encode(images[:8])[0]))
    assert torch.allclose(round_trip, direct.clamp(0, 1), atol=1e-5)


def test_samples_decode_to_images_and_a_changed_autoencoder_is_refused(runs, monkeypatch, capsys):
    root, autoencoder, latent = runs
    code, _out, err = genrun_in_process(["sample", f"ckpt={latent}", "num_samples=6", "steps=5"], root,
                                        monkeypatch, capsys)
    assert code == 0, err
    newest = max(run_dirs(root, "sample"), key=lambda p: p.stat().st_mtime)
    images = np.load(newest / "samples.npy")
    assert images.shape == (6, 1, 28, 28) and images.min() >= 0 and images.max() <= 1 and images.std() > 0
    reference = load_checkpoint(latent / "checkpoints" / "last.ckpt")["genrun"]["pipeline"]["components"]
    referenced = reference["autoencoder"]["ref"]["path"]
    from pathlib import Path

    original = Path(referenced).read_bytes()
    try:
        from genrun.checkpoint import atomic_save

        payload = load_checkpoint(referenced)
        payload["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        atomic_save(payload, referenced)  # retrained in place: a different file under the same name
        code, _out, err = genrun_in_process(["sample", f"ckpt={latent}", "num_samples=2", "steps=2"], root,
                                            monkeypatch, capsys)
        assert code == 1 and "has changed since this run used it" in err and len(err.strip().splitlines()) == 1
    finally:
        Path(referenced).write_bytes(original)


@pytest.mark.parametrize("setting, message", [
    ([], "model.autoencoder: required"),
    (["model.autoencoder=LATENT"], "refers to component 'net' of"),  # a diffusion run is no autoencoder
])
def test_a_wrong_autoencoder_is_one_line(runs, monkeypatch, capsys, setting, message):
    root, _autoencoder, latent = runs
    setting = [s.replace("LATENT", str(latent)) for s in setting]
    code, _out, err = genrun_in_process(["train", "model=latent_ddpm", *setting, *SHORT], root, monkeypatch, capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
