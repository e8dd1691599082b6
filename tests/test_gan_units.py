"""GAN networks, latents, toy data and metrics, and the training loop's safety rules, in-process on CPU."""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch

from genrun.checkpoint import checkpoint_io, load_checkpoint, non_finite_keys
from genrun.data.base import InMemoryDataModule
from genrun.data.lightning import LightningData
from genrun.data.toy2d import KINDS, Toy2DDataModule, generate
from genrun.errors import GenrunError
from genrun.families.gan import GANPipeline
from genrun.metrics.swd import sliced_wasserstein
from genrun.metrics.toy2d import toy_metrics
from genrun.models.gan import GANModule, gradient_penalty
from genrun.nets.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from genrun.pipeline import load_pipeline, pipeline_spec
from genrun.sampling.latents import draw_latents


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                     num_sanity_val_steps=0, **kwargs)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32), (3, 64)])
@pytest.mark.parametrize("num_classes", [0, 10])
def test_dcgan_shapes_and_range(channels, size, num_classes):
    g = DCGANGenerator(channels, size, latent_dim=8, width=8, num_classes=num_classes)
    d = DCGANDiscriminator(channels, size, width=8, num_classes=num_classes)
    labels = torch.arange(4) % 10 if num_classes else None
    out = g(torch.randn(4, 8), labels)
    assert out.shape == (4, channels, size, size)
    assert out.abs().max() <= 1 and g.to_data(out).min() >= 0 and g.to_data(out).max() <= 1
    assert d(out, labels).shape == (4,)


def test_discriminator_normalisation_follows_loss_and_spectral_norm():
    has = lambda d, kind: any(isinstance(m, kind) for m in d.modules())  # noqa: E731
    assert has(DCGANDiscriminator(1, 28, width=8), torch.nn.BatchNorm2d)
    assert has(DCGANDiscriminator(1, 28, width=8, loss="wgan-gp"), torch.nn.GroupNorm)
    sn = DCGANDiscriminator(1, 28, width=8, spectral_norm=True)
    assert not has(sn, torch.nn.BatchNorm2d)
    assert all(hasattr(m, "parametrizations") for m in sn.modules() if isinstance(m, torch.nn.Conv2d))
    mlp = MLPDiscriminator(shape=[2], spectral_norm=True)
    assert all(hasattr(m, "parametrizations") for m in mlp.modules() if isinstance(m, torch.nn.Linear))


def test_wgan_gp_refuses_batch_norm_critic():
    opt = functools.partial(torch.optim.Adam, lr=1e-3)
    with pytest.raises(GenrunError, match="d_norm=batch"):
        GANModule(DCGANGenerator(1, 28, 8, 8), DCGANDiscriminator(1, 28, 8, norm="batch"), opt, opt, loss="wgan-gp")


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    critic = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[0.6, 0.8]]))
    penalty = gradient_penalty(lambda x, y: critic(x).squeeze(1), torch.randn(16, 2), torch.randn(16, 2), None)
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def test_latents_temperature_truncation_and_seed():
    z = draw_latents(4000, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(z, draw_latents(4000, 8, generator=torch.Generator().manual_seed(1)))
    hot = draw_latents(4000, 8, temperature=0.5, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(hot, 0.5 * z)
    cut = draw_latents(4000, 8, truncation=0.5, generator=torch.Generator().manual_seed(1))
    assert cut.abs().max() <= 0.5 and cut.std() > 0.2  # re-drawn, not clamped onto the bound
    assert draw_latents(100, 8, truncation=1e-3).abs().max() <= 1e-3
    with pytest.raises(GenrunError, match="truncation"):
        draw_latents(4, 8, truncation=0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_toy_data_is_seeded_and_real_data_scores_perfectly(kind):
    x, y = generate(kind, 2500, seed=3)
    assert torch.equal(x, generate(kind, 2500, seed=3)[0]) and x.shape == (2500, 2)
    info = Toy2DDataModule(kind=kind).info()
    metrics = toy_metrics(x, kind, info["mode_std"])
    assert metrics["toy/modes_covered"] == metrics["toy/num_modes"]
    assert metrics["toy/hq_fraction"] > 0.97


def test_toy_metrics_flag_collapse_and_noise():
    x, y = generate("ring8", 2500, seed=0)
    collapsed = toy_metrics(x[y == 0], "ring8", 0.02)
    assert collapsed["toy/modes_covered"] == 1 and collapsed["toy/hq_fraction"] > 0.97
    assert collapsed["toy/mode_kl"] == pytest.approx(math.log(8), rel=1e-4)
    noise = toy_metrics(torch.randn(2500, 2) * 3, "ring8", 0.02)
    assert noise["toy/hq_fraction"] < 0.05 and noise["toy/modes_covered"] == 0


def test_toy2d_refuses_image_keys_and_unknown_kind():
    with pytest.raises(GenrunError, match="dataset.kind"):
        Toy2DDataModule(kind="spiral")
    with pytest.raises(GenrunError, match="channels"):
        Toy2DDataModule(channels=1)


def test_sliced_wasserstein_discriminates():
    a, b = generate("grid25", 2000, 0)[0], generate("grid25", 2000, 1)[0]
    assert 3 * sliced_wasserstein(a, b) < sliced_wasserstein(a, b + 1.0)


def _toy_module(**kwargs) -> GANModule:
    opt = kwargs.pop("optimizer", functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.999)))
    g = MLPGenerator(latent_dim=4, shape=[2], hidden_dims=[16])
    d = MLPDiscriminator(shape=[2], hidden_dims=[16])
    return GANModule(g, d, opt, opt, **kwargs)


@pytest.mark.parametrize("precision", ["32-true", "16-mixed"])
def test_gradient_clipping_holds_under_manual_optimisation(precision):
    """With SGD(lr=1), a step moves the weights by exactly the (clipped) gradient: its norm is the bound.
    Under fp16 mixed precision the clip must see unscaled gradients, or the step would be ~65536x too small."""
    torch.manual_seed(0)
    module = _toy_module(optimizer=functools.partial(torch.optim.SGD, lr=1.0), clip_grad_norm=0.01, ema=False)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    data = Toy2DDataModule(n_train=64, n_val=0, n_test=8, batch_size=64)
    trainer = quiet_trainer(max_steps=2, enable_checkpointing=False, precision=precision)
    trainer.fit(module, LightningData(data))  # one D step and one G step
    for prefix in ("discriminator.", "generator."):
        moved = torch.cat([(module.state_dict()[k] - before[k]).flatten() for k in before if k.startswith(prefix)])
        assert 0.005 < moved.norm() <= 0.01 + 1e-6, prefix


class _GoesBad(InMemoryDataModule):
    """Toy points whose second epoch holds a NaN: a real way for a loss to turn non-finite mid-run."""

    def load(self):
        x, y = generate("ring8", 64, 0)
        return {"train": (x, y), "val": (x[:0], y[:0]), "test": (x, y)}

    def train_dataloader(self):
        if self.trainer.current_epoch >= 1:
            x, y = self.splits["train"]
            self.splits["train"] = (x.clone().index_fill_(0, torch.tensor([5]), float("nan")), y)
        return super().train_dataloader()


def test_non_finite_loss_stops_at_once_and_keeps_the_last_good_checkpoint(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = _toy_module()
    callback = ModelCheckpoint(dirpath=tmp_path, save_last=True, monitor=None)
    trainer = quiet_trainer(max_epochs=3, callbacks=[callback], plugins=[checkpoint_io()],
                            reload_dataloaders_every_n_epochs=1)
    with pytest.raises(GenrunError, match=r"non-finite discriminator loss .* epoch 1, batch 0"):
        trainer.fit(module, LightningData(_GoesBad(batch_size=32)))
    assert int(module.d_steps) == 2  # epoch 0's two batches; the bad batch updated nothing
    saved = load_checkpoint(tmp_path / "last.ckpt")
    assert saved["epoch"] == 0 and not non_finite_keys(saved["state_dict"])
    assert not non_finite_keys(module.state_dict())


def test_ema_generator_is_what_sampling_rebuilds():
    torch.manual_seed(0)
    module = _toy_module(ema_decay=0.9)
    data = Toy2DDataModule(n_train=640, n_val=64, batch_size=64)
    quiet_trainer(max_steps=20, enable_checkpointing=False).fit(module, LightningData(data))
    assert module.averaged("generator") is module.ema_generator
    live, ema = module.generator.state_dict(), module.ema_generator.state_dict()
    assert any(not torch.equal(live[k], ema[k]) for k in live)
    # What a checkpoint stores rebuilds the averaged generator, from the state_dict alone.
    spec = pipeline_spec(module.pipeline(), module)
    assert spec["components"]["generator"]["prefix"] == "ema_generator."
    rebuilt = load_pipeline({"state_dict": module.state_dict(), "genrun": {"pipeline": spec}}, "in memory")
    assert isinstance(rebuilt, GANPipeline)
    assert all(torch.equal(rebuilt.generator.state_dict()[k], ema[k]) for k in ema)


@pytest.mark.parametrize("loss", ["hinge", "wgan-gp"])
def test_other_losses_train_with_n_critic(loss):
    torch.manual_seed(0)
    module = _toy_module(loss=loss, n_critic=2)
    quiet_trainer(max_steps=6, enable_checkpointing=False, limit_val_batches=0).fit(
        module, LightningData(Toy2DDataModule(n_train=256, n_val=0, batch_size=64)))
    assert (int(module.d_steps), int(module.g_steps)) == (4, 2)
    assert all(torch.isfinite(p).all() for p in module.parameters())
