"""Experiment trackers beside TensorBoard: `logger=mlflow`, `logger=wandb`, `logger=[tensorboard,mlflow]`,
`logger=many`.

Lightning's own MLFlowLogger and WandbLogger carry the scalars while training; the builders here choose
where they write (MLflow: a local store under the outputs directory unless a tracking URI is given; W&B:
offline unless an API key is configured) and refuse in one line, naming the extra, when the package is
missing. `log_image` puts the pictures a model draws while training on every tracker that keeps images.
`log_run_end` gives each tracker what the end of a run adds: the hyperparameters, the final test and
evaluation figures, the composed config and the end-of-run sample picture (TensorBoard gets them from
genrun.tasks.train).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from genrun.errors import GenrunError

MLFLOW_DB = "mlflow.db"


def _require(module: str, logger: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise GenrunError(f"logger={logger} needs {module}, which is not installed: pip install 'genrun[{extra}]'") \
            from None


def mlflow_uri(tracking_uri: str | None, store_dir: str) -> tuple[str, str | None]:
    """(tracking URI, artifact location): the given URI, else $MLFLOW_TRACKING_URI, else a SQLite store and an
    artifact directory in `store_dir` (MLflow 3 keeps its plain file store in maintenance mode and refuses it
    unless MLFLOW_ALLOW_FILE_STORE is set; a file: URI given here sets it for this process)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the user asked for the file store
        return uri, None
    store = Path(store_dir).resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / MLFLOW_DB}", (store / "artifacts").as_uri()


def mlflow_logger(experiment_name: str, run_dir: str, store_dir: str, tracking_uri: str | None = None,
                  tags: dict | None = None, log_model: bool = False):
    """Lightning's MLFlowLogger for this run, named after its run directory (tagged with its path)."""
    _require("mlflow", "mlflow", "mlflow")
    from lightning.pytorch.loggers import MLFlowLogger

    uri, artifacts = mlflow_uri(tracking_uri, store_dir)
    return MLFlowLogger(experiment_name=experiment_name, run_name=Path(run_dir).name, tracking_uri=uri,
                        artifact_location=artifacts, log_model=log_model,
                        tags={"genrun.run_dir": str(run_dir), **dict(tags or {})})


def wandb_offline(offline: bool | None) -> bool:
    """Offline unless told otherwise or an API key is configured (WANDB_API_KEY, or `wandb login`'s netrc)."""
    if offline is not None:
        return bool(offline)
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" not in netrc.read_text()
    except OSError:
        return True


def wandb_logger(project: str, run_dir: str, offline: bool | None = None, log_model: bool = False,
                 tags: list | None = None):
    """Lightning's WandbLogger writing into the run directory (wandb/ there; `wandb sync` uploads it later)."""
    _require("wandb", "wandb", "wandb")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(project=project, name=Path(run_dir).name, save_dir=str(run_dir),
                       offline=wandb_offline(offline), log_model=log_model, tags=list(tags or []))


def image_array(grid) -> np.ndarray:
    """A C×H×W picture in [0, 1] (a torch tensor, as genrun.images.make_grid tiles it) as H×W×3 bytes."""
    pixels = (grid.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    if pixels.shape[0] == 1:
        pixels = pixels.expand(3, -1, -1)
    return pixels.permute(1, 2, 0).contiguous().numpy()


def figure_array(figure) -> np.ndarray:
    """A matplotlib figure rendered as H×W×3 bytes; the figure is closed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    close_figure(figure)
    return pixels


def close_figure(figure) -> None:
    """Release a matplotlib figure (pyplot keeps every open one alive)."""
    from matplotlib import pyplot as plt

    plt.close(figure)


def keeps_pictures(logger) -> bool:
    """Whether a tracker keeps pictures: TensorBoard, MLflow and W&B do, the CSV logger does not."""
    return type(logger).__name__ in ("MLFlowLogger", "WandbLogger") or hasattr(logger.experiment, "add_image")


def log_image(logger, tag: str, image: np.ndarray, step: int) -> None:
    """One H×W×3 picture on one tracker at `step`: TensorBoard's images, MLflow's logged images (by key
    and step, beside its metrics), W&B's media; nothing for a tracker that keeps no pictures."""
    kind = type(logger).__name__
    if kind == "MLFlowLogger":
        logger.experiment.log_image(logger.run_id, image, key=tag, step=step)
    elif kind == "WandbLogger":
        logger.log_image(key=tag, images=[image], step=step)
    elif hasattr(logger.experiment, "add_image"):
        logger.experiment.add_image(tag, image, step, dataformats="HWC")


def log_run_end(trainer, config: dict, metrics: dict, files: dict) -> None:
    """The end of a run for every tracker other than TensorBoard (which genrun.tasks.train serves)."""
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "MLFlowLogger":
            _mlflow_end(logger, trainer, config, metrics, files)
        elif kind == "WandbLogger":
            _wandb_end(logger, trainer, config, metrics, files)


def _final(metrics: dict) -> dict:
    from genrun.headlines import is_constant

    return {k: v for k, v in metrics.items() if k.split("/")[0] in ("test", "eval") and not is_constant(k)}


def _pictures(files: dict) -> list[Path]:
    return [Path(p) for p in files.values() if p is not None and str(p).endswith(".png") and Path(p).is_file()]


def _config_text(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))


def _mlflow_end(logger, trainer, config: dict, metrics: dict, files: dict) -> None:
    from genrun.tasks.train import flat_hparams

    logger.log_hyperparams(flat_hparams(config))
    final = _final(metrics)
    if final:
        logger.log_metrics(final, step=trainer.global_step)
    client, run_id = logger.experiment, logger.run_id
    client.log_text(run_id, _config_text(config), "config.yaml")
    for picture in _pictures(files):
        client.log_artifact(run_id, str(picture), "samples")


def _wandb_end(logger, trainer, config: dict, metrics: dict, files: dict) -> None:
    from genrun.tasks.train import flat_hparams

    logger.log_hyperparams(flat_hparams(config))
    final = _final(metrics)
    if final:
        logger.log_metrics(final, step=trainer.global_step)
    pictures = _pictures(files)
    if pictures:
        logger.log_image(key="samples/final", images=[str(p) for p in pictures], step=trainer.global_step)
    run = logger.experiment
    path = Path(run.dir) / "genrun_config.yaml"  # W&B keeps its own config.yaml there
    path.write_text(_config_text(config))
    run.save(str(path), base_path=run.dir, policy="now")
    run.finish()  # the next job of an in-process sweep starts its own run
