"""PacGAN packing in the MLP discriminator (model.pack): what it scores, what it refuses, and that it trains."""

from __future__ import annotations

import functools

import lightning as L
import pytest
import torch

from genrun.data.lightning import LightningData
from genrun.data.toy2d import Toy2DDataModule
from genrun.errors import GenrunError
from genrun.models.gan import GANModule
from genrun.nets.gan import MLPDiscriminator, MLPGenerator


def test_pack_scores_each_group_of_items_once():
    torch.manual_seed(0)
    d = MLPDiscriminator(shape=[2], hidden_dims=[8], pack=2)
    x = torch.randn(7, 2)
    scores = d(x)
    assert scores.shape == (3,)  # the 7th item does not fill a pack and is left out
    changed = x.clone()
    changed[0] += 1.0
    moved = d(changed) != scores
    assert moved.tolist() == [True, False, False]  # item 0 belongs to the first pack only
    assert MLPDiscriminator(shape=[2], hidden_dims=[8])(x).shape == (7,)  # default: off, one score per item


@pytest.mark.parametrize(("kwargs", "why"), [({"pack": 0}, "must be 1"),
                                             ({"pack": 2, "num_classes": 3}, "unconditional")])
def test_pack_refuses_what_it_does_not_support(kwargs, why):
    with pytest.raises(GenrunError, match=f"model.pack=.*{why}"):
        MLPDiscriminator(shape=[2], hidden_dims=[8], **kwargs)


def test_pack_refuses_the_per_item_gradient_penalty():
    opt = functools.partial(torch.optim.Adam, lr=1e-3)
    g, d = MLPGenerator(latent_dim=4, shape=[2], hidden_dims=[8]), MLPDiscriminator(shape=[2], hidden_dims=[8], pack=2)
    with pytest.raises(GenrunError, match="model.pack=2 .*wgan-gp"):
        GANModule(g, d, opt, opt, loss="wgan-gp")


def test_packed_discriminator_trains_in_the_gan_loop():
    torch.manual_seed(0)
    opt = functools.partial(torch.optim.Adam, lr=1e-3, betas=(0.5, 0.9))
    d = MLPDiscriminator(shape=[2], hidden_dims=[16], pack=4)
    module = GANModule(MLPGenerator(latent_dim=4, shape=[2], hidden_dims=[16]), d, opt, opt, loss="hinge")
    before = [p.clone() for p in d.parameters()]
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
              enable_checkpointing=False, limit_val_batches=0, max_steps=8).fit(
        # the last batch of 8 still makes 2 packs
        module, LightningData(Toy2DDataModule(n_train=200, n_val=0, batch_size=64)))
    assert (int(module.d_steps), int(module.g_steps)) == (4, 4)
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters(), strict=True))
