"""Pipelines: rebuilt from a checkpoint alone, older checkpoints converted, classes checked, knobs typed and
owned by each model, frozen references pinned by digest, the shared EMA."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from conftest import genrun_in_process
from genrun.checkpoint import atomic_save, load_checkpoint
from genrun.errors import GenrunError
from genrun.families.autoencoder import AutoencoderPipeline
from genrun.families.gan import GANKnobs
from genrun.nets.autoencoder import Autoencoder
from genrun.pipeline import frozen_reference, load_pipeline, parse_knobs, pipeline_spec

FORMAT1 = Path(__file__).parent / "data" / "format1"


@pytest.mark.parametrize("name", ["vae", "conv_vae", "dcgan", "cgan", "gan_toy", "gpt", "char_lstm", "classifier"])
def test_checkpoints_written_before_pipelines_still_sample(name, tmp_path, monkeypatch, capsys):
    """tests/data/format1 holds one small checkpoint of each model as the previous genrun wrote them."""
    knobs = ["max_new_tokens=12"] if name in ("gpt", "char_lstm") else []
    code, out, err = genrun_in_process(["sample", f"ckpt={FORMAT1 / f'{name}.ckpt'}", "num_samples=4", *knobs],
                                       tmp_path, monkeypatch, capsys)
    assert code == 0, err
    (run,) = (tmp_path / "outputs" / "sample").glob("*/*")
    written = {p.name for p in run.iterdir()}
    expected = {"gpt": "samples.txt", "char_lstm": "samples.txt", "classifier": "predict.png"}
    assert expected.get(name, "samples.npy") in written, (written, out)


def test_what_a_checkpoint_states_and_what_is_refused(tmp_path):
    payload = load_checkpoint(FORMAT1 / "vae.ckpt")
    pipeline = load_pipeline(payload, "vae.ckpt")
    assert isinstance(pipeline, AutoencoderPipeline) and pipeline.net.init_config["hidden_dims"] == [16]
    spec = pipeline_spec(pipeline, torch.nn.ModuleDict({"net": pipeline.net}))
    assert spec["components"]["net"] == {"class": "genrun.nets.autoencoder.Autoencoder",
                                         "config": pipeline.net.init_config, "prefix": "net."}

    def refused(mutate, message):
        stored = {"format": 2, "class": spec["class"], "settings": {},
                  "components": {"net": dict(spec["components"]["net"])}}
        mutate(stored)
        with pytest.raises(GenrunError, match=message):
            load_pipeline({"state_dict": payload["state_dict"], "genrun": {"pipeline": stored}}, "x.ckpt")

    refused(lambda s: s.update({"class": "os.system"}), r"refused: pipeline 'os.system' is not one of genrun's own")
    refused(lambda s: s.update({"class": "genrun.runs.RunSnapshot"}), r"pipeline 'genrun.runs.RunSnapshot'")
    refused(lambda s: s["components"]["net"].update({"class": "torch.nn.Linear"}),
            r"refused: component net 'torch.nn.Linear'")
    refused(lambda s: s["components"]["net"].update({"prefix": "nothing."}), r"no weights for component net")
    refused(lambda s: s["components"]["net"]["config"].update({"latent_dim": 3}),
            r"component net does not match its weights")
    refused(lambda s: s.update({"format": 7}), r"pipeline format 7; this genrun reads format 2")
    with pytest.raises(GenrunError, match=r"older genrun \(model family 'flow'\)"):
        load_pipeline({"state_dict": {}, "genrun": {"family": "flow", "config": {}}}, "old.ckpt")


def test_a_frozen_component_is_pinned_to_the_file_it_came_from(tmp_path):
    source = tmp_path / "vae.ckpt"
    shutil.copy(FORMAT1 / "vae.ckpt", source)
    net = frozen_reference(source, "net")
    assert not any(p.requires_grad for p in net.parameters())
    spec = pipeline_spec(AutoencoderPipeline({"net": net}), torch.nn.Module())
    reference = spec["components"]["net"]["ref"]
    assert reference["path"] == str(source) and len(reference["digest"]) == 64
    user = {"state_dict": {}, "genrun": {"pipeline": spec}}
    again = load_pipeline(user, "user.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(again.net.state_dict().values(), net.state_dict().values(),
                                                 strict=True))
    payload = load_checkpoint(source)
    payload["state_dict"]["net.prior_std"] = payload["state_dict"]["net.prior_std"] * 2
    atomic_save(payload, source)  # a valid file, but not the one this run was trained on
    with pytest.raises(GenrunError, match=r"component net refers to .*vae.ckpt, which has changed since"):
        load_pipeline(user, "user.ckpt")


def test_each_model_owns_its_knobs_typed_and_checked(tmp_path, monkeypatch, capsys):
    vae = FORMAT1 / "vae.ckpt"
    for args, message in [
        (["truncation=0.5"], "truncation does not apply to model=vae (its knobs: steps, interpolation"),
        (["steps=abc"], "steps='abc': expected an integer"),
        (["mode=interpolate", "steps=1"], "steps=1: an interpolation needs at least 2 steps"),
        (["mode=arithmetic"], "mode=arithmetic: model=vae supports prior, interpolate, reconstruct"),
        (["num_sample=5"], "num_sample does not apply to model=vae (its knobs: steps, interpolation, between, nrow, "
                           "iwae_k; the task's own settings: seed, device, ckpt, mode, num_samples, temperature"),
    ]:
        code, _out, err = genrun_in_process(["sample", f"ckpt={vae}", *args], tmp_path, monkeypatch, capsys)
        assert code == 1 and message in err and err.count("\n") == 1, (args, err)
    knobs = parse_knobs(GANKnobs, {"arithmetic": {"a": [4, 5]}, "truncation": 1}, "model=dcgan")
    assert knobs.arithmetic == {"a": (4, 5), "b": (3, 4, 5), "c": (6, 7, 8)} and knobs.truncation == 1.0
    with pytest.raises(GenrunError, match=r"^arithmetic\.d: the groups are a, b and c$"):
        parse_knobs(GANKnobs, {"arithmetic": {"d": [1]}}, "model=dcgan")
    code, out, _err = genrun_in_process(["sample", "--help", f"ckpt={FORMAT1 / 'dcgan.ckpt'}"], tmp_path, monkeypatch,
                                        capsys)
    assert code == 0 and "truncation=None  (float | None)" in out and "mode=prior | interpolate | arithmetic" in out
    # A model with no training has no run to find: its help is its own pipeline's knobs, not every pipeline's.
    code, out, _err = genrun_in_process(["sample", "--help", "model=deepdream"], tmp_path, monkeypatch, capsys)
    assert code == 0 and "knobs of model=deepdream, which needs no training (DeepDreamPipeline)" in out
    assert "octave_scale=1.4" in out and "no trained run" not in out and "truncation=" not in out


def test_the_shared_ema_averages_after_each_step_with_a_warm_up():
    from genrun.models.autoencoder import AutoencoderModule

    net = Autoencoder(1, 28, latent_dim=2, hidden_dims=[4])
    module = AutoencoderModule(net, optimizer=torch.optim.SGD, ema=True, ema_decay=0.999)
    start = module.ema_net.encoder[1][0].weight.detach().clone()
    with torch.no_grad():
        net.encoder[1][0].weight.add_(1.0)
    module.update_ema()
    decay = min(0.999, 2 / 11)  # the first step's warm-up decay
    expected = start + (net.encoder[1][0].weight - start) * (1 - decay)
    assert torch.allclose(module.ema_net.encoder[1][0].weight, expected)
    assert module.averaged("net") is module.ema_net and module.pipeline().net is module.ema_net
    assert not AutoencoderModule(Autoencoder(1, 28, latent_dim=2, hidden_dims=[4]), torch.optim.SGD).use_ema


def test_the_ema_steps_once_per_optimiser_step_under_gradient_accumulation():
    import lightning as L

    from genrun.data.base import InMemoryDataModule
    from genrun.data.lightning import LightningData
    from genrun.models.autoencoder import AutoencoderModule

    class Noise(InMemoryDataModule):
        def load(self):
            x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
            return {"train": (x, torch.zeros(64)), "val": (x[:0], torch.zeros(0)), "test": (x[:0], torch.zeros(0))}

    module = AutoencoderModule(Autoencoder(1, 28, latent_dim=2, hidden_dims=[4]),
                               optimizer=lambda params: torch.optim.SGD(params, 0.01), ema=True)
    L.Trainer(max_steps=3, accumulate_grad_batches=2, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0).fit(
        module, datamodule=LightningData(Noise(batch_size=8)))
    assert int(module.ema_steps) == 3  # six batches, three optimiser steps
