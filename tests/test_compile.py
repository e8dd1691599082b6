"""model.compile=true: each step's loss goes through torch.compile, and nothing else changes.

The fast tests compile with TorchDynamo's `eager` backend (the graph capture genrun relies on, without
Inductor's C++ build); the end-to-end run with Inductor itself is marked slow.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hydra.utils import instantiate

from conftest import genrun_in_process, read_metrics, run_dirs
from genrun.errors import GenrunError
from genrun.models.gan import GANModule
from genrun.overrides import compose_task

MINI = "dataset.source=mini"
SOURCE = ["dataset=python_source", "dataset.max_chars=40000"]


def module_for(overrides: list[str]):
    cfg = compose_task("train", overrides)
    return instantiate(cfg.model.module)


def gpt_module():
    return module_for(["model=gpt", *SOURCE, "+dataset.vocab_size=50", "model.n_layer=1", "model.n_embd=32",
                       "model.n_head=2", "model.block_size=16"])


@pytest.mark.parametrize("build", ["gpt", "vae", "ddpm"])
def test_compiled_loss_equals_the_eager_one_and_changes_nothing_saved(build):
    torch.manual_seed(0)
    if build == "gpt":
        eager = gpt_module()
        batch = (torch.randint(50, (4, 16)), torch.randint(50, (4, 16)))

        def loss(m):
            return m._loss(*batch, "train")
    elif build == "vae":
        eager = module_for(["model=vae", MINI, "model.hidden_dims=[32]", "model.latent_dim=4"])
        x = torch.rand(8, 1, 28, 28)

        def loss(m):
            torch.manual_seed(1)  # the reparameterisation noise
            return m._terms(x)["loss"]
    else:
        eager = module_for(["model=ddpm", MINI, "model.base_width=8", "model.channel_mults=[1,2]",
                            "model.attention_levels=[]", "model.ema=false", "model.dropout=0"])
        batch = (torch.rand(4, 1, 28, 28), torch.zeros(4, dtype=torch.long))

        def loss(m):  # validation's form: the noise and time steps from a seeded generator
            return m._loss(batch, torch.Generator().manual_seed(2))
    compiled = copy.deepcopy(eager)
    keys = list(compiled.state_dict())
    compiled.compile_training(backend="eager")
    step = getattr(compiled, compiled.compiled_step)
    assert hasattr(step, "_torchdynamo_orig_callable"), "the step was not handed to torch.compile"
    got, want = loss(compiled), loss(eager)
    torch.testing.assert_close(got, want)
    got.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in compiled.parameters())  # gradients flow
    assert list(compiled.state_dict()) == keys  # checkpoints do not depend on the setting
    assert not any(name.startswith("_orig_mod") or "._orig_mod" in name for name in keys)


def test_models_without_a_compiled_step_say_so():
    gan = GANModule.__new__(GANModule)
    with pytest.raises(GenrunError, match="model.compile=true: GANModule has no compiled training step"):
        GANModule.compile_training(gan)


def test_a_compile_value_that_is_not_a_boolean_is_refused_before_anything_runs(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["train", "model=vae", MINI, "model.compile=fast"], workdir, monkeypatch,
                                        capsys)
    assert code != 0
    assert "model.compile='fast'" in err and "boolean" in err and len(err.strip().splitlines()) == 1
    assert not run_dirs(workdir)


@pytest.mark.slow
def test_vae_trains_compiled_with_inductor_and_its_checkpoint_samples(workdir, monkeypatch, capsys):
    code, _out, err = genrun_in_process(["train", "model=vae", MINI, "model.compile=true", "trainer.max_epochs=1",
                                         "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
                                         "test=false", "num_samples=0", "model.iwae_k=0"],
                                        workdir, monkeypatch, capsys)
    assert code == 0, err
    run = run_dirs(workdir)[0]
    assert read_metrics(run)["global_step"] == 5
    code, _out, err = genrun_in_process(["sample", f"ckpt={run}", "num_samples=4"], workdir, monkeypatch, capsys)
    assert code == 0, err
