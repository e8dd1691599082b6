"""Every model × dataset config composes with Hydra's compose API; matching pairs resolve fully."""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from genrun import resolvers
from genrun.configs import config_dir, config_groups

GROUPS = config_groups()
TEXT_MODELS, TEXT_DATA = {"gpt", "char_lstm"}, {"text", "shakespeare", "python_source"}
EXTRA = {"image_folder": ["dataset.path=/tmp/images"], "text": ["dataset.path=/tmp/corpus.txt"]}


def _compose(task: str, overrides: list[str]):
    resolvers.register()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name=task):
        return compose(config_name=task, overrides=overrides)


def _compatible(model: str, dataset: str) -> bool:
    if model in TEXT_MODELS or dataset in TEXT_DATA:
        return model in TEXT_MODELS and dataset in TEXT_DATA
    return dataset != "toy2d" or model == "gan"


@pytest.mark.parametrize("model,dataset", list(itertools.product(GROUPS["model"], GROUPS["dataset"])))
def test_model_dataset_pair_composes(model, dataset):
    cfg = _compose("train", [f"model={model}", f"dataset={dataset}", *EXTRA.get(dataset, [])])
    assert cfg.model.module._target_.startswith("genrun.models.")
    assert cfg.dataset._target_.startswith("genrun.data.")
    if _compatible(model, dataset):
        OmegaConf.to_container(cfg.model, resolve=True)  # every ${dataset.*} the model needs exists
        OmegaConf.to_container(cfg.dataset, resolve=True)


@pytest.mark.parametrize("group", ["trainer", "logger", "debug", "experiment", "tokenizer"])
def test_every_choice_of_other_groups_composes(group):
    for choice in GROUPS.get(group, []):
        cfg = _compose("train", [f"{group}={choice}"])
        OmegaConf.to_container(cfg.trainer, resolve=True)


@pytest.mark.parametrize("task", ["sample", "evaluate"])
def test_inference_configs_compose_with_and_without_a_model(task):
    assert _compose(task, []).task == task
    assert _compose(task, ["model=vae"]).model.latent_dim == 20


def test_trainer_configs_list_only_lightning_trainer_arguments():
    """Any other Trainer argument is a plain trainer.X override (genrun.overrides asks Lightning's signature),
    so the trainer configs hold only genrun's chosen defaults, and each must be a real argument."""
    from genrun.overrides import trainer_arguments

    arguments = trainer_arguments()
    for choice in GROUPS["trainer"]:
        keys = set(_compose("train", [f"trainer={choice}"]).trainer) - {"_target_"}
        assert keys <= set(arguments), (choice, keys - set(arguments))
