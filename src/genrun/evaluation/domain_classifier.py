"""The domain classifier behind the sample-quality metrics: given, cached, or trained once per dataset.

It is `model=classifier` itself: the recipe is configs/model/classifier.yaml (the same network, optimiser,
augmentation and schedule as `genrun train model=classifier`), trained by the same ClassifierModule with a
Lightning Trainer, and the cached file is a normal classifier checkpoint (`genrun sample ckpt=...` reads it).
Its test accuracy is measured at every evaluation: a feature space is only as good as the classifier.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from genrun.checkpoint import atomic_save, load_checkpoint
from genrun.data.base import InMemoryDataModule
from genrun.errors import GenrunError
from genrun.nets.classifier import ConvClassifier
from genrun.progress import stage

log = logging.getLogger(__name__)
# Training settings of the cached classifier beside its model config; changing either changes the cache key.
RECIPE = {"epochs": 15, "batch_size": 128, "seed": 0, "version": 3}
EPOCHS_ENV = "GENRUN_CLASSIFIER_EPOCHS"
CHECKPOINT_FILE = "classifier.ckpt"


@dataclass
class DomainClassifier:
    net: ConvClassifier
    origin: str  # "cached", "trained" or "given"
    path: Path
    recorded_accuracy: float | None


@torch.no_grad()
def accuracy(net: ConvClassifier, x: torch.Tensor, y: torch.Tensor, device="cpu", batch_size: int = 500) -> float:
    net = net.to(device).eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = net(x[start : start + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == y[start : start + batch_size].cpu()).sum().item()
    return correct / max(1, len(x))


def model_config(data_info: dict) -> dict:
    """configs/model/classifier.yaml with the data's shape filled in, resolved to plain values."""
    from omegaconf import OmegaConf

    from genrun.configs import config_dir

    model = OmegaConf.load(config_dir() / "model" / "classifier.yaml")
    shape = {k: int(data_info[k]) for k in ("channels", "image_size", "num_classes")}
    config = OmegaConf.to_container(OmegaConf.create({"model": model, "dataset": shape}).model, resolve=True)
    if not config.get("adversarial", {}).get("eps"):
        # Adversarial training off trains exactly as before the option existed: the same recipe, so the same
        # cache key, and classifiers cached then stay valid.
        config.pop("adversarial", None)
        for key in ("adversarial_eps", "adversarial_alpha"):
            config["module"].pop(key, None)
    return config


class _Tensors(InMemoryDataModule):
    """The given training tensors as a dataset (no validation or test split)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        super().__init__(batch_size=batch_size, shuffle_seed=seed)
        self.tensors = (x, y)

    def load(self):
        x, y = self.tensors
        empty = (x[:0], y[:0])
        return {"train": (x, y), "val": empty, "test": empty}


def _lightning_quiet():
    """Lightning's start-up notices (accelerators, tips) say nothing about an evaluation: keep them out."""
    import contextlib
    import logging

    @contextlib.contextmanager
    def quiet():
        logger = logging.getLogger("lightning.pytorch")
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            logger.setLevel(level)

    return quiet()


def train_recipe(x: torch.Tensor, y: torch.Tensor, data_info: dict, recipe: dict = RECIPE,
                 device: torch.device | str = "cpu"):
    """A ClassifierModule trained on (x, y) by the classifier recipe; returns the module. The initial weights
    are seeded and the caller's random streams are left as they were (torch.random.fork_rng)."""
    import lightning as L

    from genrun.cuda_probe import cheap_cuda_probe
    from genrun.data.lightning import LightningData
    from genrun.progress import fit_progress
    from genrun.runs import quiet_library_logs
    from genrun.trust import build_stored

    device = torch.device(device)
    quiet_library_logs()
    with torch.random.fork_rng(devices=[]), torch.enable_grad(), _lightning_quiet():  # evaluation runs no_grad
        L.seed_everything(recipe["seed"], verbose=False)
        module = build_stored(model_config(data_info)["module"], "the classifier recipe", "model.module")
        trainer = L.Trainer(accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
                            max_epochs=recipe["epochs"], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            limit_val_batches=0, callbacks=[fit_progress("training the domain classifier")])
        data = _Tensors(x.float().cpu(), y.long().cpu(), recipe["batch_size"], recipe["seed"])
        with cheap_cuda_probe():
            trainer.fit(module, datamodule=LightningData(data))
    return module.cpu().eval()


def cache_key(data_info: dict, recipe: dict) -> str:
    """Readable shape prefix plus a hash of everything that defines the data and the recipe."""
    blob = json.dumps({"data": data_info, "recipe": recipe}, sort_keys=True, default=str)
    digest = hashlib.sha1(blob.encode()).hexdigest()[:12]
    shape = f"{data_info.get('channels')}x{data_info.get('image_size')}_{data_info.get('num_classes')}cls"
    return f"{data_info.get('source', 'data')}_{shape}_{digest}".replace(os.sep, "_").lstrip("_")[-80:]


def default_cache_dir() -> Path:
    """Where `paths.output_root` points when the config does not say: $GENRUN_OUTPUT_DIR or ./outputs."""
    return Path(os.environ.get("GENRUN_OUTPUT_DIR") or Path.cwd() / "outputs") / ".cache" / "classifiers"


def has_classes(data_info: dict) -> bool:
    return (data_info.get("num_classes") or 0) >= 2 and bool(data_info.get("image_size"))


def _check_matches(net: ConvClassifier, data_info: dict, path: Path) -> None:
    want = (data_info.get("channels"), data_info.get("image_size"), data_info.get("num_classes"))
    have = (net.channels, net.image_size, net.num_classes)
    if tuple(int(v) for v in want) != have:
        raise GenrunError(f"classifier checkpoint {path}: made for channels, size, classes = {have}, but the data "
                          f"has {want}")


def _classifier_net(path: Path, what: str):
    """The net of a classifier checkpoint (any other pipeline is refused) and the checkpoint's genrun info."""
    from genrun.families.classifier import ClassifierPipeline
    from genrun.pipeline import load_pipeline

    payload = load_checkpoint(path)
    pipeline = load_pipeline(payload, path)
    if not isinstance(pipeline, ClassifierPipeline):
        raise GenrunError(f"{what}: not a model=classifier checkpoint (its pipeline is {type(pipeline).__name__})")
    return pipeline.net, payload.get("genrun") or {}


def load_given(ckpt: str | os.PathLike, data_info: dict) -> DomainClassifier:
    from genrun.runs import locate_checkpoint

    try:
        path = locate_checkpoint(str(ckpt), ".")
    except GenrunError as err:
        raise GenrunError(f"classifier.{err}") from None
    net, info = _classifier_net(path, f"classifier.ckpt={ckpt}")
    _check_matches(net, data_info, path)
    return DomainClassifier(net, "given", path, info.get("test_accuracy"))


def domain_classifier(context) -> DomainClassifier:
    """The classifier for `context`'s dataset: settings['classifier_ckpt'], else the cache, else train it."""
    from genrun.pipeline import pipeline_spec

    settings, data_info = context.settings, context.data_info
    if settings.get("classifier_ckpt"):
        return load_given(settings["classifier_ckpt"], data_info)
    epochs = int(settings.get("classifier_epochs") or os.environ.get(EPOCHS_ENV) or RECIPE["epochs"])
    recipe = {**RECIPE, "epochs": epochs, "model": model_config(data_info)}
    cache_dir = Path(settings.get("classifier_dir") or default_cache_dir())
    path = cache_dir / cache_key(data_info, recipe) / CHECKPOINT_FILE
    if path.is_file():
        net, info = _classifier_net(path, f"cached classifier {path}")
        return DomainClassifier(net, "cached", path, info.get("test_accuracy"))
    x, y = context.load_split("train")
    stage(f"training the domain classifier on {len(x):,} images for {epochs} epoch{'s' * (epochs != 1)} "
          f"(once per dataset: cached for next time in {path.parent}) ...")
    started = time.perf_counter()
    module = train_recipe(x, y, data_info, recipe, context.device)
    x_test, y_test = context.load_split("test")
    test_accuracy = accuracy(module.net, x_test, y_test)
    config = {"model": recipe["model"], "recipe": {k: v for k, v in recipe.items() if k != "model"}}
    if settings.get("dataset_config"):
        config["dataset"] = settings["dataset_config"]
    atomic_save({"state_dict": module.state_dict(),
                 "genrun": {"config": config, "data": data_info, "pipeline": pipeline_spec(module.pipeline(), module),
                            "choices": {"model": "classifier", "dataset": None},
                            "test_accuracy": test_accuracy, "n_test": len(x_test),
                            "test_split": data_info.get("test_split", "test"),
                            "train_seconds": round(time.perf_counter() - started, 1)}}, path)
    log.info("domain classifier: test accuracy %.4f on %d images (%s)", test_accuracy, len(x_test),
             data_info.get("test_split", "test split"))
    return DomainClassifier(module.net, "trained", path, test_accuracy)
