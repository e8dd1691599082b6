"""Config nodes built into objects: a value the constructor rejects becomes one GenrunError naming the key."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from genrun.errors import GenrunError
from genrun.models.optim import build_optimizer
from genrun.tasks import user_error
from genrun.tasks.building import build


def _trainer_node(**values):
    return OmegaConf.create({"_target_": "lightning.pytorch.Trainer", "accelerator": "cpu", "logger": False,
                             "enable_checkpointing": False, "enable_progress_bar": False, **values})


@pytest.mark.parametrize(("values", "start"), [
    ({"precision": "bogus"}, "trainer.precision='bogus': Precision 'bogus' is invalid"),
    ({"max_epochs": -5}, "trainer.max_epochs=-5: "),
    ({"devices": 0}, "trainer.devices=0: "),
    ({"strategy": "bogus"}, "trainer.strategy='bogus': "),
    ({"foo": 1}, "trainer.foo=1: "),  # `+trainer.foo=1`: Lightning's TypeError names it
])
def test_lightning_rejections_name_the_trainer_key(values, start):
    with pytest.raises(GenrunError) as caught:
        build(_trainer_node(**values), "trainer")
    assert str(caught.value).startswith(start) and "\n" not in str(caught.value)


def test_a_value_wired_in_by_interpolation_is_named_by_the_knob_the_user_sets():
    cfg = OmegaConf.create({"model": {"activation": "bogus", "module": {"net": {
        "_target_": "genrun.nets.autoencoder.Autoencoder", "channels": 1, "image_size": 28,
        "activation": "${model.activation}"}}}})
    with pytest.raises(GenrunError, match=r"^model\.activation='bogus': unknown activation"):
        build(cfg.model.module.net, "model.module.net")


def test_our_own_errors_pass_through_and_bugs_are_not_disguised():
    cfg = OmegaConf.create({"_target_": "genrun.models.autoencoder.AutoencoderModule", "beta": -1,
                            "net": {"_target_": "genrun.nets.autoencoder.Autoencoder", "channels": 1,
                                    "image_size": 28}, "optimizer": None})
    with pytest.raises(Exception) as caught:  # GenrunError inside Hydra's wrapper: the task unwraps it
        build(cfg, "model.module")
    assert str(user_error(caught.value)) == ("model.beta=-1: must be non-negative (1 is the VAE, 0 ignores the "
                                             "KL term)")
    # An exception type that says nothing about a config value keeps Hydra's error and its traceback.
    with pytest.raises(InstantiationException, match="ZeroDivisionError"):
        build(OmegaConf.create({"_target_": "operator.truediv", "_args_": [1, 0]}), "thing")


def test_torch_rejections_of_optimizer_values_name_the_optimizer_node():
    params = list(torch.nn.Linear(2, 2).parameters())
    factory = instantiate({"_target_": "torch.optim.Adam", "_partial_": True, "lr": -1})
    with pytest.raises(GenrunError, match=r"^model\.module\.optimizer: Invalid learning rate: -1$"):
        build_optimizer(factory, params)
