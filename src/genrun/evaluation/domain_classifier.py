"""The domain classifier behind the sample-quality metrics: given, cached, or trained once per dataset.

Its test accuracy is measured at every evaluation (a feature space is only as good as the classifier),
and recorded in the cached checkpoint, which is a normal `model=classifier` checkpoint:
`genrun sample ckpt=<cache>/classifier.ckpt` and `genrun evaluate ckpt=...` read it.
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
import torch.nn.functional as F

from genrun.checkpoint import atomic_save, load_checkpoint
from genrun.errors import GenrunError
from genrun.nets.classifier import ConvClassifier, random_affine

log = logging.getLogger(__name__)
# The training recipe of the cached classifier; changing it changes the cache key.
RECIPE = {"width": 16, "feature_dim": 128, "dropout": 0.3, "epochs": 15, "batch_size": 128, "lr": 3e-3,
          "weight_decay": 5e-4, "seed": 0, "version": 2}
EPOCHS_ENV = "GENRUN_CLASSIFIER_EPOCHS"
CHECKPOINT_FILE = "classifier.ckpt"


@dataclass
class DomainClassifier:
    net: ConvClassifier
    origin: str  # "cached", "trained" or "given"
    path: Path
    recorded_accuracy: float | None


def fit(net: ConvClassifier, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int = 128,
        lr: float = 3e-3, weight_decay: float = 5e-4, seed: int = 0, device: torch.device | str = "cpu"
        ) -> ConvClassifier:
    """Cross-entropy on augmented batches, AdamW with a one-cycle learning rate: no Lightning, so it also
    runs inside the evaluation at the end of a (possibly distributed) training run. Evaluation runs under
    torch.no_grad(), so gradients are switched back on here."""
    with torch.enable_grad():
        return _fit(net, x, y, epochs, batch_size, lr, weight_decay, seed, device)


def _fit(net, x, y, epochs, batch_size, lr, weight_decay, seed, device) -> ConvClassifier:
    generator = torch.Generator().manual_seed(seed)
    net = net.to(device).train()
    steps_per_epoch = -(-len(x) // batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:  # batch norm needs two items
                continue
            xb = random_affine(x[index], generator).to(device)
            loss = F.cross_entropy(net(xb), y[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: ConvClassifier, x: torch.Tensor, y: torch.Tensor, device="cpu", batch_size: int = 500) -> float:
    net = net.to(device).eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = net(x[start : start + batch_size].to(device))
        correct += (logits.argmax(1).cpu() == y[start : start + batch_size].cpu()).sum().item()
    return correct / max(1, len(x))


def train_recipe(x: torch.Tensor, y: torch.Tensor, data_info: dict, recipe: dict = RECIPE,
                 device: torch.device | str = "cpu") -> ConvClassifier:
    """A new classifier trained with `recipe`; the initial weights are seeded too, and the caller's random
    stream is left as it was (torch.random.fork_rng)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["seed"])
        config = {k: v for k, v in net_config(data_info, recipe).items() if k != "_target_"}
        net = fit(ConvClassifier(**config), x.float().cpu(), y.long().cpu(), epochs=recipe["epochs"],
                  batch_size=recipe["batch_size"], lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                  seed=recipe["seed"], device=device)
    return net.cpu()


def net_config(data_info: dict, recipe: dict = RECIPE) -> dict:
    return {"_target_": "genrun.nets.classifier.ConvClassifier", "channels": int(data_info["channels"]),
            "image_size": int(data_info["image_size"]), "num_classes": int(data_info["num_classes"]),
            "width": recipe["width"], "feature_dim": recipe["feature_dim"], "dropout": recipe["dropout"]}


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


def load_given(ckpt: str | os.PathLike, data_info: dict) -> DomainClassifier:
    from genrun.families.classifier import build_net
    from genrun.runs import locate_checkpoint

    try:
        path = locate_checkpoint(str(ckpt), ".")
    except GenrunError as err:
        raise GenrunError(f"classifier.{err}") from None
    payload = load_checkpoint(path)
    info = payload.get("genrun") or {}
    if info.get("family") != "classifier":
        raise GenrunError(f"classifier.ckpt={ckpt}: not a model=classifier checkpoint "
                          f"(family {info.get('family')!r})")
    net = build_net(info["config"], payload["state_dict"])
    _check_matches(net, data_info, path)
    return DomainClassifier(net, "given", path, info.get("test_accuracy"))


def domain_classifier(context) -> DomainClassifier:
    """The classifier for `context`'s dataset: settings['classifier_ckpt'], else the cache, else train it."""
    settings, data_info = context.settings, context.data_info
    if settings.get("classifier_ckpt"):
        return load_given(settings["classifier_ckpt"], data_info)
    epochs = int(settings.get("classifier_epochs") or os.environ.get(EPOCHS_ENV) or RECIPE["epochs"])
    recipe = {**RECIPE, "epochs": epochs}
    cache_dir = Path(settings.get("classifier_dir") or default_cache_dir())
    path = cache_dir / cache_key(data_info, recipe) / CHECKPOINT_FILE
    if path.is_file():
        from genrun.families.classifier import build_net

        payload = load_checkpoint(path)
        net = build_net(payload["genrun"]["config"], payload["state_dict"])
        return DomainClassifier(net, "cached", path, payload["genrun"].get("test_accuracy"))
    x, y = context.load_split("train")
    log.info("training the domain classifier for this dataset once (%d images, %d epochs); cached in %s",
             len(x), epochs, path.parent)
    started = time.perf_counter()
    net = train_recipe(x, y, data_info, recipe, context.device)
    x_test, y_test = context.load_split("test")
    test_accuracy = accuracy(net, x_test, y_test)
    config = {"model": {"recipe": recipe, "module": {"net": net_config(data_info, recipe)}}}
    if settings.get("dataset_config"):
        config["dataset"] = settings["dataset_config"]
    atomic_save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
                 "genrun": {"config": config, "family": "classifier", "data": data_info,
                            "choices": {"model": "classifier", "dataset": None},
                            "test_accuracy": test_accuracy, "n_test": len(x_test),
                            "test_split": data_info.get("test_split", "test"),
                            "train_seconds": round(time.perf_counter() - started, 1)}}, path)
    log.info("domain classifier: test accuracy %.4f on %d images (%s)", test_accuracy, len(x_test),
             data_info.get("test_split", "test split"))
    return DomainClassifier(net, "trained", path, test_accuracy)
